package node

import (
	"bytes"
	"fmt"
	"mime/multipart"
	"net/http"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// TestLineageWhichDevicesDrifted checks that "which devices saw drift on the model trained on
// dataset X@V" is one lineage query: two devices run a model trained on sensors@1 and report
// validation and drift over MQTT as agents do; the runs edges found walking down from the
// dataset carry their summaries, and only the drifting device's edge says drift.
func TestLineageWhichDevicesDrifted(t *testing.T) {
	n, tok := testNode(t)
	call(t, n, tok, http.MethodPost, "/api/v1/datasets", map[string]string{"name": "sensors"}, http.StatusCreated, nil)
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	cw, _ := mw.CreateFormField("contract")
	cw.Write([]byte(sensorContract))
	sw, _ := mw.CreateFormFile("sample", "s.csv")
	sw.Write([]byte(sensorCSV(50, 0)))
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, n.URL()+"/api/v1/datasets/sensors/versions", &buf)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	doReq(t, req, http.StatusCreated, nil)

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

	topics := wire.Default()
	now := time.Now().UnixMilli()
	agent := func(id string, drifted bool) {
		t.Helper()
		var dev struct {
			Token string `json:"token"`
		}
		call(t, n, tok, http.MethodPost, "/api/v1/devices", map[string]any{"id": id}, http.StatusCreated, &dev)
		c := paho.NewClient(paho.NewClientOptions().AddBroker(n.MQTTURL()).SetClientID(id).SetUsername(id).SetPassword(dev.Token))
		if tk := c.Connect(); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
			t.Fatalf("connect %s: %v", id, tk.Error())
		}
		t.Cleanup(func() { c.Disconnect(100) })
		pub := func(topic string, p wire.Payload, retain bool) {
			t.Helper()
			b, err := wire.Encode(p)
			if err != nil {
				t.Fatal(err)
			}
			if tk := c.Publish(topic, 1, retain, b); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
				t.Fatalf("publish %s: %v", topic, tk.Error())
			}
		}
		one := 1
		hdr := wire.Header{DeviceID: id, TS: now}
		pub(topics.Reported(id), wire.Reported{Header: hdr, Rev: 1, Models: map[string]wire.ReportedModel{"m": {Active: &one, State: wire.StateActive}}}, true)
		// The runs edge must exist before health can hang off it.
		testhelp.WaitFor(t, 10*time.Second, id+" runs m@1", func() bool {
			var d struct {
				Reported struct {
					Models map[string]struct {
						Active *int `json:"active"`
					} `json:"models"`
				} `json:"reported"`
			}
			call(t, n, tok, http.MethodGet, "/api/v1/devices/"+id, nil, http.StatusOK, &d)
			a := d.Reported.Models["m"].Active
			return a != nil && *a == 1
		})
		ref := wire.ModelRef{Model: "m", Version: 1, Dataset: "sensors", DatasetVersion: 1}
		win := wire.Window{Index: 1, WindowStart: now - 60000, WindowEnd: now}
		pub(topics.Validation(id), wire.Validation{Header: hdr, Window: win, ModelRef: ref, Rows: 100, Valid: 97, Invalid: 3, ValidShare: 0.97,
			Violations: map[string]map[string]int64{"temp": {"maximum": 3}}}, false)
		d := wire.Drift{Header: hdr, Window: win, ModelRef: ref, Rows: 97, Features: 2}
		if drifted {
			d.DatasetDrift, d.DriftShare, d.DriftedFeatures, d.Drifted = 1, 1, 2, []string{"temp", "site"}
		}
		pub(topics.Drift(id), d, false)
	}
	agent("d1", false)
	agent("d2", true)

	type edge struct {
		From string         `json:"from"`
		To   string         `json:"to"`
		Kind string         `json:"kind"`
		Attr map[string]any `json:"attr"`
	}
	var g struct {
		Nodes []struct {
			ID string `json:"id"`
		} `json:"nodes"`
		Edges []edge `json:"edges"`
	}
	runs := map[string]edge{}
	testhelp.WaitFor(t, 10*time.Second, "health on both runs edges", func() bool {
		call(t, n, tok, http.MethodGet, "/api/v1/lineage?node=dataset:sensors@1&direction=down&depth=2", nil, http.StatusOK, &g)
		clear(runs)
		for _, e := range g.Edges {
			if e.Kind == "runs" && e.To == "model:m@1" && e.Attr["windows"] != nil {
				runs[e.From] = e
			}
		}
		return len(runs) == 2
	})
	var drifted []string
	for from, e := range runs {
		if e.Attr["last_dataset_drift"] == true {
			drifted = append(drifted, from)
		}
		if e.Attr["rows"] != float64(100) || e.Attr["invalid_rows"] != float64(3) {
			t.Errorf("%s validation summary on the runs edge: %v", from, e.Attr)
		}
	}
	if fmt.Sprint(drifted) != "[device:d2]" {
		t.Errorf("devices with drift on the model trained on sensors@1: %v, want [device:d2] (edges %+v)", drifted, g.Edges)
	}
}
