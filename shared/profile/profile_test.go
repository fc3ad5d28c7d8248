package profile

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/zstdx"
)

var testCols = []Column{
	{Name: "temp", Kind: Numeric},
	{Name: "ts", Kind: Numeric},
	{Name: "site", Kind: Categorical},
	{Name: "ok", Kind: Categorical},
}

func num(x float64) contract.Value { return contract.Value{Kind: contract.KindNumber, Num: x} }
func str(s string) contract.Value  { return contract.Value{Kind: contract.KindString, Str: s} }

// testRows makes rows whose numbers are multiples of 1/1024 below 2^20, so every partial sum
// is exact in float64 and the merged mean must match to the bit.
func testRows(seed uint64, n int) [][]contract.Value {
	r := rand.New(rand.NewPCG(seed, 99))
	rows := make([][]contract.Value, n)
	for i := range rows {
		row := []contract.Value{
			num(float64(r.IntN(1<<20)) / 1024),
			{Kind: contract.KindTime, Num: float64(1_700_000_000_000 + r.IntN(1<<30))},
			str("site" + strconv.Itoa(r.IntN(20))),
			{Kind: contract.KindBool, Bool: r.IntN(3) == 0},
		}
		if r.IntN(10) == 0 {
			row[r.IntN(len(row))] = contract.Value{}
		}
		rows[i] = row
	}
	return rows
}

