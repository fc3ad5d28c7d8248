package pipeline

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/agent/quarantine"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/drift"
	"github.com/driftline/driftline/shared/profile"
	"github.com/driftline/driftline/shared/wire"
)

// testContract: a numeric feature with bounds, a categorical feature with an enum, a unique id.
const testContract = `{
  "fields": [
    {"name": "id", "type": "integer", "constraints": {"unique": true}},
    {"name": "temp", "type": "number", "constraints": {"required": true, "minimum": -50, "maximum": 150}},
    {"name": "mode", "type": "string", "constraints": {"enum": ["auto", "manual"]}}
  ]
}`

func mustSchema(t testing.TB, doc string) *contract.Schema {
	t.Helper()
	s, err := contract.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sent is one report the pipeline handed to its Reporter.
type sent struct {
	kind    wire.Kind
	topic   string
	payload []byte
}

// recorder is a Reporter that keeps what it is given, in order.
type recorder struct {
	mu  sync.Mutex
	out []sent
	// onReport, when set, is called after each report is kept.
	onReport func(wire.Kind)
}

func (r *recorder) Report(kind wire.Kind, topic string, payload []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.out = append(r.out, sent{kind, topic, append([]byte(nil), payload...)})
	if r.onReport != nil {
		r.onReport(kind)
	}
	return nil
}

func (r *recorder) of(kind wire.Kind) []sent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []sent
	for _, s := range r.out {
		if s.kind == kind {
			out = append(out, s)
		}
	}
	return out
}

func (r *recorder) validations(t testing.TB) []wire.Validation {
	t.Helper()
	var out []wire.Validation
	for _, s := range r.of(wire.KindValidation) {
		v, err := wire.DecodeValidation(s.payload)
		if err != nil {
			t.Fatalf("validation report: %v", err)
		}
		out = append(out, v)
	}
	return out
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// model is an ActiveModel holding one model version (or none).
type model struct {
	mu       sync.Mutex
	name     string
	version  int
	contract []byte
	profile  []byte
}

func (m *model) Active() (string, int, []byte, []byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.name, m.version, m.contract, m.profile, m.name != ""
}

func (m *model) set(name string, version int, contract, profile []byte) {
	m.mu.Lock()
	m.name, m.version, m.contract, m.profile = name, version, contract, profile
	m.mu.Unlock()
}

// harness is a pipeline on an in-memory agent state with a recorder and a clock.
type harness struct {
	p     *Pipeline
	rec   *recorder
	clock *clock
	q     *quarantine.Store
}

func newHarness(t testing.TB, opts Options) *harness {
	t.Helper()
	return newHarnessQ(t, opts, quarantine.Options{})
}

// newHarnessQ is newHarness with quarantine bounds.
func newHarnessQ(t testing.TB, opts Options, qopts quarantine.Options) *harness {
	t.Helper()
	db, err := devicedb.OpenInMemory()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	q, err := quarantine.Open(db.Root().Sub(quarantine.Namespace), qopts)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{rec: &recorder{}, clock: newClock(), q: q}
	opts.DeviceID = "dev-1"
	opts.Reporter = h.rec
	opts.Quarantine = q
	opts.Now = h.clock.Now
	opts.Logger = testhelp.Logger(t)
	if _, fuzz := t.(*testing.F); fuzz {
		opts.Logger = slog.New(slog.DiscardHandler) // f.Log may not be called inside a fuzz target
	}
	if h.p, err = New(opts); err != nil {
		t.Fatal(err)
	}
	return h
}

// jsonRows renders n rows {"id": start+i, "temp": f(i), "mode": "auto"} as JSONL.
func jsonRows(start, n int, temp func(i int) float64) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"id":%d,"temp":%g,"mode":"auto"}`+"\n", start+i, temp(i))
	}
	return b.String()
}

// refProfile profiles temps as the testContract's columns.
func refProfile(t testing.TB, s *contract.Schema, temps []float64) []byte {
	t.Helper()
	p, err := profile.New(drift.Columns(s))
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range temps {
		row := []contract.Value{{Kind: contract.KindNumber, Num: float64(i)}, {Kind: contract.KindNumber, Num: v}, {Kind: contract.KindString, Str: "auto"}}
		if err := p.Add(row); err != nil {
			t.Fatal(err)
		}
	}
	return p.Encode()
}
