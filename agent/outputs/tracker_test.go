package outputs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftline/driftline/shared/contract/rows"
	"github.com/driftline/driftline/shared/outputs"
	"github.com/driftline/driftline/shared/profile"
	"github.com/driftline/driftline/shared/wire"
)

// reporter records reports.
type reporter struct {
	mu   sync.Mutex
	msgs []report
}

type report struct {
	kind    wire.Kind
	topic   string
	payload []byte
}

func (r *reporter) Report(k wire.Kind, topic string, b []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, report{k, topic, append([]byte(nil), b...)})
	return nil
}

func (r *reporter) of(k wire.Kind) []report {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []report
	for _, m := range r.msgs {
		if m.kind == k {
			out = append(out, m)
		}
	}
	return out
}

type model struct{ ref []byte }

func (m model) Output() (string, int, []byte, bool) { return "m", 3, m.ref, m.ref != nil }

// clock is a test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// The output contract scores the prediction with Jensen-Shannon at 0.1, so the test can compute
// the drift score itself.
const jsContract = `{"primaryKey":["id"],"x-driftline":{"window":{"rows":1000}},"fields":[
 {"name":"id","type":"string"},
 {"name":"pred","type":"string","x-driftline":{"role":"prediction","drift":{"method":"jensenshannon","threshold":0.1}}},
 {"name":"label","type":"string","x-driftline":{"role":"label"}}]}`

// jsDistance is scipy's jensenshannon distance (natural log) of two count vectors.
func jsDistance(p, q []float64) float64 {
	var sp, sq float64
	for i := range p {
		sp += p[i]
		sq += q[i]
	}
	var d float64
	for i := range p {
		a, b := p[i]/sp, q[i]/sq
		m := (a + b) / 2
		if a > 0 {
			d += a * math.Log(a/m)
		}
		if b > 0 {
			d += b * math.Log(b/m)
		}
	}
	return math.Sqrt(d / 2)
}

