package state

import (
	"errors"
	"sort"
	"strconv"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/command"
)

// A device is stored under two keys: its spec (what it should run: labels, token hash, desired
// state) under dev/ID and its status (what it says and how it is: presence, reported state,
// health, outputs) under devst/ID, so telemetry never rewrites the desired state and a status
// change is not a desired change. A device written by the previous release has one document
// under dev/ID holding both; it reads the same (the status from that document until the device
// has a devst/ key), and its first spec write moves the status out.

// storedDevice is Device with its token hash, for storage. Decoding a dev/ document fills the
// spec and, for a document of the previous layout, the status too.
type storedDevice struct {
	Device
	TokenHash string `json:"token_hash"`
	// legacy: the status came from a dev/ document of the previous layout (no devst/ key).
	legacy bool
}

// deviceSpec is the document under dev/ID.
type deviceSpec struct {
	ID         string                  `json:"id"`
	Labels     map[string]string       `json:"labels"`
	TokenHash  string                  `json:"token_hash"`
	CreatedAt  int64                   `json:"created_at"`
	Desired    map[string]DesiredModel `json:"desired"`
	DesiredRev int64                   `json:"desired_rev"`
}

// deviceStatus is the document under devst/ID.
type deviceStatus struct {
	FirstSeen int64          `json:"first_seen,omitempty"`
	LastSeen  int64          `json:"last_seen,omitempty"`
	Online    bool           `json:"online"`
	Reported  Reported       `json:"reported"`
	Health    *HealthSummary `json:"health,omitempty"`
	Outputs   *OutputHealth  `json:"outputs,omitempty"`
}

func getDevice(txn *badger.Txn, id string) (storedDevice, error) {
	var d storedDevice
	if err := getJSON(txn, nameKey(pDevice, id), &d); err != nil {
		if errors.Is(err, ErrNotFound) {
			return d, notFound("device %s", id)
		}
		return d, err
	}
	return d, loadStatus(txn, &d)
}

// loadStatus completes d, decoded from its dev/ document, with its devst/ document.
func loadStatus(txn *badger.Txn, d *storedDevice) error {
	d.Device.TokenHash = d.TokenHash
	var st deviceStatus
	if err := getJSON(txn, nameKey(pDeviceStatus, d.ID), &st); err != nil {
		if errors.Is(err, ErrNotFound) {
			d.legacy = true
			return nil
		}
		return err
	}
	d.FirstSeen, d.LastSeen, d.Online, d.Reported, d.Health, d.Outputs = st.FirstSeen, st.LastSeen, st.Online, st.Reported, st.Health, st.Outputs
	if d.Reported.Models == nil {
		d.Reported.Models = map[string]ReportedModel{}
	}
	return nil
}

// putDevice writes d's spec (and its status too while that still lives in a dev/ document of
// the previous layout, which this write replaces).
func putDevice(txn *badger.Txn, d storedDevice) error {
	spec := deviceSpec{ID: d.ID, Labels: d.Labels, TokenHash: d.Device.TokenHash, CreatedAt: d.CreatedAt, Desired: d.Desired, DesiredRev: d.DesiredRev}
	if err := putJSON(txn, nameKey(pDevice, d.ID), spec); err != nil {
		return err
	}
	if d.legacy {
		return putDeviceStatus(txn, d)
	}
	return nil
}

// putDeviceStatus writes d's status only.
func putDeviceStatus(txn *badger.Txn, d storedDevice) error {
	return putJSON(txn, nameKey(pDeviceStatus, d.ID), deviceStatus{FirstSeen: d.FirstSeen, LastSeen: d.LastSeen,
		Online: d.Online, Reported: d.Reported, Health: d.Health, Outputs: d.Outputs})
}

