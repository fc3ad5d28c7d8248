package fleetdrift_test

import (
	"math"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/fleetdrift"
)

// median returns the value at p = 0.5 of a side's quantiles.
func median(t *testing.T, qs []fleetdrift.QuantilePoint) float64 {
	t.Helper()
	if len(qs) != fleetdrift.DistributionQuantiles {
		t.Fatalf("%d quantile points, want %d", len(qs), fleetdrift.DistributionQuantiles)
	}
	if !sort.SliceIsSorted(qs, func(i, j int) bool { return qs[i].Value < qs[j].Value }) || qs[0].P != 0 || qs[len(qs)-1].P != 1 {
		t.Fatalf("quantiles not ascending from p=0 to p=1: %+v", qs)
	}
	return qs[fleetdrift.DistributionQuantiles/2].Value
}

func share(items []fleetdrift.ItemShare, v string) float64 {
	for _, it := range items {
		if it.Value == v {
			return it.Share
		}
	}
	return -1
}

func TestDistribution(t *testing.T) {
	s := newFleetSetup(t, fleetdrift.Config{})
	get := apiServer(t, s)

	var v fleetdrift.DistributionView
	get("/api/v1/drift/distribution?model=m&version=1&feature=temp", http.StatusOK, &v)
	if v.Kind != "numeric" || v.Current != nil || v.Dataset == nil || v.Dataset.Dataset != "sensors" || strings.Join(v.Features, ",") != "site,temp" {
		t.Fatalf("before any profile: %+v", v)
	}
	if m := median(t, v.Reference.Quantiles); math.Abs(m-20) > 0.5 || v.Reference.Rows != 2000 {
		t.Errorf("reference median %v rows %d, want about 20 and 2000", m, v.Reference.Rows)
	}

	// d1 as the reference, d2 shifted by 4 sd with category d instead of c: the merged window's
	// median sits between 20 and 28, and d takes about a sixth.
	s.clk.Add(10 * time.Second)
	if err := s.svc.Observe("d1", windowProfile(t, 500, 20, "abc", 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.svc.Observe("d2", windowProfile(t, 500, 28, "abd", 2)); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		advance time.Duration
		partial bool
	}{
		{"open window", 0, true},
		{"last closed window", time.Minute, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s.clk.Add(c.advance)
			s.svc.Flush()
			var num, cat fleetdrift.DistributionView
			get("/api/v1/drift/distribution?model=m&version=1&feature=temp", http.StatusOK, &num)
			cur := num.Current
			if cur == nil || cur.Partial != c.partial || cur.Devices != 2 || cur.Profiles != 2 || cur.Rows != 1000 || cur.End-cur.Start != 60_000 {
				t.Fatalf("current %+v", cur)
			}
			if m := median(t, cur.Quantiles); m < 21 || m > 27 {
				t.Errorf("current median %v, want between the two devices' means", m)
			}
			if cur.Verdict == nil || !cur.Verdict.Drift || cur.Verdict.Method == "" {
				t.Errorf("current verdict %+v, want drift", cur.Verdict)
			}
			get("/api/v1/drift/distribution?model=m&version=1&feature=site", http.StatusOK, &cat)
			if cat.Kind != "categorical" || cat.Current == nil || len(cat.Reference.Quantiles) != 0 {
				t.Fatalf("categorical view %+v", cat)
			}
			if len(cat.Reference.Items) != len(cat.Current.Items) || len(cat.Reference.Items) != 4 {
				t.Fatalf("items differ: reference %+v current %+v", cat.Reference.Items, cat.Current.Items)
			}
			for i := range cat.Reference.Items {
				if cat.Reference.Items[i].Value != cat.Current.Items[i].Value {
					t.Fatalf("item %d: %q vs %q", i, cat.Reference.Items[i].Value, cat.Current.Items[i].Value)
				}
			}
			if r, c := share(cat.Reference.Items, "d"), share(cat.Current.Items, "d"); r != 0 || math.Abs(c-1.0/6) > 0.05 {
				t.Errorf("share of d: reference %v current %v, want 0 and about 1/6", r, c)
			}
			if r := share(cat.Reference.Items, "a"); math.Abs(r-1.0/3) > 0.05 {
				t.Errorf("reference share of a %v, want about 1/3", r)
			}
		})
	}
	for _, c := range []struct {
		path string
		want int
	}{
		{"/api/v1/drift/distribution?model=m&version=1", http.StatusBadRequest},
		{"/api/v1/drift/distribution?feature=temp", http.StatusBadRequest},
		{"/api/v1/drift/distribution?model=m&version=1&feature=nope", http.StatusNotFound},
		{"/api/v1/drift/distribution?model=m&version=1&feature=y", http.StatusNotFound}, // a label is not scored
		{"/api/v1/drift/distribution?model=m&version=9&feature=temp", http.StatusNotFound},
		{"/api/v1/drift/distribution?model=nope&feature=temp", http.StatusNotFound},
	} {
		get(c.path, c.want, nil)
	}
}
