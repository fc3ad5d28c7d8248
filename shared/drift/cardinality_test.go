package drift

import (
	"fmt"
	"testing"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/profile"
)

// TestIdentifiersAreNotScored: a string field with one value per row (an id, a timestamp kept
// as a string) is not a category; Jensen-Shannon over thousands of unique values says every
// window drifts. It is skipped as high_cardinality unless the contract asks for its drift.
func TestIdentifiersAreNotScored(t *testing.T) {
	s, err := contract.Parse([]byte(`{"fields":[{"name":"id","type":"string"},{"name":"mode","type":"string"},
	  {"name":"ts","type":"string"}, {"name":"tag","type":"string","x-driftline":{"drift":{"method":"jensenshannon"}}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	build := func(from, n int) *profile.Profile {
		p, err := profile.New(Columns(s))
		if err != nil {
			t.Fatal(err)
		}
		for i := from; i < from+n; i++ {
			str := func(v string) contract.Value { return contract.Value{Kind: contract.KindString, Str: v} }
			row := []contract.Value{str(fmt.Sprintf("dev-%06d", i)), str([]string{"a", "b", "c"}[i%3]),
				str(fmt.Sprintf("2026-01-01T00:%02d:%02d", i/60%60, i%60)), str(fmt.Sprintf("t%d", i))}
			if err := p.Add(row); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	ref, cur := build(0, 2000), build(5000, 500)
	opts, err := ContractOptions(s)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Compare(ref, cur, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"id", "ts"} {
		if fr := rep.Features[name]; fr.Skipped != SkipHighCardinality || fr.Drift {
			t.Errorf("%s: %+v, want skipped %q", name, fr, SkipHighCardinality)
		}
	}
	if fr := rep.Features["mode"]; fr.Skipped != "" || fr.Drift {
		t.Errorf("mode (3 values) must be scored and not drift: %+v", fr)
	}
	if fr := rep.Features["tag"]; fr.Skipped != "" || !fr.Drift {
		t.Errorf("tag asks for drift in the contract: scored (and drifting, no value in common): %+v", fr)
	}
	if rep.Scored != 2 || rep.DatasetDrift != true {
		t.Errorf("scored %d, dataset drift %v: skipped features must not count", rep.Scored, rep.DatasetDrift)
	}
	// The share is an option; a share of 1 scores everything.
	opts.MaxDistinctShare = 1
	if rep, err = Compare(ref, cur, opts); err != nil {
		t.Fatal(err)
	}
	if fr := rep.Features["id"]; fr.Skipped != "" {
		t.Errorf("share 1: id skipped %+v", fr)
	}
}
