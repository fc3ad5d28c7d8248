package state

import (
	"testing"

	"github.com/driftline/driftline/hub/command"
)

// TestReportedStateOlderLoses: with an external broker the hubs share the device subscription,
// so two reported states a device sends a moment apart ("activating", then "active") can reach
// two nodes, whose telemetry commands commit in either order. The one the agent sent later must
// stay; before, the last command applied won and the device stayed "activating" for good (found
// by the walkthrough of docs/operations.md: a rollout hung with one device activating).
func TestReportedStateOlderLoses(t *testing.T) {
	h := newHarness(t)
	h.must(command.TypeDeviceCreate, "a", DeviceCreate{ID: "d1", TokenHash: "h1"})
	one := 1
	active := &Reported{Rev: 1, TS: 2_000, Models: map[string]ReportedModel{"m": {Active: &one, State: "active"}}}
	activating := &Reported{Rev: 1, TS: 1_000, Models: map[string]ReportedModel{"m": {Target: 1, State: "activating"}}}
	h.must(command.TypeDeviceTelemetry, "hub2", DeviceTelemetry{Devices: []DeviceObservation{{ID: "d1", Reported: active}}})
	h.must(command.TypeDeviceTelemetry, "hub1", DeviceTelemetry{Devices: []DeviceObservation{{ID: "d1", Reported: activating}}})
	r := Reader{DB: h.db}
	d, err := r.Device("d1")
	if err != nil || d.Reported.Models["m"].State != "active" || d.Reported.TS != 2_000 {
		t.Fatalf("an older reported state replaced a newer one: %+v %v", d.Reported, err)
	}
	// A newer one still replaces it, and one without a time (an agent before this field) too.
	newer := &Reported{Rev: 2, TS: 3_000, Models: map[string]ReportedModel{"m": {Target: 2, State: "downloading"}}}
	h.must(command.TypeDeviceTelemetry, "hub1", DeviceTelemetry{Devices: []DeviceObservation{{ID: "d1", Reported: newer}}})
	if d, _ = r.Device("d1"); d.Reported.Rev != 2 {
		t.Fatalf("a newer reported state was dropped: %+v", d.Reported)
	}
	untimed := &Reported{Rev: 3, Models: map[string]ReportedModel{"m": {Target: 3, State: "downloading"}}}
	h.must(command.TypeDeviceTelemetry, "hub1", DeviceTelemetry{Devices: []DeviceObservation{{ID: "d1", Reported: untimed}}})
	if d, _ = r.Device("d1"); d.Reported.Rev != 3 {
		t.Fatalf("a reported state without a time was dropped: %+v", d.Reported)
	}
	// A device whose clock was set back (no real-time clock, before NTP) is not frozen: a report
	// dated well before the applied one is a clock change, not a reordering.
	late := &Reported{Rev: 4, TS: 10 * 3600_000, Models: map[string]ReportedModel{"m": {Target: 4, State: "downloading"}}}
	h.must(command.TypeDeviceTelemetry, "hub1", DeviceTelemetry{Devices: []DeviceObservation{{ID: "d1", Reported: late}}})
	setBack := &Reported{Rev: 4, TS: 9 * 3600_000, Models: map[string]ReportedModel{"m": {Active: &one, State: "active"}}}
	h.must(command.TypeDeviceTelemetry, "hub1", DeviceTelemetry{Devices: []DeviceObservation{{ID: "d1", Reported: setBack}}})
	if d, _ = r.Device("d1"); d.Reported.Models["m"].State != "active" {
		t.Fatalf("a report from a clock set back an hour was dropped: %+v", d.Reported)
	}
}