func deviceCreate(txn *badger.Txn, env command.Envelope, c DeviceCreate) (any, *auditNote, error) {
	if !ValidName(c.ID) {
		return nil, nil, invalid("device id %q: use 1-128 letters, digits, '.', '_' or '-'", c.ID)
	}
	if c.TokenHash == "" {
		return nil, nil, invalid("device needs a token hash")
	}
	for k := range c.Labels {
		if !validLabelKey(k) {
			return nil, nil, invalid("label key %q", k)
		}
	}
	if ok, err := exists(txn, nameKey(pDevice, c.ID)); err != nil || ok {
		if err != nil {
			return nil, nil, err
		}
		return nil, nil, existsErr("device %s", c.ID)
	}
	labels := c.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	d := storedDevice{Device: Device{
		ID: c.ID, Labels: labels, TokenHash: c.TokenHash, CreatedAt: env.Time,
		Desired: map[string]DesiredModel{}, Reported: Reported{Models: map[string]ReportedModel{}},
	}, legacy: true} // writes the status too
	if err := putDevice(txn, d); err != nil {
		return nil, nil, err
	}
	if err := txn.Set(nameKey(pDeviceToken, c.TokenHash), []byte(c.ID)); err != nil {
		return nil, nil, err
	}
	if err := putNode(txn, LineageNode{ID: DeviceNode(c.ID), Kind: KindDevice}); err != nil {
		return nil, nil, err
	}
	return d.Device, &auditNote{"device.create", DeviceNode(c.ID), ""}, nil
}

func validLabelKey(k string) bool { return ValidName(k) }

func devicePatch(txn *badger.Txn, c DevicePatch) (any, *auditNote, error) {
	d, err := getDevice(txn, c.ID)
	if err != nil {
		return nil, nil, err
	}
	for k := range c.Labels {
		if !validLabelKey(k) {
			return nil, nil, invalid("label key %q", k)
		}
	}
	if d.Labels == nil {
		d.Labels = map[string]string{}
	}
	keys := make([]string, 0, len(c.Labels))
	for k, v := range c.Labels {
		keys = append(keys, k)
		if v == nil {
			delete(d.Labels, k)
		} else {
			d.Labels[k] = *v
		}
	}
	sort.Strings(keys)
	if err := putDevice(txn, d); err != nil {
		return nil, nil, err
	}
	return d.Device, &auditNote{"device.label", DeviceNode(c.ID), joinKeys(keys)}, nil
}

func joinKeys(keys []string) string {
	out := ""
	for i, k := range keys {
		if i > 0 {
			out += ","
		}
		out += k
	}
	return out
}

func deviceDelete(txn *badger.Txn, env command.Envelope, c DeviceDelete) (any, *auditNote, error) {
	d, err := getDevice(txn, c.ID)
	if err != nil {
		return nil, nil, err
	}
	if err := txn.Delete(nameKey(pDevice, c.ID)); err != nil {
		return nil, nil, err
	}
	if err := txn.Delete(nameKey(pDeviceToken, d.Device.TokenHash)); err != nil {
		return nil, nil, err
	}
	if err := txn.Delete(nameKey(pReportCursor, c.ID)); err != nil {
		return nil, nil, err
	}
	if err := txn.Delete(nameKey(pDeviceStatus, c.ID)); err != nil {
		return nil, nil, err
	}
	// Close any open runs edges: the device no longer runs anything we know of.
	if err := closeRunsEdges(txn, c.ID, "", env.Time); err != nil {
		return nil, nil, err
	}
	return d.Device, &auditNote{"device.delete", DeviceNode(c.ID), ""}, nil
}

// deviceRekey replaces a device's token hash (and its reverse index) and keeps the rest.
func deviceRekey(txn *badger.Txn, c DeviceRekey) (any, *auditNote, error) {
	if c.TokenHash == "" {
		return nil, nil, invalid("device needs a token hash")
	}
	d, err := getDevice(txn, c.ID)
	if err != nil {
		return nil, nil, err
	}
	if d.Device.TokenHash == c.TokenHash { // a retried command: done already
		return d.Device, nil, nil
	}
	if ok, err := exists(txn, nameKey(pDeviceToken, c.TokenHash)); err != nil || ok {
		if err != nil {
			return nil, nil, err
		}
		return nil, nil, existsErr("token hash in use")
	}
	if err := txn.Delete(nameKey(pDeviceToken, d.Device.TokenHash)); err != nil {
		return nil, nil, err
	}
	if err := txn.Set(nameKey(pDeviceToken, c.TokenHash), []byte(c.ID)); err != nil {
		return nil, nil, err
	}
	d.Device.TokenHash = c.TokenHash
	if err := putDevice(txn, d); err != nil {
		return nil, nil, err
	}
	return d.Device, &auditNote{"device.rekey", DeviceNode(c.ID), ""}, nil
}

