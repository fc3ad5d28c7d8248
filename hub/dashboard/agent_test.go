package dashboard_test

import (
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/driftline/driftline/shared/wire"
)

// reportAsAgent connects to the hub's embedded broker as device id (with its token) and publishes
// what an agent running model@version publishes: status online, reported state, one validation
// window and one drift window, so that the fleet, device and drift pages have live data.
func (h *testHub) reportAsAgent(id, token, model string, version int, invalid int64, driftShare float64) {
	h.t.Helper()
	opts := paho.NewClientOptions().AddBroker(h.node.MQTTURL()).SetClientID(id).SetUsername(id).SetPassword(token).
		SetDefaultPublishHandler(func(paho.Client, paho.Message) {})
	c := paho.NewClient(opts)
	if tk := c.Connect(); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		h.t.Fatalf("connect %s: %v", id, tk.Error())
	}
	h.t.Cleanup(func() { c.Disconnect(100) })
	topics := wire.Default()
	now := time.Now().UnixMilli()
	hd := wire.Header{DeviceID: id, TS: now}
	win := wire.Window{Index: 1, WindowStart: now - 60_000, WindowEnd: now}
	ref := wire.ModelRef{Model: model, Version: version}
	v := version
	drifted := 0
	if driftShare >= 0.5 {
		drifted = 1
	}
	msgs := []struct {
		topic  string
		retain bool
		p      wire.Payload
	}{
		{topics.Status(id), true, wire.Status{Header: hd, Online: true, AgentVersion: "0.9.0-test", Reason: wire.ReasonConnect}},
		{topics.Reported(id), true, wire.Reported{Header: hd, Rev: 1, AgentVersion: "0.9.0-test",
			Models: map[string]wire.ReportedModel{model: {Active: &v, State: wire.StateActive}}}},
		{topics.Validation(id), false, wire.Validation{Header: hd, Window: win, ModelRef: ref, Rows: 1000, Valid: 1000 - invalid, Invalid: invalid,
			ValidShare: float64(1000-invalid) / 1000}},
		{topics.Drift(id), false, wire.Drift{Header: hd, Window: win, ModelRef: ref, Rows: 1000 - invalid, DatasetDrift: drifted,
			DriftShare: driftShare, Features: 2, DriftedFeatures: int(driftShare * 2)}},
	}
	for _, m := range msgs {
		b, err := wire.Encode(m.p)
		if err != nil {
			h.t.Fatalf("encode %s: %v", m.topic, err)
		}
		if tk := c.Publish(m.topic, 1, m.retain, b); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
			h.t.Fatalf("publish %s: %v", m.topic, tk.Error())
		}
	}
}
