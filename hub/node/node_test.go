package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/wire"
)

// testNode starts a one-node hub with the embedded broker on free ports and returns it with its
// admin token.
func testNode(t *testing.T) (*Node, string) {
	t.Helper()
	dir := t.TempDir()
	n, err := Start(context.Background(), Config{
		DataDir: dir, NodeID: "n1", HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0",
		Logger: testhelp.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	var tok string
	testhelp.WaitFor(t, 10*time.Second, "admin token", func() bool {
		b, err := os.ReadFile(filepath.Join(dir, AdminTokenFile))
		tok = strings.TrimSpace(string(b))
		return err == nil && tok != ""
	})
	return n, tok
}

// call sends a JSON request and decodes the answer into out, failing on an unexpected status.
func call(t *testing.T, n *Node, tok, method, path string, body any, want int, out any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, n.URL()+path, r)
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	doReq(t, req, want, out)
}

func doReq(t *testing.T, req *http.Request, want int, out any) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		t.Fatalf("%s %s: got %d want %d: %s", req.Method, req.URL.Path, res.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
	}
}

// pushModel registers a model version from data and approves it.
func pushModel(t *testing.T, n *Node, tok, model string, data []byte) (version int, digest string) {
	t.Helper()
	return pushModelWith(t, http.DefaultClient, n, tok, model, data)
}