// DesiredResult is the answer to a desired-state write: the device's new desired state.
type DesiredResult struct {
	ID      string                  `json:"id"`
	Rev     int64                   `json:"rev"`
	Desired map[string]DesiredModel `json:"desired"`
}

func deviceDesiredSet(txn *badger.Txn, env command.Envelope, c DeviceDesiredSet) (any, *auditNote, error) {
	d, err := getDevice(txn, c.ID)
	if err != nil {
		return nil, nil, err
	}
	if c.Version < 0 {
		return nil, nil, invalid("version must be positive (0 clears)")
	}
	if c.Version > 0 {
		mv, err := getModelVersion(txn, c.Model, c.Version)
		if err != nil {
			return nil, nil, err
		}
		if mv.Status != StatusApproved {
			return nil, nil, conflict("model:%s@%d is %s; only approved versions go to devices", c.Model, c.Version, mv.Status)
		}
	}
	if d.Desired == nil {
		d.Desired = map[string]DesiredModel{}
	}
	cur, ok := d.Desired[c.Model]
	if ok && cur.Version == c.Version && cur.RolloutID == c.RolloutID || !ok && c.Version == 0 {
		// Unchanged (clearing a model the device has no desired version of included): the
		// revision stays, nothing is written or published.
		return DesiredResult{ID: d.ID, Rev: d.DesiredRev, Desired: d.Desired}, nil, nil
	}
	if c.Version == 0 {
		delete(d.Desired, c.Model)
	} else {
		d.Desired[c.Model] = DesiredModel{Version: c.Version, RolloutID: c.RolloutID, SetAt: env.Time}
	}
	d.DesiredRev++
	if err := putDevice(txn, d); err != nil {
		return nil, nil, err
	}
	return DesiredResult{ID: d.ID, Rev: d.DesiredRev, Desired: d.Desired},
		&auditNote{"device.desired.set", DeviceNode(c.ID), ModelNode(c.Model, c.Version)}, nil
}

// deviceTelemetry writes the status of each device it has news of (never its spec) and reports
// each as a ChangeStatus carrying its presence after the command (and a ChangeReports when it
// carried numbered reports).
func deviceTelemetry(txn *badger.Txn, env command.Envelope, c DeviceTelemetry, em emitter) (any, *auditNote, error) {
	applied := 0
	for _, o := range c.Devices {
		d, err := getDevice(txn, o.ID)
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile: news about it is dropped
		}
		if err != nil {
			return nil, nil, err
		}
		if o.LastSeen > d.LastSeen {
			d.LastSeen = o.LastSeen
			if d.FirstSeen == 0 {
				d.FirstSeen = o.LastSeen
			}
		}
		if o.Online != nil {
			d.Online = *o.Online
		}
		// An older reported state (sent before the one applied; it came through another node)
		// is dropped: see Reported.TS and reportReorderWindow.
		if o.Reported != nil && !overtaken(*o.Reported, d.Reported) {
			if err := updateRunsEdges(txn, d.ID, d.Reported, *o.Reported, env.Time); err != nil {
				return nil, nil, err
			}
			d.Reported = *o.Reported
			if d.Reported.Models == nil {
				d.Reported.Models = map[string]ReportedModel{}
			}
		}
		if o.Health != nil {
			if err := applyHealth(txn, &d, *o.Health); err != nil {
				return nil, nil, err
			}
		}
		if err := applyNumbered(txn, &d, o.Reports); err != nil {
			return nil, nil, err
		}
		if o.Outputs != nil {
			if err := attachOutputs(txn, &d, *o.Outputs); err != nil {
				return nil, nil, err
			}
		}
		if err := putDeviceStatus(txn, d); err != nil {
			return nil, nil, err
		}
		em.add(Change{Kind: ChangeStatus, Device: d.ID, Online: d.Online, LastSeen: d.LastSeen})
		if len(o.Reports) > 0 {
			em.add(Change{Kind: ChangeReports, Device: d.ID})
		}
		applied++
	}
	return map[string]int{"applied": applied}, nil, nil
}

