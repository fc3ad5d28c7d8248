package rollout

import (
	"errors"
	"sort"
	"time"

	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/store"
)

// A tracker keeps what the controller knows of one running rollout's started waves: each
// device's state and gate evidence, and the totals the gates and the wave decisions read,
// maintained by adding and subtracting a device's contribution when it is looked at again. It is
// built by one full read of the started waves (build) and then kept up to date from the change
// feed: a device whose status changed (its reported state, health or outputs) is marked dirty
// and read again at the next pass; a started wave adds its devices. So a pass costs O(changes
// since the last one), not O(devices). The full read runs again as a repair every
// Config.Rebuild, after a feed reset (a snapshot restore), when this node becomes the leader,
// and after any transition the controller did not make itself.
type tracker struct {
	r    state.Rollout
	devs map[string]*tdev
	// dirty devices are read again at the next pass; pending differ from their replicated state.
	dirty, pending map[string]bool
	tot            contribution
	// per wave: active and unsettled (neither active nor failed) devices
	waveActive, waveUnsettled map[int]int
	timedOut                  bool // the current wave's device timeout was applied
	built                     time.Time
}

// tdev is one device of a started wave.
type tdev struct {
	wave             int
	recorded, recErr string // its replicated rollout state
	st, errText      string // where it stands now
	c                contribution
}

// contribution is what one device adds to the totals of an observation. Summed: started
// counts devices of started waves, failed those failed (timeouts included), active those active;
// withEvidence counts active devices that reported at least one window on the new version,
// drifted those whose windows showed dataset drift; predEvidence counts active devices that
// reported prediction drift on the new version, predDrifted those with a drifted prediction
// window; labels and relativeSum add up the joined labels and label-weighted relative performance.
type contribution struct {
	started, failed, active, withEvidence, drifted, predEvidence, predDrifted int
	rows, invalid, labels                                                     int64
	relativeSum                                                               float64
}

func (a *contribution) add(b contribution, sign int) {
	a.started += sign * b.started
	a.failed += sign * b.failed
	a.active += sign * b.active
	a.withEvidence += sign * b.withEvidence
	a.drifted += sign * b.drifted
	a.predEvidence += sign * b.predEvidence
	a.predDrifted += sign * b.predDrifted
	a.rows += int64(sign) * b.rows
	a.invalid += int64(sign) * b.invalid
	a.labels += int64(sign) * b.labels
	a.relativeSum += float64(sign) * b.relativeSum
}

// build reads every device of r's started waves.
func (c *Controller) build(r state.Rollout) (*tracker, error) {
	t := &tracker{r: r, devs: map[string]*tdev{}, dirty: map[string]bool{}, pending: map[string]bool{},
		waveActive: map[int]int{}, waveUnsettled: map[int]int{}, built: c.cfg.Now()}
	devs, err := c.cfg.Reader.RolloutDevices(r.ID, 0)
	if err != nil {
		return nil, err
	}
	for _, rd := range devs {
		if rd.Wave == 0 || rd.Wave > r.Wave {
			continue
		}
		if err := c.admit(t, rd); err != nil {
			return nil, err
		}
	}
	c.builds.Inc()
	return t, nil
}

// admit adds a device of a started wave and looks at it.
func (c *Controller) admit(t *tracker, rd state.RolloutDevice) error {
	d := &tdev{wave: rd.Wave, recorded: rd.State, recErr: rd.Error, st: rd.State}
	t.devs[rd.ID] = d
	t.waveUnsettled[d.wave]++ // undone by the first look
	if d.st == state.DevActive {
		t.waveUnsettled[d.wave]--
		t.waveActive[d.wave]++
	} else if d.st == state.DevFailed {
		t.waveUnsettled[d.wave]--
	}
	return c.look(t, rd.ID, d)
}

