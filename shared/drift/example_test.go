package drift_test

import (
	"fmt"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/drift"
	"github.com/driftline/driftline/shared/profile"
)

// Example profiles a reference and a shifted window, then scores the window.
func Example() {
	cols := []profile.Column{{Name: "temp", Kind: profile.Numeric}, {Name: "mode", Kind: profile.Categorical}}
	build := func(n int, shift float64, mode string) *profile.Profile {
		p, _ := profile.New(cols)
		for i := range n {
			_ = p.Add([]contract.Value{
				{Kind: contract.KindNumber, Num: float64(i%50) + shift},
				{Kind: contract.KindString, Str: mode},
			})
		}
		return p
	}
	ref := build(500, 0, "auto")
	rep, err := drift.Compare(ref, build(100, 10, "auto"), drift.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	t := rep.Features["temp"]
	fmt.Printf("temp: %s p=%.2g drift=%v ks=%.2f\n", t.Method, t.Score, t.Drift, *t.KS)
	m := rep.Features["mode"]
	fmt.Printf("mode: %s p=%.2g drift=%v\n", m.Method, m.Score, m.Drift)
	fmt.Printf("dataset drift %v, share %.2f\n", rep.DatasetDrift, rep.DriftShare)
	// Output:
	// temp: ks p=0.0021 drift=true ks=0.20
	// mode: chisquare p=1 drift=false
	// dataset drift true, share 0.50
}
