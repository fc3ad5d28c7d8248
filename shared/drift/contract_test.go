package drift

import (
	"reflect"
	"testing"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/profile"
)

func TestContractRules(t *testing.T) {
	s, err := contract.Parse([]byte(`{"fields":[{"name":"ts","type":"datetime"},
	  {"name":"day","type":"date","x-driftline":{"drift":{"method":"psi"}}},
	  {"name":"n","type":"integer","x-driftline":{"drift":{"threshold":0.3,"calibrate":50}}},{"name":"b","type":"boolean"},
	  {"name":"p","type":"number","x-driftline":{"role":"prediction"}},{"name":"s","x-driftline":{"drift":{"method":"chisquare","threshold":0.01}}}],
	  "x-driftline":{"drift":{"calibrate":100}}}`))
	if err != nil {
		t.Fatal(err)
	}
	wantCols := []profile.Column{{Name: "ts", Kind: profile.Numeric}, {Name: "day", Kind: profile.Numeric},
		{Name: "n", Kind: profile.Numeric}, {Name: "b", Kind: profile.Categorical},
		{Name: "p", Kind: profile.Numeric}, {Name: "s", Kind: profile.Categorical}}
	if got := Columns(s); !reflect.DeepEqual(got, wantCols) {
		t.Fatalf("columns %v, want %v", got, wantCols)
	}
	opts, err := ContractOptions(s)
	if err != nil {
		t.Fatal(err)
	}
	th03, th001 := 0.3, 0.01
	want := Options{Only: []string{"day", "n", "b", "s"}, Features: map[string]FeatureOptions{
		"day": {Method: PSI, Always: true}, "n": {Threshold: &th03, Always: true}, "s": {Method: ChiSquare, Threshold: &th001, Always: true}}}
	if !reflect.DeepEqual(opts, want) {
		t.Fatalf("options %+v, want %+v", opts, want)
	}
	if got, want := CalibrationWindows(s, 0), map[int][]string{100: {"day", "b", "s"}, 50: {"n"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("calibration windows %v, want %v", got, want)
	}
	if got, want := CalibrationWindows(s, 10), map[int][]string{10: {"day", "n", "b", "s"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("calibration windows with override %v, want %v", got, want)
	}
}
