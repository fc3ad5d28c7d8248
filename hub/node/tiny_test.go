package node

import (
	"net/http"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/wire"
)

// TestTinyArtifactChunkServed: zstd writes no content size for very small inputs; the hub must
// still serve such a chunk (it once refused it as a bad header, so tiny models never pulled).
func TestTinyArtifactChunkServed(t *testing.T) {
	n, tok := testNode(t)
	call(t, n, tok, http.MethodPost, "/api/v1/models", map[string]string{"name": "tiny"}, http.StatusCreated, nil)
	data := []byte("a tiny model")
	v, _ := pushModel(t, n, tok, "tiny", data)
	var dev struct {
		Token string `json:"token"`
	}
	call(t, n, tok, http.MethodPost, "/api/v1/devices", map[string]string{"id": "d1"}, http.StatusCreated, &dev)
	// A device fetches only what it is told to run.
	call(t, n, tok, http.MethodPut, "/api/v1/devices/d1/models/tiny", map[string]int{"version": v}, http.StatusOK, nil)
	msgs := make(chan paho.Message, 8)
	c := paho.NewClient(paho.NewClientOptions().AddBroker(n.MQTTURL()).SetClientID("d1").SetUsername("d1").SetPassword(dev.Token).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { msgs <- m }))
	if tk := c.Connect(); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatalf("connect: %v", tk.Error())
	}
	defer c.Disconnect(100)
	topics := wire.Default()
	if tk := c.Subscribe(topics.Chunk("d1"), 1, nil); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatal(tk.Error())
	}
	digest := artifact.DigestOf(data)
	b, err := wire.Encode(wire.FetchRequest{Header: wire.Header{DeviceID: "d1", TS: time.Now().UnixMilli()}, RequestID: "r1", Digests: []string{digest}})
	if err != nil {
		t.Fatal(err)
	}
	c.Publish(topics.Fetch("d1"), 1, false, b).WaitTimeout(5 * time.Second)
	select {
	case m := <-msgs:
		f, err := wire.DecodeFrame(m.Payload())
		if err != nil || f.Kind != wire.FrameData {
			t.Fatalf("frame %+v %v", f, err)
		}
		plain, err := f.Open()
		if err != nil || string(plain) != string(data) {
			t.Fatalf("chunk %q %v", plain, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no chunk frame for a tiny artifact")
	}
}
