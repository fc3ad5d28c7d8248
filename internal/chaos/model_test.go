package chaos

import (
	"math"
	"testing"

	"github.com/anishathalye/porcupine"
)

// TestModelCatchesAnomalies: the checker the harness relies on refuses a stale strong read and
// a lost acknowledged write, and accepts a write of unknown outcome taking effect late.
func TestModelCatchesAnomalies(t *testing.T) {
	w := func(c int, v string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: Input{Write: true, Key: "tag/t0", Value: v}, Output: Output{}, Call: call, Return: ret}
	}
	r := func(c int, v string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: Input{Key: "tag/t0"}, Output: Output{Value: v}, Call: call, Return: ret}
	}
	for _, tc := range []struct {
		name string
		ops  []porcupine.Operation
		want bool
	}{
		{"sequential", []porcupine.Operation{w(1, "a", 0, 1), r(2, "a", 2, 3)}, true},
		{"stale read after an acknowledged write", []porcupine.Operation{w(1, "a", 0, 1), w(1, "b", 2, 3), r(2, "a", 4, 5)}, false},
		{"acknowledged write lost", []porcupine.Operation{w(1, "a", 0, 1), r(2, "", 2, 3)}, false},
		{"unknown outcome applied late", []porcupine.Operation{w(1, "a", 0, math.MaxInt64), r(2, "", 1, 2), r(2, "a", 3, 4)}, true},
	} {
		if got := porcupine.CheckOperations(Model, tc.ops); got != tc.want {
			t.Errorf("%s: linearizable %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestBackInTime(t *testing.T) {
	if i := backInTime([]int{1, 2, 2, 5}); i != -1 {
		t.Errorf("monotonic reads flagged at %d", i)
	}
	if i := backInTime([]int{1, 3, 2}); i != 2 {
		t.Errorf("a read going back: %d, want 2", i)
	}
}

func TestPruneUnobserved(t *testing.T) {
	ops := []porcupine.Operation{
		{Input: Input{Write: true, Key: "tag/t0", Value: "a"}, Output: Output{}, Call: 0, Return: math.MaxInt64},
		{Input: Input{Write: true, Key: "tag/t0", Value: "b"}, Output: Output{}, Call: 0, Return: math.MaxInt64},
		{Input: Input{Write: true, Key: "alias/a0", Value: "1"}, Output: Output{}, Call: 0, Return: math.MaxInt64},
		{Input: Input{Key: "tag/t0"}, Output: Output{Value: "b"}, Call: 1, Return: 2},
	}
	out, n := pruneUnobserved(ops)
	if n != 1 || len(out) != 3 || out[0].Input.(Input).Value != "b" {
		t.Fatalf("pruned %d, kept %+v", n, out)
	}
}