func TestPredictionDriftAndPerformance(t *testing.T) {
	c, err := outputs.ParseContract([]byte(jsContract))
	if err != nil {
		t.Fatal(err)
	}
	classes := []string{"a", "b", "c"}
	// Validation set: 600 a, 300 b, 100 c; correct except every 10th row (label a when wrong).
	var val bytes.Buffer
	val.WriteString("id,pred,label\n")
	refCounts := []float64{600, 300, 100}
	refCorrect := 0
	k := 0
	for ci, n := range refCounts {
		for range int(n) {
			label := classes[ci]
			if k%10 == 0 {
				label = "a"
			}
			if label == classes[ci] {
				refCorrect++
			}
			fmt.Fprintf(&val, "v%d,%s,%s\n", k, classes[ci], label)
			k++
		}
	}
	ref, err := outputs.Build(c, val.Bytes(), rows.FormatCSV)
	if err != nil {
		t.Fatal(err)
	}
	refAcc := float64(refCorrect) / 1000
	enc, _ := ref.Encode()
	rep := &reporter{}
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	tr, err := New(Options{DeviceID: "d1", Reporter: rep, Model: model{enc}, State: testNamespace(t), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	// Window 1: the reference's shares. Window 2: shifted to 200/300/500.
	send := func(prefix string, counts []int) {
		var b strings.Builder
		i := 0
		for ci, n := range counts {
			for range n {
				fmt.Fprintf(&b, "{\"id\":\"%s%d\",\"pred\":\"%s\"}\n", prefix, i, classes[ci])
				i++
			}
		}
		if _, err := tr.Ingest(KindPredictions, "test", rows.FormatJSONL, strings.NewReader(b.String())); err != nil {
			t.Fatal(err)
		}
	}
	send("w1-", []int{600, 300, 100})
	// Labels for window 1's predictions arrive during window 2, out of order, some missing,
	// one duplicated; correct for a, wrong (c) for half of b.
	rng := rand.New(rand.NewPCG(3, 4))
	type lab struct{ id, v string }
	var labels []lab
	wantPairs, wantCorrect := 0, 0
	for i := range 1000 {
		if i%5 == 4 {
			continue // never labelled
		}
		pred := "a"
		switch {
		case i >= 900:
			pred = "c"
		case i >= 600:
			pred = "b"
		}
		v := pred
		if pred == "b" && i%2 == 0 {
			v = "c"
		}
		labels = append(labels, lab{fmt.Sprintf("w1-%d", i), v})
		wantPairs++
		if v == pred {
			wantCorrect++
		}
	}
	rng.Shuffle(len(labels), func(i, j int) { labels[i], labels[j] = labels[j], labels[i] })
	labels = append(labels, lab{labels[0].id, "b"}) // a duplicate, ignored
	clk.Add(time.Second)
	var lb strings.Builder
	for _, l := range labels {
		fmt.Fprintf(&lb, "{\"id\":%q,\"label\":%q}\n", l.id, l.v)
	}
	if _, err := tr.Ingest(KindLabels, "test", rows.FormatJSONL, strings.NewReader(lb.String())); err != nil {
		t.Fatal(err)
	}
	send("w2-", []int{200, 300, 500})

	drifts := rep.of(wire.KindPredictionDrift)
	if len(drifts) != 2 {
		t.Fatalf("%d prediction drift reports, want 2", len(drifts))
	}
	for i, cur := range [][]float64{{600, 300, 100}, {200, 300, 500}} {
		d, err := wire.DecodePredictionDrift(drifts[i].payload)
		if err != nil {
			t.Fatal(err)
		}
		want := jsDistance(refCounts, cur)
		if math.Abs(d.Score-want) > 1e-9 || d.Method != "jensenshannon" || (d.Drift == 1) != (want > 0.1) || d.Rows != 1000 {
			t.Fatalf("window %d: %+v; want score %v, drift %v", i+1, d, want, want > 0.1)
		}
		if drifts[i].topic != "dl/v1/dev/d1/prediction_drift" {
			t.Fatalf("topic %s", drifts[i].topic)
		}
	}
	// Each window's prediction profile goes to the hub for the fleet view (hub/drift merges
	// them): it holds the window's predictions, class by class.
	profs := rep.of(wire.KindPredictionProfile)
	if len(profs) != 2 {
		t.Fatalf("%d prediction profiles, want 2", len(profs))
	}
	for i, cur := range [][]int{{600, 300, 100}, {200, 300, 500}} {
		p, err := profile.Decode(profs[i].payload)
		if err != nil {
			t.Fatal(err)
		}
		col, ok := p.Column("pred")
		if !ok || p.Rows() != 1000 || profs[i].topic != "dl/v1/dev/d1/prediction_profile" {
			t.Fatalf("window %d: profile of %d rows (pred column %v) on %s", i+1, p.Rows(), ok, profs[i].topic)
		}
		for ci, n := range cur {
			if got := col.Frequent().Count(classes[ci]); got != uint64(n) {
				t.Fatalf("window %d: %d predictions of %s in the profile, want %d", i+1, got, classes[ci], n)
			}
		}
	}
	perfs := rep.of(wire.KindPerformance)
	if len(perfs) != 1 {
		t.Fatalf("%d performance reports, want 1 (labels joined in window 2 only)", len(perfs))
	}
	p, err := wire.DecodePerformance(perfs[0].payload)
	if err != nil {
		t.Fatal(err)
	}
	acc := float64(wantCorrect) / float64(wantPairs)
	if p.Labels != int64(wantPairs) || math.Abs(p.Value-acc) > 1e-12 || math.Abs(p.Reference-refAcc) > 1e-12 ||
		math.Abs(p.Relative-acc/refAcc) > 1e-12 || p.Metric != "accuracy" || p.Duplicates != 1 || p.PendingPredictions != 200+1000 {
		b, _ := json.Marshal(p)
		t.Fatalf("performance %s; want %d labels, accuracy %v, reference %v", b, wantPairs, acc, refAcc)
	}
}

func TestNoReferenceRefuses(t *testing.T) {
	tr, err := New(Options{DeviceID: "d1", Reporter: &reporter{}, Model: model{}, State: testNamespace(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Ingest(KindPredictions, "t", rows.FormatJSONL, strings.NewReader(`{"id":"x","pred":"a"}`)); err != ErrNoReference {
		t.Fatalf("err %v", err)
	}
}
