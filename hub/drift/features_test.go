package drift_test

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/driftline/driftline/agent/pipeline"
	"github.com/driftline/driftline/hub/drift"
	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/profile"
)

// TestRulesMatchAgent checks that the hub profiles and scores a contract exactly as the agent
// does: the same columns (so references and agent windows line up) and the same options.
func TestRulesMatchAgent(t *testing.T) {
	docs := []string{
		testContract,
		`{"fields":[{"name":"ts","type":"datetime"},{"name":"day","type":"date","x-driftline":{"drift":{"method":"psi"}}},
		  {"name":"n","type":"integer","x-driftline":{"drift":{"threshold":0.3,"calibrate":50}}},{"name":"b","type":"boolean"},
		  {"name":"p","type":"number","x-driftline":{"role":"prediction"}},{"name":"s","x-driftline":{"drift":{"method":"chisquare","threshold":0.01}}}],
		  "x-driftline":{"drift":{"calibrate":100}}}`,
	}
	for i, doc := range docs {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			s, err := contract.Parse([]byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			cols := drift.Columns(s)
			if !reflect.DeepEqual(cols, pipeline.Columns(s)) {
				t.Fatalf("columns %v, agent %v", cols, pipeline.Columns(s))
			}
			ref, err := profile.New(cols)
			if err != nil {
				t.Fatal(err)
			}
			want, _, err := pipeline.DriftOptions(s, ref)
			if err != nil {
				t.Fatal(err)
			}
			if got := drift.CompareOptions(s); !reflect.DeepEqual(got, want) {
				t.Fatalf("options %+v, agent %+v", got, want)
			}
		})
	}
}