// look evaluates one device again, as a pass of the previous design did for every device: where
// it stands on the rollout's version from its reported state (a device not yet settled, or failed
// and maybe fixed since), the device timeout of the current wave, and its gate evidence from the
// runs edge once it is active.
func (c *Controller) look(t *tracker, id string, d *tdev) error {
	r := t.r
	now := c.cfg.Now().UnixMilli()
	t.tot.add(d.c, -1)
	settledBefore := d.st == state.DevActive || d.st == state.DevFailed
	if d.st == state.DevActive {
		t.waveActive[d.wave]--
	}
	st, errText := d.recorded, ""
	if st != state.DevActive && st != state.DevRolledBack {
		if dev, err := c.cfg.Reader.DeviceStatus(id); err == nil {
			st, errText = deviceState(dev, r, st)
		} else if errors.Is(err, state.ErrNotFound) {
			st, errText = state.DevFailed, "device removed"
		} else {
			return err
		}
		if st == state.DevFailed && d.recorded == state.DevFailed {
			errText = d.recErr
		}
		if st != state.DevActive && st != state.DevFailed && d.wave == r.Wave && waveTimedOut(r, now) {
			st, errText = state.DevFailed, "timed out: no activation within device_timeout_seconds"
		}
	}
	d.st, d.errText = st, errText
	if st != d.recorded {
		t.pending[id] = true
	} else {
		delete(t.pending, id)
	}
	cb := contribution{started: 1}
	switch st {
	case state.DevFailed:
		cb.failed = 1
	case state.DevActive:
		cb.active = 1
		if e, err := c.cfg.Reader.RunsEdge(id, r.Model, r.Version); err == nil {
			windows, _ := e.Attr["windows"].(float64)
			driftWindows, _ := e.Attr["drift_windows"].(float64)
			rows, _ := e.Attr["rows"].(float64)
			inv, _ := e.Attr["invalid_rows"].(float64)
			if windows > 0 {
				cb.withEvidence = 1
				if driftWindows > 0 {
					cb.drifted = 1
				}
			}
			cb.rows, cb.invalid = int64(rows), int64(inv)
			pw, _ := e.Attr["prediction_windows"].(float64)
			pd, _ := e.Attr["prediction_drift_windows"].(float64)
			if pw > 0 {
				cb.predEvidence = 1
				if pd > 0 {
					cb.predDrifted = 1
				}
			}
			labels, _ := e.Attr["labels"].(float64)
			rel, _ := e.Attr["relative_sum"].(float64)
			cb.labels, cb.relativeSum = int64(labels), rel
		}
	}
	d.c = cb
	t.tot.add(cb, 1)
	settled := st == state.DevActive || st == state.DevFailed
	if settledBefore && !settled {
		t.waveUnsettled[d.wave]++
	} else if !settledBefore && settled {
		t.waveUnsettled[d.wave]--
	}
	if st == state.DevActive {
		t.waveActive[d.wave]++
	}
	c.looks.Inc()
	return nil
}

// observation reads the tracker's totals the way the gates and the wave decisions want them.
func (t *tracker) observation() observation {
	o := observation{contribution: t.tot, waveSettled: t.waveUnsettled[t.r.Wave] == 0, waveActive: t.waveActive[t.r.Wave]}
	for id := range t.pending {
		d := t.devs[id]
		o.updates = append(o.updates, state.DeviceUpdate{ID: id, State: d.st, Error: d.errText})
	}
	sortUpdates(o.updates)
	return o
}

// ingest applies changes from the feed to the trackers: it marks the devices whose status
// changed, and drops the trackers a reset or a transition by someone else made stale. It returns
// whether a change asks for a pass now (a rollout created or resumed).
func (c *Controller) ingest(cs []store.Change) bool {
	wake := false
	for _, ch := range cs {
		if ch.Reset {
			clear(c.trackers)
			wake = true
			continue
		}
		ev, ok := ch.Event.(state.Change)
		if !ok {
			continue
		}
		switch ev.Kind {
		case state.ChangeStatus, state.ChangeDeviceRemoved:
			for _, t := range c.trackers {
				if _, ok := t.devs[ev.Device]; ok {
					t.dirty[ev.Device] = true
				}
			}
		case state.ChangeRollout:
			switch ev.Action {
			case state.ActDevices, state.ActGates, state.ActWaveDone, state.ActStartWave:
				// The controller's own decisions: the next pass reads the rollout (a started wave
				// adds its devices to the tracker).
			default: // created, or an operator's action (pause, resume, abort, rollback, complete)
				delete(c.trackers, ev.Rollout)
				wake = wake || ev.Action == "create" || ev.Action == state.ActResume
			}
		}
	}
	return wake
}

func sortUpdates(u []state.DeviceUpdate) {
	sort.Slice(u, func(i, j int) bool { return u[i].ID < u[j].ID })
}

// refresh brings t up to r, the rollout as replicated now: the devices of waves started since
// are added, the current wave's device timeout is applied once it has passed, and every dirty
// device is looked at again.
func (c *Controller) refresh(t *tracker, r state.Rollout) error {
	prev := t.r.Wave
	t.r = r
	for w := prev + 1; w <= r.Wave; w++ {
		devs, err := c.cfg.Reader.RolloutDevices(r.ID, w)
		if err != nil {
			return err
		}
		for _, rd := range devs {
			if err := c.admit(t, rd); err != nil {
				return err
			}
		}
		t.timedOut = false
	}
	if !t.timedOut && waveTimedOut(r, c.cfg.Now().UnixMilli()) {
		t.timedOut = true
		for id, d := range t.devs {
			if d.wave == r.Wave && d.st != state.DevActive && d.st != state.DevFailed {
				t.dirty[id] = true
			}
		}
	}
	ids := make([]string, 0, len(t.dirty))
	for id := range t.dirty {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if d := t.devs[id]; d != nil {
			if err := c.look(t, id, d); err != nil {
				return err
			}
		}
		delete(t.dirty, id)
	}
	return nil
}

// waveTimedOut reports whether r's current wave started more than its device timeout before
// now (Unix ms): its devices not yet active have failed.
func waveTimedOut(r state.Rollout, now int64) bool {
	timeout := int64(r.DeviceTimeout) * 1000
	return timeout > 0 && r.WaveStartedAt > 0 && now-r.WaveStartedAt > timeout
}
