package outputs

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/shared/contract"
)

func testNamespace(t testing.TB) devicedb.Namespace {
	db, err := devicedb.OpenInMemory()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db.Namespace("outputs")
}

func str(s string) contract.Value { return contract.Value{Kind: contract.KindString, Str: s} }

// event is one prediction or label as the application sends it.
type event struct {
	label bool
	id    string
	value string
}

// A shuffled stream with late labels, labels before their prediction, labels that never come
// and duplicates of both kinds: the join pairs exactly what a plain recomputation pairs (first
// prediction and first label of each id, by arrival), and the rest waits.
func TestJoinAgainstRecomputation(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	classes := []string{"a", "b", "c"}
	const n = 3000
	var evs []event
	for i := range n {
		id := fmt.Sprintf("p%d", i)
		evs = append(evs, event{id: id, value: classes[rng.IntN(3)]})
		if rng.Float64() < 0.03 {
			evs = append(evs, event{id: id, value: classes[rng.IntN(3)]}) // duplicate prediction
		}
		if rng.Float64() < 0.7 { // 30% never get a label
			evs = append(evs, event{label: true, id: id, value: classes[rng.IntN(3)]})
			if rng.Float64() < 0.05 {
				evs = append(evs, event{label: true, id: id, value: classes[rng.IntN(3)]}) // duplicate label
			}
		}
	}
	// Labels arrive late and out of order: move each label a random distance later (some
	// before their prediction, since the prediction may move less... shuffle a window).
	rng.Shuffle(len(evs), func(i, j int) {
		if abs(i-j) < 400 {
			evs[i], evs[j] = evs[j], evs[i]
		}
	})

	// Plain recomputation: first of each kind per id, by arrival.
	firstPred, firstLabel := map[string]string{}, map[string]string{}
	dups := 0
	for _, e := range evs {
		m := firstPred
		if e.label {
			m = firstLabel
		}
		if _, ok := m[e.id]; ok {
			dups++
			continue
		}
		m[e.id] = e.value
	}
	wantPairs, wantCorrect := 0, 0
	for id, p := range firstPred {
		if l, ok := firstLabel[id]; ok {
			wantPairs++
			if p == l {
				wantCorrect++
			}
		}
	}
	labelsOnly := 0
	for id := range firstLabel {
		if _, ok := firstPred[id]; !ok {
			labelsOnly++
		}
	}

	j, err := OpenJoin(testNamespace(t), JoinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_700_000_000, 0)
	got := map[string]Pair{}
	correct := 0
	for i, e := range evs {
		at := t0.Add(time.Duration(i) * time.Second)
		var p Pair
		var ok bool
		if e.label {
			p, ok, err = j.AddLabel(e.id, str(e.value), at)
		} else {
			p, ok, err = j.AddPrediction(e.id, str(e.value), at)
		}
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if _, again := got[p.ID]; again {
				t.Fatalf("id %s joined twice", p.ID)
			}
			got[p.ID] = p
			if p.Prediction.Str != firstPred[p.ID] || p.Label.Str != firstLabel[p.ID] {
				t.Fatalf("id %s joined %q with %q, want the first ones %q and %q", p.ID, p.Prediction.Str, p.Label.Str, firstPred[p.ID], firstLabel[p.ID])
			}
			if p.Prediction.Str == p.Label.Str {
				correct++
			}
		}
	}
	if len(got) != wantPairs || correct != wantCorrect {
		t.Fatalf("joined %d pairs (%d correct), recomputation %d (%d correct)", len(got), correct, wantPairs, wantCorrect)
	}
	st := j.Stats()
	if st.Joined != int64(wantPairs) || st.Duplicates != int64(dups) ||
		st.PendingPredictions != int64(len(firstPred)-wantPairs) || st.PendingLabels != int64(labelsOnly) {
		t.Fatalf("stats %+v; want joined %d, duplicates %d, pending predictions %d, labels %d",
			st, wantPairs, dups, len(firstPred)-wantPairs, labelsOnly)
	}
	// A restart keeps what waits: reopened, the counts are the same and a late label joins.
	j2, err := OpenJoin(j.ns, JoinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s2 := j2.Stats(); s2.PendingPredictions != st.PendingPredictions || s2.PendingLabels != st.PendingLabels {
		t.Fatalf("reopened %+v, was %+v", s2, st)
	}
	var waiting string
	for id := range firstPred {
		if _, ok := firstLabel[id]; !ok {
			waiting = id
			break
		}
	}
	if _, ok, _ := j2.AddLabel(waiting, str("a"), t0.Add(time.Hour*24)); !ok {
		t.Fatalf("a late label for %s did not join after reopening", waiting)
	}
	// Never arriving: past MaxAge every waiting entry expires, counted.
	if err := j2.Expire(t0.Add(DefaultMaxAge + 48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	s3 := j2.Stats()
	if s3.PendingPredictions != 0 || s3.PendingLabels != 0 || s3.ExpiredPredictions != st.PendingPredictions-1 || s3.ExpiredLabels != st.PendingLabels {
		t.Fatalf("after expiry %+v (before %+v)", s3, st)
	}
	// After expiry the id is unknown: its label waits again instead of joining.
	if _, ok, _ := j2.AddLabel("p0", str("a"), t0.Add(DefaultMaxAge+49*time.Hour)); ok {
		t.Fatal("a label joined an expired prediction")
	}
}

func TestJoinBoundEvictsOldest(t *testing.T) {
	j, err := OpenJoin(testNamespace(t), JoinOptions{MaxEntries: 100})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_700_000_000, 0)
	for i := range 150 {
		if _, _, err := j.AddPrediction(fmt.Sprintf("p%d", i), str("a"), t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	st := j.Stats()
	if st.PendingPredictions != 100 || st.ExpiredPredictions != 50 {
		t.Fatalf("%+v", st)
	}
	if _, ok, _ := j.AddLabel("p10", str("a"), t0.Add(time.Hour)); ok {
		t.Fatal("an evicted prediction joined")
	}
	if _, ok, _ := j.AddLabel("p149", str("a"), t0.Add(time.Hour)); !ok {
		t.Fatal("a kept prediction did not join")
	}
	n := 0
	_ = j.ns.IterateKeys(false, func([]byte, int64) error { n++; return nil })
	if n > 2*100 {
		t.Fatalf("%d keys on disk for a bound of 100 entries", n)
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
