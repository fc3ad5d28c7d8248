package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/driftline/driftline/firmware-sim/replay"
	"github.com/driftline/driftline/shared/wire"
)

// Options pick one run of a scenario.
type Options struct {
	// Seed makes the run reproducible: the same scenario, seed, devices and start give the same
	// bytes.
	Seed uint64
	// Devices is the number of devices (at least 1).
	Devices int
	// IDs, when set, are the device ids (len ≥ Devices) instead of the scenario's pattern, e.g.
	// from a credentials file.
	IDs []string
	// Start is the time of the first message; timestamps are Start plus the schedule, not the
	// wall clock at send time.
	Start time.Time
	// Series, when set, is the replayed series (overrides loading Scenario.Replay.File), shared
	// read-only by every device.
	Series *replay.Series
}

// Fleet is a scenario bound to devices and a seed. It is read-only after NewFleet and makes one
// Stream per device.
type Fleet struct {
	s        *Scenario
	opts     Options
	ids      []string
	selected [][]bool // per event, per device
	series   *replay.Series
	sched    []time.Duration
	span     time.Duration
}

// NewFleet binds a validated scenario to opts.Devices devices. It loads the replay series when
// the scenario has one and opts.Series is nil.
func NewFleet(s *Scenario, opts Options) (*Fleet, error) {
	if opts.Devices < 1 {
		return nil, fmt.Errorf("%w: devices %d must be ≥ 1", ErrInvalid, opts.Devices)
	}
	if opts.IDs != nil && len(opts.IDs) < opts.Devices {
		return nil, fmt.Errorf("%w: %d devices but %d ids", ErrInvalid, opts.Devices, len(opts.IDs))
	}
	f := &Fleet{s: s, opts: opts, ids: make([]string, opts.Devices)}
	for i := range f.ids {
		if opts.IDs != nil {
			f.ids[i] = opts.IDs[i]
		} else {
			f.ids[i] = DeviceID(s.DeviceID, i+1)
		}
		if err := wire.ValidateName("device id", f.ids[i]); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	for ei, e := range s.Events {
		sel := make([]bool, opts.Devices)
		switch {
		case len(e.Devices) > 0:
			want := map[string]bool{}
			for _, d := range e.Devices {
				want[d] = true
			}
			for i, id := range f.ids {
				sel[i] = want[id]
			}
		case e.Share != nil:
			r := rand.New(rand.NewPCG(opts.Seed, 0x5e1ec7+uint64(ei)))
			k := int(math.Ceil(*e.Share * float64(opts.Devices)))
			for _, i := range r.Perm(opts.Devices)[:k] {
				sel[i] = true
			}
		default:
			for i := range sel {
				sel[i] = true
			}
		}
		f.selected = append(f.selected, sel)
	}
	if s.Replay != nil {
		f.series = opts.Series
		if f.series == nil {
			var err error
			if f.series, err = LoadSeries(s); err != nil {
				return nil, err
			}
		}
		f.sched = f.series.Schedule(s.Replay.Speed, s.Replay.MaxGap.D())
		f.span = f.series.Span(f.sched)
	}
	return f, nil
}

// LoadSeries reads the scenario's replay file (relative to the scenario's directory).
func LoadSeries(s *Scenario) (*replay.Series, error) {
	p := s.Replay.File
	if !filepath.IsAbs(p) {
		p = filepath.Join(s.Dir, p)
	}
	fh, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	defer fh.Close()
	ser, err := replay.ReadCSV(fh, s.Replay.TimeColumn, s.Replay.Fields)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return ser, nil
}

// IDs returns the device ids, in device order.
func (f *Fleet) IDs() []string { return append([]string(nil), f.ids...) }

// Scenario returns the fleet's scenario.
func (f *Fleet) Scenario() *Scenario { return f.s }

// Window is a span of scenario time [From, To).
type Window struct{ From, To time.Duration }

// Disconnects returns device i's disconnect windows, in scenario order.
func (f *Fleet) Disconnects(i int) []Window {
	var out []Window
	for ei, e := range f.s.Events {
		if e.Kind == EventDisconnect && f.selected[ei][i] {
			out = append(out, Window{From: e.At.D(), To: e.At.D() + e.Duration.D()})
		}
	}
	return out
}
