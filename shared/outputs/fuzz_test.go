package outputs_test

import (
	"errors"
	"testing"

	"github.com/driftline/driftline/shared/contract/rows"
	"github.com/driftline/driftline/shared/outputs"
)

// FuzzParseContract: any bytes give a contract or an error wrapping ErrContract, never a panic;
// an accepted contract has its three fields and derived contracts.
func FuzzParseContract(f *testing.F) {
	f.Add([]byte(classContract))
	f.Add([]byte(regContract))
	f.Add([]byte(`{"primaryKey":["id"],"fields":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := outputs.ParseContract(b)
		if err != nil {
			if !errors.Is(err, outputs.ErrContract) {
				t.Fatalf("error %v does not wrap ErrContract", err)
			}
			return
		}
		if c.ID == "" || c.Prediction == "" || c.Label == "" || c.PredictionSchema() == nil || c.LabelSchema() == nil || c.ReferenceSchema() == nil {
			t.Fatalf("accepted contract is incomplete: %+v", c)
		}
	})
}

// FuzzBuildAndDecode: any validation sample gives a reference or an error, and a reference
// decodes back (what agents do with the bytes the hub ships).
func FuzzBuildAndDecode(f *testing.F) {
	f.Add([]byte("id,pred,label\nr1,a,a\nr2,b,a\n"))
	f.Add([]byte("id,pred\n"))
	f.Add([]byte("\"\n"))
	c, err := outputs.ParseContract([]byte(classContract))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sample []byte) {
		ref, err := outputs.Build(c, sample, rows.FormatCSV)
		if err != nil {
			return
		}
		b, err := ref.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := outputs.Decode(b); err != nil {
			t.Fatalf("a built reference does not decode: %v", err)
		}
	})
}

// FuzzDecode: arbitrary bytes shipped as an output reference never panic the agent.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"contract":{},"profile":"","performance":{"task":"classification","labels":1},"metric":"accuracy"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = outputs.Decode(b) })
}
