package state

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/command"
)

// applyChanges applies one command as the store's FSM does with a change feed and returns the
// changes it reported.
func (h *harness) applyChanges(typ command.Type, body any) []Change {
	h.t.Helper()
	h.index++
	h.now += 1000
	env, err := command.New(typ, "", h.now, "hub", body)
	if err != nil {
		h.t.Fatal(err)
	}
	var got []Change
	var aerr error
	if err := h.db.Update(func(txn *badger.Txn) error {
		_, aerr = Processor{}.ApplyChanges(txn, h.index, env, func(c any) { got = append(got, c.(Change)) })
		return nil
	}); err != nil {
		h.t.Fatal(err)
	}
	if aerr != nil {
		h.t.Fatalf("apply %d: %v", typ, aerr)
	}
	return got
}

func (h *harness) raw(key string) []byte {
	h.t.Helper()
	var v []byte
	err := h.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(key))
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return v
}

// legacyDevice is a device document as the previous release wrote it: spec and status in one
// value under fsm/dev/ID.
const legacyDevice = `{"id":"old","labels":{"site":"a"},"first_seen":1700000000100,"last_seen":1700000000200,"online":true,` +
	`"created_at":1700000000000,"desired":{"m":{"version":1,"set_at":1700000000050}},"desired_rev":1,` +
	`"reported":{"rev":1,"agent_version":"0.9","models":{"m":{"active":1,"state":"active"}}},` +
	`"health":{"model":"m","version":1,"rows":10,"invalid":1,"dataset_drift":false,"drift_share":0.1,"at":1700000000150},` +
	`"token_hash":"hold"}`

// TestDeviceSpecAndStatusApart checks the device layout: a device of the previous layout reads
// the same (the API JSON included); telemetry writes only the status key and reports only a
// status change (the desired publisher is not woken); a desired write changes only the spec key,
// reports the new revision, and moves a legacy status out.
func TestDeviceSpecAndStatusApart(t *testing.T) {
	h := newHarness(t)
	seedRegistry(h)
	if err := h.db.Update(func(txn *badger.Txn) error {
		if err := txn.Set([]byte(pDevice+"old"), []byte(legacyDevice)); err != nil {
			return err
		}
		return txn.Set([]byte(pDeviceToken+"hold"), []byte("old"))
	}); err != nil {
		t.Fatal(err)
	}
	r := Reader{DB: h.db}

	// The old document reads as before: every field, and the same API JSON.
	var want Device
	if err := json.Unmarshal([]byte(legacyDevice), &want); err != nil {
		t.Fatal(err)
	}
	want.TokenHash = "hold"
	got, err := r.Device("old")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("legacy device reads\n%+v\nwant\n%+v", got, want)
	}
	page, err := r.Devices(nil, "", 10)
	if err != nil || len(page.Items) != 1 || !reflect.DeepEqual(page.Items[0], want) {
		t.Fatalf("legacy device lists as %+v (%v)", page.Items, err)
	}
	wantJSON, _ := json.Marshal(want)
	if st, err := r.DeviceStatus("old"); err != nil || st.LastSeen != want.LastSeen || !reflect.DeepEqual(st.Reported, want.Reported) || st.Health == nil {
		t.Fatalf("legacy device status %+v (%v)", st, err)
	}
	if _, err := r.DeviceStatus("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("status of an unknown device: %v", err)
	}

	// A spec write on a legacy device moves its status out and keeps everything readable.
	if cs := h.applyChanges(command.TypeDevicePatch, DevicePatch{ID: "old", Labels: map[string]*string{"x": ptr("y")}}); len(cs) != 0 {
		t.Fatalf("label change reported %v", cs)
	}
	if h.raw(pDeviceStatus+"old") == nil {
		t.Fatal("the first spec write of a legacy device left no status key")
	}
	if strings.Contains(string(h.raw(pDevice+"old")), "reported") {
		t.Fatalf("spec document still holds the status: %s", h.raw(pDevice+"old"))
	}
	got, _ = r.Device("old")
	delete(got.Labels, "x")
	if b, _ := json.Marshal(got); string(b) != string(wantJSON) {
		t.Fatalf("after the move the device reads\n%s\nwant\n%s", b, wantJSON)
	}

	// Telemetry: the spec bytes stay as they are, only a status change is reported.
	spec := h.raw(pDevice + "old")
	two, seen := 2, h.now
	cs := h.applyChanges(command.TypeDeviceTelemetry, DeviceTelemetry{Devices: []DeviceObservation{{
		ID: "old", LastSeen: seen, Reported: &Reported{Rev: 1, Models: map[string]ReportedModel{"m": {Active: &two}}}}}})
	if !reflect.DeepEqual(cs, []Change{{Kind: ChangeStatus, Device: "old", Online: true, LastSeen: seen}}) {
		t.Fatalf("telemetry reported %v, want one status change", cs)
	}
	if string(h.raw(pDevice+"old")) != string(spec) {
		t.Fatal("telemetry rewrote the device's spec")
	}
	if st, err := r.DeviceStatus("old"); err != nil || st.LastSeen != seen || *st.Reported.Models["m"].Active != 2 {
		t.Fatalf("status after telemetry %+v (%v)", st, err)
	}
	got, _ = r.Device("old")
	if got.LastSeen != seen || *got.Reported.Models["m"].Active != 2 || got.DesiredRev != 1 || got.Labels["site"] != "a" {
		t.Fatalf("after telemetry: %+v", got)
	}

	// A desired write: the spec changes, the status key does not, the new revision is reported.
	status := h.raw(pDeviceStatus + "old")
	cs = h.applyChanges(command.TypeDeviceDesiredSet, DeviceDesiredSet{ID: "old", Model: "m", Version: 0})
	if !reflect.DeepEqual(cs, []Change{{Kind: ChangeDesired, Device: "old", Rev: 2}}) {
		t.Fatalf("desired write reported %v", cs)
	}
	if string(h.raw(pDeviceStatus+"old")) != string(status) {
		t.Fatal("a desired write rewrote the device's status")
	}
	// The same desired state again changes nothing and reports nothing.
	if cs := h.applyChanges(command.TypeDeviceDesiredSet, DeviceDesiredSet{ID: "old", Model: "m", Version: 0}); len(cs) != 0 {
		t.Fatalf("an unchanged desired state reported %v", cs)
	}

	// A new device has both keys from the start; removing it removes both.
	if cs := h.applyChanges(command.TypeDeviceCreate, DeviceCreate{ID: "new", TokenHash: "hnew"}); !reflect.DeepEqual(cs, []Change{{Kind: ChangeDeviceAdded, Device: "new"}}) {
		t.Fatalf("create reported %v", cs)
	}
	if h.raw(pDeviceStatus+"new") == nil {
		t.Fatal("a new device has no status key")
	}
	if cs := h.applyChanges(command.TypeDeviceDelete, DeviceDelete{ID: "new"}); !reflect.DeepEqual(cs, []Change{{Kind: ChangeDeviceRemoved, Device: "new"}}) {
		t.Fatalf("delete reported %v", cs)
	}
	if h.raw(pDeviceStatus+"new") != nil || h.raw(pDevice+"new") != nil {
		t.Fatal("a removed device left keys behind")
	}
	if _, err := r.DeviceStatus("new"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("status of a removed device: %v", err)
	}
}

func ptr(s string) *string { return &s }
