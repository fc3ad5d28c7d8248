package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/driftline/driftline/hub/state"
)

const testContract = `{"fields":[{"name":"temp","type":"number"},{"name":"site","type":"string"}]}`

func TestDatasetCommands(t *testing.T) {
	h := startHub(t)
	dir := t.TempDir()
	contract := writeFile(t, dir, "c.json", []byte(testContract))
	sample := writeFile(t, dir, "s.csv", []byte("temp,site\n20.5,a\n21.0,b\n"))
	jsonl := writeFile(t, dir, "s.jsonl", []byte(`{"temp":1,"site":"a"}`+"\n"))

	if out := h.ok(t, "dataset", "create", "temps", "--description", "room temperatures"); !strings.Contains(out, "created dataset temps") {
		t.Errorf("create output %q", out)
	}
	var dv state.DatasetVersion
	h.okJSON(t, &dv, "dataset", "push", "temps", "--contract", contract, "--sample", sample, "--source-uri", "s3://b/s.csv")
	if dv.Version != 1 || dv.SourceURI != "s3://b/s.csv" {
		t.Fatalf("push 1: %+v", dv)
	}
	sum := sha256.Sum256([]byte("temp,site\n20.5,a\n21.0,b\n"))
	if want := "sha256:" + hex.EncodeToString(sum[:]); dv.SampleSHA256 != want {
		t.Errorf("sample digest %s, want %s", dv.SampleSHA256, want)
	}
	out := h.ok(t, "dataset", "push", "temps", "--contract", contract, "--sample", jsonl, "--parent", "1")
	if !strings.Contains(out, "pushed dataset:temps@2") {
		t.Errorf("push 2 output %q", out)
	}
	h.okJSON(t, &dv, "dataset", "show", "temps", "2")
	if len(dv.Parents) != 1 || dv.Parents[0] != (state.VersionRef{Dataset: "temps", Version: 1}) {
		t.Errorf("parents of temps@2: %+v", dv.Parents)
	}
	table := h.ok(t, "dataset", "show", "temps")
	for _, want := range []string{"room temperatures", "VERSION", "temps@1"} {
		if !strings.Contains(table, want) {
			t.Errorf("dataset show lacks %q:\n%s", want, table)
		}
	}
	var list state.Page[state.Dataset]
	h.okJSON(t, &list, "dataset", "list")
	if len(list.Items) != 1 || list.Items[0].LatestVersion != 2 || list.NextCursor != nil {
		t.Errorf("dataset list: %+v", list)
	}

	usage := []struct {
		name string
		args []string
	}{
		{"no sample", []string{"dataset", "push", "temps", "--contract", contract}},
		{"missing contract file", []string{"dataset", "push", "temps", "--contract", filepath.Join(dir, "nope.json"), "--sample", sample}},
		{"contract not JSON", []string{"dataset", "push", "temps", "--contract", sample, "--sample", sample}},
		{"unknown sample type", []string{"dataset", "push", "temps", "--contract", contract, "--sample", contract + ".txt"}},
		{"bad parent", []string{"dataset", "push", "temps", "--contract", contract, "--sample", sample, "--parent", "x@y"}},
		{"bad version", []string{"dataset", "show", "temps", "zero"}},
		{"too many args", []string{"dataset", "show", "a", "1", "2"}},
	}
	for _, tc := range usage {
		t.Run(tc.name, func(t *testing.T) {
			if r := h.run(t, tc.args...); r.code != ExitUsage {
				t.Errorf("exit %d, want %d", r.code, ExitUsage)
			}
		})
	}
}