func mustProfile(t testing.TB, rows [][]contract.Value) *Profile {
	t.Helper()
	p, err := New(testCols)
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		if err := p.Add(row); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func TestNewRefusesBadColumns(t *testing.T) {
	cases := map[string][]Column{
		"empty name": {{Name: "", Kind: Numeric}},
		"duplicate":  {{Name: "a", Kind: Numeric}, {Name: "a", Kind: Categorical}},
		"bad kind":   {{Name: "a"}},
	}
	for name, cols := range cases {
		if _, err := New(cols); !errors.Is(err, ErrIncompatible) {
			t.Errorf("%s: err %v, want ErrIncompatible", name, err)
		}
	}
}

func TestAddRefusesBadRows(t *testing.T) {
	cases := []struct {
		name string
		row  []contract.Value
		want error
	}{
		{"short", []contract.Value{num(1)}, ErrRowShape},
		{"string in numeric", []contract.Value{str("x"), num(1), str("a"), {}}, ErrValueKind},
		{"number in categorical", []contract.Value{num(1), num(1), num(2), {}}, ErrValueKind},
		{"unknown kind", []contract.Value{num(1), num(1), str("a"), {Kind: 99}}, ErrValueKind},
	}
	for _, tc := range cases {
		p := mustProfile(t, nil)
		before := p.Encode()
		if err := p.Add(tc.row); !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
		if !bytes.Equal(before, p.Encode()) {
			t.Errorf("%s: refused row changed the profile", tc.name)
		}
	}
}

func TestStatistics(t *testing.T) {
	p := mustProfile(t, [][]contract.Value{
		{num(1), num(10), str("a"), {Kind: contract.KindBool, Bool: true}},
		{num(2), {}, str("b"), {Kind: contract.KindBool}},
		{num(6), num(math.NaN()), str("a"), {}},
		{{}, num(math.Inf(1)), {}, {Kind: contract.KindBool, Bool: true}},
	})
	temp, _ := p.Column("temp")
	if temp.Count() != 3 || temp.Nulls() != 1 || temp.Min() != 1 || temp.Max() != 6 || temp.Mean() != 3 {
		t.Fatalf("temp: count %d nulls %d min %v max %v mean %v", temp.Count(), temp.Nulls(), temp.Min(), temp.Max(), temp.Mean())
	}
	if v := temp.Variance(); math.Abs(v-14.0/3) > 1e-12 {
		t.Fatalf("variance %v, want 14/3", v)
	}
	ts, _ := p.Column("ts")
	if ts.Count() != 1 || ts.Nulls() != 3 {
		t.Fatalf("ts: non-finite numbers must count as nulls: count %d nulls %d", ts.Count(), ts.Nulls())
	}
	site, _ := p.Column("site")
	if site.Frequent().Count("a") != 2 || site.Distinct() != 2 {
		t.Fatalf("site: a=%d distinct=%d", site.Frequent().Count("a"), site.Distinct())
	}
	ok, _ := p.Column("ok")
	if ok.Frequent().Count("true") != 2 || ok.Frequent().Count("false") != 1 || ok.Nulls() != 1 {
		t.Fatalf("ok: items %+v nulls %d", ok.Frequent().Items(), ok.Nulls())
	}
	if p.Rows() != 4 {
		t.Fatalf("rows %d", p.Rows())
	}
}

// TestMergeOrderAndGrouping merges the same parts in shuffled orders and random groupings and
// requires exact counts, extremes and means, and sketches within their bounds.
func TestMergeOrderAndGrouping(t *testing.T) {
	const parts = 12
	var all [][]contract.Value
	profiles := make([]*Profile, parts)
	for i := range profiles {
		rows := testRows(uint64(i), 500+300*i)
		all = append(all, rows...)
		profiles[i] = mustProfile(t, rows)
	}
	whole := mustProfile(t, all)
	r := rand.New(rand.NewPCG(11, 12))
	for trial := range 8 {
		order := r.Perm(parts)
		// Random grouping: fold a random binary tree of the shuffled parts.
		work := make([]*Profile, parts)
		for i, j := range order {
			work[i] = profiles[j].Clone()
		}
		for len(work) > 1 {
			i := r.IntN(len(work) - 1)
			if err := work[i].Merge(work[i+1]); err != nil {
				t.Fatal(err)
			}
			work = slices.Delete(work, i+1, i+2)
		}
		got := work[0]
		if got.Rows() != whole.Rows() {
			t.Fatalf("trial %d: rows %d, want %d", trial, got.Rows(), whole.Rows())
		}
		for c := range got.Len() {
			g, w := got.At(c), whole.At(c)
			if g.Count() != w.Count() || g.Nulls() != w.Nulls() || g.Distinct() != w.Distinct() {
				t.Fatalf("trial %d %s: count/nulls/distinct %d/%d/%d, want %d/%d/%d", trial, g.Name(),
					g.Count(), g.Nulls(), g.Distinct(), w.Count(), w.Nulls(), w.Distinct())
			}
			if g.Kind() == Numeric {
				if g.Min() != w.Min() || g.Max() != w.Max() || g.Mean() != w.Mean() {
					t.Fatalf("trial %d %s: min/max/mean %v/%v/%v, want %v/%v/%v", trial, g.Name(),
						g.Min(), g.Max(), g.Mean(), w.Min(), w.Max(), w.Mean())
				}
				if rel := math.Abs(g.Variance()-w.Variance()) / w.Variance(); rel > 1e-9 {
					t.Fatalf("trial %d %s: variance off by %g", trial, g.Name(), rel)
				}
				vals := make([]float64, 0, len(all))
				for _, row := range all {
					if !row[c].IsNull() {
						vals = append(vals, row[c].Num)
					}
				}
				if e := maxRankError(t, g.Quantiles(), vals); e > 0.01 {
					t.Fatalf("trial %d %s: rank error %.4f", trial, g.Name(), e)
				}
			} else {
				if !slices.Equal(g.Frequent().Items(), w.Frequent().Items()) {
					t.Fatalf("trial %d %s: items differ", trial, g.Name())
				}
			}
		}
	}
}

func TestMergeIsDeterministic(t *testing.T) {
	build := func() []byte {
		p := mustProfile(t, testRows(1, 3000))
		for i := range 5 {
			if err := p.Merge(mustProfile(t, testRows(uint64(10+i), 2000))); err != nil {
				t.Fatal(err)
			}
		}
		return p.Encode()
	}
	a, b := build(), build()
	if !bytes.Equal(a, b) {
		t.Fatal("same inputs in the same order gave different bytes")
	}
}

func TestMergeRefusesOtherColumns(t *testing.T) {
	p := mustProfile(t, nil)
	cases := map[string][]Column{
		"fewer":      testCols[:3],
		"renamed":    {{Name: "x", Kind: Numeric}, testCols[1], testCols[2], testCols[3]},
		"other kind": {{Name: "temp", Kind: Categorical}, testCols[1], testCols[2], testCols[3]},
	}
	for name, cols := range cases {
		o, err := New(cols)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Merge(o); !errors.Is(err, ErrIncompatible) {
			t.Errorf("%s: err %v, want ErrIncompatible", name, err)
		}
	}
}

func TestThresholdsTravel(t *testing.T) {
	p := mustProfile(t, testRows(2, 100))
	if err := p.SetThreshold("temp", Threshold{Method: "wasserstein", Value: 0.31}); err != nil {
		t.Fatal(err)
	}
	if err := p.SetThreshold("nope", Threshold{Method: "psi", Value: 1}); !errors.Is(err, ErrUnknownColumn) {
		t.Fatalf("unknown column: %v", err)
	}
	if err := p.SetThreshold("temp", Threshold{Method: "psi", Value: math.NaN()}); err == nil {
		t.Fatal("NaN threshold accepted")
	}
	q, err := Decode(p.Encode())
	if err != nil {
		t.Fatal(err)
	}
	c, _ := q.Column("temp")
	if th, ok := c.Threshold(); !ok || th != (Threshold{Method: "wasserstein", Value: 0.31}) {
		t.Fatalf("threshold %+v %v", th, ok)
	}
	if _, ok := q.At(2).Threshold(); ok {
		t.Fatal("site has no threshold")
	}
	// A statistic threshold round-trips; a decoder that predates OnStatistic reads the method
	// "ks:statistic", which no drift method matches.
	if err := p.SetThreshold("temp", Threshold{Method: "ks", Value: 0.12, OnStatistic: true}); err != nil {
		t.Fatal(err)
	}
	if err := p.SetThreshold("temp", Threshold{Method: "ks" + statisticSuffix, Value: 0.12}); err == nil {
		t.Fatal("a method named with the statistic suffix is accepted")
	}
	b := p.Encode()
	if q, err = Decode(b); err != nil {
		t.Fatal(err)
	}
	c, _ = q.Column("temp")
	if th, _ := c.Threshold(); th != (Threshold{Method: "ks", Value: 0.12, OnStatistic: true}) {
		t.Fatalf("statistic threshold %+v", th)
	}
	plain, err := zstdx.Decode(nil, b[1:], MaxPlainBytes)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(plain, []byte("ks:statistic")) {
		t.Fatal("the encoding does not name the statistic threshold's method as ks:statistic")
	}
}

// Variance returns the population variance (divided by the count) of a numeric column, NaN
// when there are no values.
func (c *ColumnProfile) Variance() float64 { return c.mom.variance() }