// pushModelWith is pushModel over client cl.
func pushModelWith(t *testing.T, cl *http.Client, n *Node, tok, model string, data []byte) (version int, digest string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("metadata", `{"format":"onnx"}`)
	fw, _ := mw.CreateFormFile("artifact", "model.bin")
	fw.Write(data)
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, n.URL()+"/api/v1/models/"+model+"/versions", &buf)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	res, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("register: %d %s", res.StatusCode, b)
	}
	var out struct {
		Version int    `json:"version"`
		Digest  string `json:"digest"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	callWith(t, cl, n, tok, http.MethodPost, fmt.Sprintf("/api/v1/models/%s/versions/%d/approve", model, out.Version), map[string]string{"comment": "ok"}, http.StatusOK, nil)
	return out.Version, out.Digest
}

// TestDeviceProtocol drives the hub's MQTT side the way an agent does: it receives its retained
// desired state, fetches the manifest and chunks by digest, and its reports become device state.
func TestDeviceProtocol(t *testing.T) {
	n, tok := testNode(t)
	call(t, n, tok, http.MethodPost, "/api/v1/models", map[string]string{"name": "m"}, http.StatusCreated, nil)
	data := make([]byte, 300<<10)
	rand.Read(data)
	v, digest := pushModel(t, n, tok, "m", data)
	var dev struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	call(t, n, tok, http.MethodPost, "/api/v1/devices", map[string]any{"id": "d1", "labels": map[string]string{"site": "x"}}, http.StatusCreated, &dev)

	msgs := make(chan paho.Message, 64)
	opts := paho.NewClientOptions().AddBroker(n.MQTTURL()).SetClientID("d1").SetUsername("d1").SetPassword(dev.Token).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { msgs <- m })
	c := paho.NewClient(opts)
	if tk := c.Connect(); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatalf("connect: %v", tk.Error())
	}
	defer c.Disconnect(100)
	topics := wire.Default()
	for _, f := range []string{topics.Desired("d1"), topics.Chunk("d1")} {
		tk := c.Subscribe(f, 1, nil)
		if !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
			t.Fatalf("subscribe %s: %v", f, tk.Error())
		}
		if code := tk.(*paho.SubscribeToken).Result()[f]; code >= 0x80 {
			t.Fatalf("subscribe %s refused: %#x", f, code)
		}
	}
	call(t, n, tok, http.MethodPut, "/api/v1/devices/d1/models/m", map[string]int{"version": v}, http.StatusOK, nil)
	var desired wire.Desired
	next := func(topic string) paho.Message {
		t.Helper()
		for {
			select {
			case m := <-msgs:
				if m.Topic() == topic {
					return m
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no message on %s", topic)
			}
		}
	}
	m := next(topics.Desired("d1"))
	desired, err := wire.DecodeDesired(m.Payload())
	if err != nil || desired.Rev != 1 || len(desired.Models) != 1 || desired.Models[0].Version != v || desired.Models[0].ApprovalSignature.IsZero() {
		t.Fatalf("desired %+v %v", desired, err)
	}
	// Fetch the manifest, then every chunk it lists, and rebuild the file.
	fetch := func(id string, digests ...string) map[string][]byte {
		t.Helper()
		b, err := wire.Encode(wire.FetchRequest{Header: wire.Header{DeviceID: "d1", TS: time.Now().UnixMilli()}, RequestID: id, Digests: digests})
		if err != nil {
			t.Fatal(err)
		}
		if tk := c.Publish(topics.Fetch("d1"), 1, false, b); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
			t.Fatalf("publish fetch: %v", tk.Error())
		}
		got := map[string][]byte{}
		objs := map[string]*wire.Object{}
		for len(got) < len(digests) {
			f, err := wire.DecodeFrame(next(topics.Chunk("d1")).Payload())
			if err != nil || f.RequestID != id || f.Kind != wire.FrameData {
				t.Fatalf("frame %+v %v", f, err)
			}
			o := objs[f.DigestString()]
			if o == nil {
				if o, err = wire.NewObject(f); err != nil {
					t.Fatal(err)
				}
				objs[f.DigestString()] = o
			}
			if _, err := o.Add(f); err != nil {
				t.Fatal(err)
			}
			if o.Bytes() != nil {
				got[f.DigestString()] = o.Bytes()
			}
		}
		return got
	}
	man, err := artifact.DecodeManifest(fetch("r1", desired.Models[0].ManifestDigest)[desired.Models[0].ManifestDigest])
	if err != nil {
		t.Fatal(err)
	}
	if err := artifact.NewKeyRing().Verify(nil, artifact.Signature{}); err == nil {
		t.Fatal("an empty key ring verified an unsigned manifest")
	}
	var all []string
	for _, ch := range man.Chunks {
		all = append(all, ch.Digest)
	}
	chunks := fetch("r2", artifact.Missing(man, func(string) bool { return false })...)
	var out bytes.Buffer
	if err := artifact.Assemble(&out, man, func(d string) ([]byte, error) { return chunks[d], nil }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), data) || man.Digest != digest {
		t.Fatalf("reassembled file differs (chunks %d)", len(all))
	}
	// Reports become device state within a batching interval.
	one := v
	rep, _ := wire.Encode(wire.Reported{Header: wire.Header{DeviceID: "d1", TS: time.Now().UnixMilli()}, Rev: 1,
		Models: map[string]wire.ReportedModel{"m": {Active: &one, State: wire.StateActive}}})
	c.Publish(topics.Reported("d1"), 1, true, rep).WaitTimeout(5 * time.Second)
	st, _ := wire.Encode(wire.Status{Header: wire.Header{DeviceID: "d1", TS: time.Now().UnixMilli()}, Online: true})
	c.Publish(topics.Status("d1"), 1, true, st).WaitTimeout(5 * time.Second)
	testhelp.WaitFor(t, 10*time.Second, "device state", func() bool {
		var d struct {
			Online   bool `json:"online"`
			Reported struct {
				Models map[string]struct {
					Active *int   `json:"active"`
					State  string `json:"state"`
				} `json:"models"`
			} `json:"reported"`
		}
		call(t, n, tok, http.MethodGet, "/api/v1/devices/d1", nil, http.StatusOK, &d)
		a := d.Reported.Models["m"].Active
		return d.Online && a != nil && *a == v && d.Reported.Models["m"].State == "active"
	})
	// A bad payload is refused and counted, and the hub goes on.
	c.Publish(topics.Reported("d1"), 1, false, []byte("{not json")).WaitTimeout(5 * time.Second)
	// Deleting the device disconnects it.
	call(t, n, tok, http.MethodDelete, "/api/v1/devices/d1", nil, http.StatusOK, nil)
	testhelp.WaitFor(t, 10*time.Second, "revoked device disconnected", func() bool { return !c.IsConnectionOpen() })
}

// TestAdminTokenCannotPublishDesired: an admin API token logs in to the embedded broker but may
// not publish a device's desired state or chunks (only the hub's own client may); a device
// subscribed to them receives the hub's real desired state and nothing the admin sent.
func TestAdminTokenCannotPublishDesired(t *testing.T) {
	n, tok := testNode(t)
	var dev struct {
		Token string `json:"token"`
	}
	call(t, n, tok, http.MethodPost, "/api/v1/devices", map[string]any{"id": "d2"}, http.StatusCreated, &dev)
	topics := wire.Default()
	got := make(chan paho.Message, 16)
	dc := paho.NewClient(paho.NewClientOptions().AddBroker(n.MQTTURL()).SetClientID("d2").SetUsername("d2").SetPassword(dev.Token))
	if tk := dc.Connect(); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatalf("device connect: %v", tk.Error())
	}
	defer dc.Disconnect(100)
	for _, f := range []string{topics.Desired("d2"), topics.Chunk("d2"), topics.Status("d2") + "/fence"} {
		if tk := dc.Subscribe(f, 0, func(_ paho.Client, m paho.Message) { got <- m }); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
			t.Fatalf("subscribe: %v", tk.Error())
		}
	}
	// A person's admin token: it connects in its own client-id namespace ("@admin:ID").
	adminID, adminTok := createToken(t, n, tok, "person", "admin")
	ac := paho.NewClient(paho.NewClientOptions().AddBroker(n.MQTTURL()).SetClientID("@admin:" + adminID).SetUsername("person").SetProtocolVersion(4).SetPassword(adminTok))
	if tk := ac.Connect(); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatalf("admin connect: %v", tk.Error())
	}
	defer ac.Disconnect(100)
	for _, topic := range []string{topics.Desired("d2"), topics.Chunk("d2")} {
		ac.Publish(topic, 0, false, []byte(`{"device_id":"d2","ts":1,"rev":9007199254740991,"models":[]}`)).WaitTimeout(5 * time.Second)
	}
	// A fence the admin may publish: the broker handles one client's packets in order, so once
	// it arrives the two publishes before it were routed or refused.
	if tk := ac.Publish(topics.Status("d2")+"/fence", 0, false, []byte("fence")); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatalf("admin publish fence: %v", tk.Error())
	}
	for {
		select {
		case m := <-got:
			if m.Topic() == topics.Status("d2")+"/fence" {
				return
			}
			t.Fatalf("the device received %s from an admin token: %s", m.Topic(), m.Payload())
		case <-time.After(10 * time.Second):
			t.Fatal("the admin's fence never arrived")
		}
	}
}
