package node

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/profile"
	"github.com/driftline/driftline/shared/wire"
)

// TestNodeFleetDrift drives the whole DataOps path through one real node: a dataset push
// computes the reference profile, a device running a model trained on it publishes a window
// profile over MQTT, and GET /api/v1/drift and /api/v1/devices/{id}/drift show it. It skips
// while node.Start does not wire the drift service (see docs/drift.md).
func TestNodeFleetDrift(t *testing.T) {
	n, tok := testNode(t)
	req, _ := http.NewRequest(http.MethodGet, n.URL()+"/api/v1/drift?model=m&version=1", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var probe map[string]any
	json.NewDecoder(res.Body).Decode(&probe)
	res.Body.Close()
	if res.StatusCode == http.StatusNotFound && probe["detail"] != "model:m@1 not found" {
		t.Skip("this node does not serve /api/v1/drift yet")
	}

	call(t, n, tok, http.MethodPost, "/api/v1/datasets", map[string]string{"name": "sensors"}, http.StatusCreated, nil)
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	cw, _ := mw.CreateFormField("contract")
	cw.Write([]byte(sensorContract))
	sw, _ := mw.CreateFormFile("sample", "s.csv")
	sw.Write([]byte(sensorCSV(2000, 0)))
	mw.Close()
	req, _ = http.NewRequest(http.MethodPost, n.URL()+"/api/v1/datasets/sensors/versions", &buf)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	doReq(t, req, http.StatusCreated, nil)
	req, _ = http.NewRequest(http.MethodGet, n.URL()+"/api/v1/datasets/sensors/versions/1/profile", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	bin, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if _, err := profile.Decode(bin); err != nil {
		t.Fatalf("the node stored no reference profile: %v", err)
	}

	call(t, n, tok, http.MethodPost, "/api/v1/models", map[string]string{"name": "m"}, http.StatusCreated, nil)
	buf.Reset()
	mw = multipart.NewWriter(&buf)
	mw.WriteField("metadata", `{"format":"onnx","trained_on":[{"dataset":"sensors","version":1}]}`)
	fw, _ := mw.CreateFormFile("artifact", "model.bin")
	fw.Write([]byte("weights"))
	mw.Close()
	req, _ = http.NewRequest(http.MethodPost, n.URL()+"/api/v1/models/m/versions", &buf)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	doReq(t, req, http.StatusCreated, nil)

	var dev struct {
		Token string `json:"token"`
	}
	call(t, n, tok, http.MethodPost, "/api/v1/devices", map[string]any{"id": "d1"}, http.StatusCreated, &dev)
	c := paho.NewClient(paho.NewClientOptions().AddBroker(n.MQTTURL()).SetClientID("d1").SetUsername("d1").SetPassword(dev.Token))
	if tk := c.Connect(); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatalf("connect: %v", tk.Error())
	}
	defer c.Disconnect(100)
	topics := wire.Default()
	one := 1
	rep, _ := wire.Encode(wire.Reported{Header: wire.Header{DeviceID: "d1", TS: time.Now().UnixMilli()}, Rev: 1,
		Models: map[string]wire.ReportedModel{"m": {Active: &one, State: wire.StateActive}}})
	c.Publish(topics.Reported("d1"), 1, true, rep).WaitTimeout(5 * time.Second)
	testhelp.WaitFor(t, 10*time.Second, "d1 runs m@1", func() bool {
		var d struct {
			Reported struct {
				Models map[string]struct {
					Active *int `json:"active"`
				} `json:"models"`
			} `json:"reported"`
		}
		call(t, n, tok, http.MethodGet, "/api/v1/devices/d1", nil, http.StatusOK, &d)
		return d.Reported.Models["m"].Active != nil
	})

	// A window whose temperatures sit 30 degrees above the reference's.
	cols := []profile.Column{{Name: "ts", Kind: profile.Numeric}, {Name: "temp", Kind: profile.Numeric},
		{Name: "site", Kind: profile.Categorical}, {Name: "ok", Kind: profile.Categorical}, {Name: "score", Kind: profile.Numeric}}
	p, _ := profile.New(cols)
	for i := 0; i < 500; i++ {
		ts, temp, site, ok := sensorRow(i)
		tm, _ := time.Parse(time.RFC3339, ts)
		p.Add([]contract.Value{{Kind: contract.KindTime, Num: float64(tm.UnixMilli())}, {Kind: contract.KindNumber, Num: temp + 30},
			{Kind: contract.KindString, Str: site}, {Kind: contract.KindBool, Bool: ok}, {Kind: contract.KindNumber, Num: 0.5}})
	}
	c.Publish(topics.Profile("d1"), 1, false, p.Encode()).WaitTimeout(5 * time.Second)
	var fv struct {
		Current *struct {
			Devices  int `json:"devices"`
			Features map[string]struct {
				Drift bool `json:"drift"`
			} `json:"features"`
		} `json:"current"`
		Reference *struct {
			Dataset string `json:"dataset"`
		} `json:"reference"`
	}
	testhelp.WaitFor(t, 10*time.Second, "the profile in the fleet view", func() bool {
		call(t, n, tok, http.MethodGet, "/api/v1/drift?model=m&version=1", nil, http.StatusOK, &fv)
		return fv.Current != nil && fv.Current.Devices == 1
	})
	if !fv.Current.Features["temp"].Drift || fv.Reference == nil || fv.Reference.Dataset != "sensors" {
		t.Errorf("fleet view %+v", fv)
	}
	var dv struct {
		Models []struct {
			Latest struct {
				Features map[string]struct {
					Drift bool `json:"drift"`
				} `json:"features"`
			} `json:"latest"`
		} `json:"models"`
	}
	call(t, n, tok, http.MethodGet, "/api/v1/devices/d1/drift", nil, http.StatusOK, &dv)
	if len(dv.Models) != 1 || !dv.Models[0].Latest.Features["temp"].Drift {
		t.Errorf("device view %+v", dv)
	}
}