func TestModelLifecycle(t *testing.T) {
	h := startHub(t)
	dir := t.TempDir()
	h.ok(t, "dataset", "create", "temps")
	h.ok(t, "dataset", "push", "temps", "--contract", writeFile(t, dir, "c.json", []byte(testContract)),
		"--sample", writeFile(t, dir, "s.csv", []byte("temp,site\n1,a\n")))

	art := make([]byte, 700<<10) // several chunks
	r := rand.New(rand.NewPCG(1, 2))
	for i := range art {
		art[i] = byte(r.Uint32())
	}
	artPath := writeFile(t, dir, "model.onnx", art)
	sum := sha256.Sum256(art)

	h.ok(t, "model", "create", "fraud", "--description", "fraud detector")
	var mv modelVersion
	h.okJSON(t, &mv, "model", "push", "fraud", "--artifact", artPath, "--trained-on", "temps@1",
		"--metric", "auc=0.91", "--param", "epochs=10", "--param", "opt=adam", "--code-ref", "git:abc", "--format", "onnx")
	if mv.Version != 1 || mv.Digest != "sha256:"+hex.EncodeToString(sum[:]) || mv.Size != int64(len(art)) {
		t.Fatalf("push: %+v", mv)
	}
	if mv.Metrics["auc"] != 0.91 || mv.Params["epochs"] != 10.0 || mv.Params["opt"] != "adam" || mv.Format != "onnx" || mv.CodeRef != "git:abc" {
		t.Errorf("metadata: metrics %v params %v format %q code %q", mv.Metrics, mv.Params, mv.Format, mv.CodeRef)
	}
	if len(mv.TrainedOn) != 1 || mv.TrainedOn[0].Dataset != "temps" || mv.TrainedOn[0].Version != 1 {
		t.Errorf("trained_on %+v", mv.TrainedOn)
	}
	if out := h.ok(t, "model", "approve", "fraud", "1", "--comment", "looks good"); !strings.Contains(out, "approved") {
		t.Errorf("approve output %q", out)
	}
	h.ok(t, "model", "alias", "fraud", "production", "1")
	if out := h.ok(t, "model", "tag", "fraud", "1", "team=risk", "stage=eval"); !strings.Contains(out, "stage=eval") || !strings.Contains(out, "team=risk") {
		t.Errorf("tag output %q", out)
	}
	var tagged modelVersion
	h.okJSON(t, &tagged, "model", "tag", "fraud", "1", "stage-")
	if len(tagged.Tags) != 1 || tagged.Tags["team"] != "risk" {
		t.Errorf("tags after removing stage: %v", tagged.Tags)
	}
	for _, bad := range [][]string{{"fraud", "1"}, {"fraud", "1", "team="}, {"fraud", "1", "-"}, {"fraud", "x", "a=b"}} {
		if r := h.run(t, append([]string{"model", "tag"}, bad...)...); r.code != ExitUsage {
			t.Errorf("model tag %v: exit %d, want %d (usage)", bad, r.code, ExitUsage)
		}
	}
	table := h.ok(t, "model", "show", "fraud")
	for _, want := range []string{"production=1", "approved", "temps@1"} {
		if !strings.Contains(table, want) {
			t.Errorf("model show lacks %q:\n%s", want, table)
		}
	}
	h.okJSON(t, &mv, "model", "show", "fraud", "1")
	if mv.Status != state.StatusApproved || len(mv.Approvals) != 1 || mv.Approvals[0].Comment != "looks good" || len(mv.Signatures) != 2 {
		t.Errorf("approved version: %+v", mv)
	}
	if out := h.ok(t, "model", "show", "fraud", "1"); !strings.Contains(out, mv.Signatures[0].KeyID) {
		t.Errorf("model show VERSION lacks the signing key id:\n%s", out)
	}

	dl := filepath.Join(dir, "out", "m.bin")
	if err := os.Mkdir(filepath.Dir(dl), 0o700); err != nil {
		t.Fatal(err)
	}
	h.ok(t, "model", "download", "fraud", "1", "-o", dl)
	got, err := os.ReadFile(dl)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, art) {
		t.Fatalf("downloaded %d bytes differ from the %d pushed", len(got), len(art))
	}
	if ents, _ := os.ReadDir(filepath.Dir(dl)); len(ents) != 1 {
		t.Errorf("download left temporary files: %v", ents)
	}
	if r := h.run(t, "model", "download", "fraud", "9", "-o", filepath.Join(dir, "none")); r.code != ExitRefused {
		t.Errorf("download of a missing version: exit %d", r.code)
	} else if _, err := os.Stat(filepath.Join(dir, "none")); !os.IsNotExist(err) {
		t.Errorf("a failed download created its output file")
	}
	if r := h.run(t, "model", "download", "fraud", "1"); r.code != ExitUsage {
		t.Errorf("download without -o: exit %d", r.code)
	}

	h.ok(t, "model", "deprecate", "fraud", "1")
	var list state.Page[state.Model]
	h.okJSON(t, &list, "model", "list")
	if len(list.Items) != 1 || list.Items[0].Aliases["production"] != 1 {
		t.Errorf("model list: %+v", list)
	}
	if r := h.run(t, "model", "push", "fraud", "--artifact", artPath, "--metric", "auc=high"); r.code != ExitUsage {
		t.Errorf("bad metric: exit %d", r.code)
	}
	if r := h.run(t, "model", "push", "fraud", "--artifact", filepath.Join(dir, "missing")); r.code != ExitUsage {
		t.Errorf("missing artifact: exit %d", r.code)
	}
	if r := h.run(t, "model", "push", "nosuch", "--artifact", artPath); r.code != ExitRefused || !strings.Contains(r.stderr, "404") {
		t.Errorf("push to a missing model: exit %d, stderr %q", r.code, r.stderr)
	}
}
