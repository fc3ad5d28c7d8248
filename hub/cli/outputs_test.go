package cli

import (
	"fmt"
	"strings"
	"testing"
)

func TestModelOutputsCommand(t *testing.T) {
	h := startHub(t)
	dir := t.TempDir()
	h.ok(t, "model", "create", "reg")
	h.ok(t, "model", "push", "reg", "--artifact", writeFile(t, dir, "m.bin", []byte("weights")))
	contract := writeFile(t, dir, "out.json", []byte(`{"primaryKey":["id"],"x-driftline":{"metric":"mae"},"fields":[
	 {"name":"id","type":"integer"},{"name":"yhat","type":"number","x-driftline":{"role":"prediction"}},
	 {"name":"y","type":"number","x-driftline":{"role":"label"}}]}`))
	var b strings.Builder
	b.WriteString("id,yhat,y\n")
	for i := range 100 {
		fmt.Fprintf(&b, "%d,%d,%d\n", i, i, i+2) // every error is 2
	}
	sample := writeFile(t, dir, "val.csv", []byte(b.String()))
	out := h.ok(t, "model", "outputs", "reg", "1", "--contract", contract, "--sample", sample)
	if !strings.Contains(out, "regression mae=2 on 100 labelled predictions") {
		t.Fatalf("output %q", out)
	}
	if r := h.run(t, "model", "outputs", "reg", "1", "--contract", contract); r.code == 0 {
		t.Fatal("outputs without --sample exited 0")
	}
	h.ok(t, "model", "approve", "reg", "1")
	h.ok(t, "device", "add", "e1")
	out = h.ok(t, "rollout", "create", "--model", "reg", "--version", "1", "--max-prediction-drift-share", "0.2",
		"--min-performance", "0.9", "--min-performance-labels", "50", "-o", "json")
	if !strings.Contains(out, `"max_prediction_drift_share":0.2`) || !strings.Contains(out, `"min_performance":0.9`) || !strings.Contains(out, `"min_performance_labels":50`) {
		t.Fatalf("rollout %s", out)
	}
}
