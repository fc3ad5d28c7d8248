package rollout

import (
	"errors"
	"reflect"
	"testing"
)

func TestWaveSizes(t *testing.T) {
	cases := []struct {
		waves  []float64
		counts bool
		n      int
		want   []int
		err    error
	}{
		{[]float64{10, 50, 100}, false, 20, []int{2, 10, 20}, nil},
		{[]float64{1, 10, 50, 100}, false, 20, []int{1, 2, 10, 20}, nil},
		{[]float64{1, 10, 100}, false, 3, []int{1, 2, 3}, nil},
		{[]float64{1, 2, 100}, false, 1, []int{1}, nil},
		{[]float64{50}, false, 10, []int{5}, nil},
		{[]float64{1, 5, 20}, true, 10, []int{1, 5, 10}, nil},
		{[]float64{10, 5}, false, 10, nil, ErrBadWaves},
		{[]float64{150}, false, 10, nil, ErrBadWaves},
		{[]float64{1.5}, true, 10, nil, ErrBadWaves},
		{nil, false, 10, nil, ErrBadWaves},
		{[]float64{100}, false, 0, nil, ErrNoDevices},
	}
	for _, c := range cases {
		got, err := WaveSizes(c.waves, c.counts, c.n)
		if !errors.Is(err, c.err) || !reflect.DeepEqual(got, c.want) {
			t.Errorf("WaveSizes(%v, %v, %d) = %v, %v; want %v, %v", c.waves, c.counts, c.n, got, err, c.want, c.err)
		}
	}
}

func TestOrderIsStableAndCanaryFirst(t *testing.T) {
	devs := []Candidate{{ID: "a"}, {ID: "b"}, {ID: "c", Canary: true}, {ID: "d"}, {ID: "e"}}
	one := Order("r1", devs)
	rev := make([]Candidate, len(devs))
	for i := range devs {
		rev[i] = devs[len(devs)-1-i]
	}
	if two := Order("r1", rev); !reflect.DeepEqual(one, two) {
		t.Fatalf("order depends on input order: %v vs %v", one, two)
	}
	if one[0] != "c" {
		t.Fatalf("canary not first: %v", one)
	}
	if other := Order("r2", devs); reflect.DeepEqual(one, other) && len(devs) > 3 {
		t.Logf("r1 and r2 happen to order alike: %v", one)
	}
}