// updateRunsEdges opens a runs edge for every model whose active version changed and closes the
// edge of the version it replaced.
// reportReorderWindow bounds how much older than the applied reported state a report may be
// dated and still lose to it. Reports of one device that reach different nodes commit at most
// seconds apart; a device whose clock was set back further (one without a real-time clock,
// before NTP answers) must not have its reported state frozen until its clock catches up.
const reportReorderWindow = 2 * time.Minute

// overtaken reports whether r was sent shortly before applied, so applied is newer and stays.
// A report without a send time (an agent before Reported.TS) is never overtaken.
func overtaken(r, applied Reported) bool {
	return r.TS != 0 && r.TS < applied.TS && applied.TS-r.TS <= reportReorderWindow.Milliseconds()
}

func updateRunsEdges(txn *badger.Txn, id string, old, cur Reported, ts int64) error {
	names := make([]string, 0, len(cur.Models)+len(old.Models))
	seen := map[string]bool{}
	for n := range cur.Models {
		names, seen[n] = append(names, n), true
	}
	for n := range old.Models {
		if !seen[n] {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		was, now := activeOf(old, name), activeOf(cur, name)
		if was == now {
			continue
		}
		if was > 0 {
			if err := closeRunsEdges(txn, id, ModelNode(name, was), ts); err != nil {
				return err
			}
		}
		if now > 0 {
			e := LineageEdge{From: DeviceNode(id), To: ModelNode(name, now), Kind: EdgeRuns, Since: ts}
			if err := putEdge(txn, e); err != nil {
				return err
			}
		}
	}
	return nil
}

func activeOf(r Reported, model string) int {
	if m, ok := r.Models[model]; ok && m.Active != nil {
		return *m.Active
	}
	return 0
}

// sameWindow reports whether part continues the summary prev of the same window: the hub batches
// MQTT messages by interval, so a window's validation and drift reports may arrive in two
// telemetry commands, and the second must not count as a window of its own.
func sameWindow(prev *HealthSummary, part HealthSummary) bool {
	return prev != nil && part.At > 0 && prev.At == part.At && prev.Model == part.Model && prev.Version == part.Version
}

// mergeHealth adds part to the summary prev of the same window.
func mergeHealth(prev, part HealthSummary) HealthSummary {
	prev.Rows += part.Rows
	prev.Invalid += part.Invalid
	prev.DatasetDrift = prev.DatasetDrift || part.DatasetDrift
	prev.DriftShare = max(prev.DriftShare, part.DriftShare)
	return prev
}

// attachHealth hangs a drift and validation summary off the runs edge it was observed on: part is
// what this command brought, merged the window's summary with it. continued says the window was
// already counted on the edge, driftCounted that its drift was too.
func attachHealth(txn *badger.Txn, id string, part, merged HealthSummary, continued, driftCounted bool) error {
	h := merged
	if h.Model == "" || h.Version <= 0 {
		return nil
	}
	return updateRunsEdge(txn, id, h.Model, h.Version, func(attr map[string]any) {
		rows, _ := attr["rows"].(float64)
		invalidRows, _ := attr["invalid_rows"].(float64)
		windows, _ := attr["windows"].(float64)
		drifted, _ := attr["drift_windows"].(float64)
		attr["rows"] = rows + float64(part.Rows)
		attr["invalid_rows"] = invalidRows + float64(part.Invalid)
		if !continued {
			windows++
		}
		attr["windows"] = windows
		if h.DatasetDrift && !driftCounted {
			drifted++
		}
		attr["drift_windows"] = drifted
		attr["last_drift_share"] = h.DriftShare
		attr["last_dataset_drift"] = h.DatasetDrift
		attr["last_report"] = strconv.FormatInt(h.At, 10)
	})
}

// updateRunsEdge lets update change the attributes of the runs edge from device id to model
// version (model, version) and stores the edge again; a device with no such edge (the version
// is not, or no longer, in its lineage) is left alone.
func updateRunsEdge(txn *badger.Txn, id, model string, version int, update func(attr map[string]any)) error {
	key := edgeKey(pLineageOut, DeviceNode(id), EdgeRuns, ModelNode(model, version))
	var e LineageEdge
	if err := getJSON(txn, key, &e); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	if e.Attr == nil {
		e.Attr = map[string]any{}
	}
	update(e.Attr)
	return putJSON(txn, key, e)
}
