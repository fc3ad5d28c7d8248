package outputs_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/contract/rows"
	"github.com/driftline/driftline/shared/outputs"
)

const classContract = `{"primaryKey":["id"],"fields":[
 {"name":"id","type":"string"},
 {"name":"pred","type":"string","x-driftline":{"role":"prediction"}},
 {"name":"label","type":"string","x-driftline":{"role":"label"}}]}`

const regContract = `{"primaryKey":["id"],"x-driftline":{"metric":"mae"},"fields":[
 {"name":"id","type":"integer"},
 {"name":"yhat","type":"number","x-driftline":{"role":"prediction"}},
 {"name":"y","type":"number","x-driftline":{"role":"label"}}]}`

func TestParseContract(t *testing.T) {
	c, err := outputs.ParseContract([]byte(classContract))
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != "id" || c.Prediction != "pred" || c.Label != "label" || c.Task != contract.TaskClassification || c.Metric != contract.MetricAccuracy {
		t.Fatalf("%+v", c)
	}
	if n := len(c.PredictionSchema().Fields); n != 2 || c.PredictionSchema().Fields[1].Role != contract.RoleFeature {
		t.Fatalf("prediction schema %+v", c.PredictionSchema().Fields)
	}
	if c.LabelSchema().Index("pred") >= 0 || c.LabelSchema().Index("label") < 0 {
		t.Fatal("label schema holds the prediction")
	}
	r, err := outputs.ParseContract([]byte(regContract))
	if err != nil || r.Task != contract.TaskRegression || r.Metric != contract.MetricMAE {
		t.Fatalf("%+v %v", r, err)
	}
	bad := map[string]string{
		"no primary key": strings.Replace(classContract, `"primaryKey":["id"],`, "", 1),
		"no label":       strings.Replace(classContract, `"role":"label"`, `"role":"prediction"`, 1),
		"extra feature":  strings.Replace(classContract, `{"name":"id","type":"string"},`, `{"name":"id","type":"string"},{"name":"x","type":"number"},`, 1),
		"types differ":   strings.Replace(classContract, `"name":"label","type":"string"`, `"name":"label","type":"integer"`, 1),
		"metric vs task": strings.Replace(regContract, `"mae"`, `"f1"`, 1),
		"unknown task":   strings.Replace(regContract, `"metric":"mae"`, `"task":"ranking"`, 1),
		"number classes": strings.Replace(regContract, `"metric":"mae"`, `"task":"classification"`, 1),
		"not json":       `{`,
	}
	for name, doc := range bad {
		if _, err := outputs.ParseContract([]byte(doc)); err == nil || !errors.Is(err, outputs.ErrContract) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestMetricsByHand(t *testing.T) {
	a := outputs.NewAccumulator(contract.TaskClassification)
	for i, p := range []string{"a", "a", "b", "b", "c", "a"} {
		a.AddClass(p, []string{"a", "b", "b", "c", "c", "a"}[i])
	}
	p := a.Result()
	// Accuracy 4/6; F1 per class a 0.8, b 0.5, c 2/3 (as sklearn's f1_score(average="macro")).
	if !near(*p.Accuracy, 4.0/6) || !near(*p.F1, (0.8+0.5+2.0/3)/3) || p.Labels != 6 {
		t.Fatalf("%+v acc %v f1 %v", p, *p.Accuracy, *p.F1)
	}
	r := outputs.NewAccumulator(contract.TaskRegression)
	for i, y := range []float64{1.5, 2, 5} {
		r.AddNumber([]float64{1, 2, 3}[i], y)
	}
	q := r.Result()
	if !near(*q.MAE, 2.5/3) || !near(*q.RMSE, math.Sqrt(4.25/3)) || q.Accuracy != nil {
		t.Fatalf("%+v", q)
	}
	if v, ok := q.Value(contract.MetricRMSE); !ok || !near(v, math.Sqrt(4.25/3)) {
		t.Fatal("Value(rmse)")
	}
	if got := outputs.Relative(contract.MetricRMSE, 2, 1); got != 0.5 {
		t.Fatalf("relative rmse %v", got)
	}
	if got := outputs.Relative(contract.MetricAccuracy, 0.45, 0.9); got != 0.5 {
		t.Fatalf("relative accuracy %v", got)
	}
}

// The validation sample's reference performance is the plain recomputation over its valid rows.
func TestBuildReference(t *testing.T) {
	c, err := outputs.ParseContract([]byte(classContract))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	b.WriteString("id,pred,label\n")
	correct, n := 0, 0
	classes := []string{"cat", "dog", "fox"}
	for i := range 3000 {
		label := classes[rng.IntN(3)]
		pred := label
		if rng.Float64() < 0.2 {
			pred = classes[rng.IntN(3)]
		}
		if i%500 == 7 { // no label: profiled, not scored
			fmt.Fprintf(&b, "r%d,%s,\n", i, pred)
			continue
		}
		fmt.Fprintf(&b, "r%d,%s,%s\n", i, pred, label)
		n++
		if pred == label {
			correct++
		}
	}
	ref, err := outputs.Build(c, b.Bytes(), rows.FormatCSV)
	if err != nil {
		t.Fatal(err)
	}
	if ref.Performance.Labels != int64(n) || !near(*ref.Performance.Accuracy, float64(correct)/float64(n)) {
		t.Fatalf("reference %+v, want %d labels, accuracy %v", ref.Performance, n, float64(correct)/float64(n))
	}
	enc, err := ref.Encode()
	if err != nil {
		t.Fatal(err)
	}
	d, err := outputs.Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	if col, ok := d.Profile.Column("pred"); !ok || col.Count() != 3000 {
		t.Fatalf("profile pred column: %v %v", ok, col)
	}
	if _, err := outputs.Build(c, []byte("id,pred,label\nr1,cat,\n"), rows.FormatCSV); err == nil {
		t.Fatal("a sample without labels gave a reference")
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-12 }
