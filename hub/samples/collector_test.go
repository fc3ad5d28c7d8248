package samples

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/state/statetest"
	"github.com/driftline/driftline/shared/wire"
)

type fixture struct {
	st  *statetest.Store
	c   *Collector
	now time.Time
}

func newFixture(t *testing.T, collect bool) *fixture {
	f := &fixture{st: statetest.New(t), now: time.UnixMilli(1_700_000_000_000)}
	f.st.Now = func() time.Time { return f.now }
	ext := ""
	if collect {
		ext = `,"x-driftline":{"collect":true}`
	}
	f.st.Must(t, command.TypeDatasetCreate, state.DatasetCreate{Name: "temps"})
	f.st.Must(t, command.TypeDatasetVersionCreate, state.DatasetVersionCreate{Dataset: "temps", SampleSHA256: "x",
		Contract: json.RawMessage(`{"fields":[{"name":"temp","type":"number"}]` + ext + `}`)})
	f.st.ApprovedModel(t, "m", 1)
	// ApprovedModel registers no training data: point the version at temps@1.
	f.c = New(Config{Store: f.st, Reader: f.st.Reader(), Settle: 10 * time.Second, Every: time.Minute, MaxRows: 50,
		Now: func() time.Time { return f.now }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return f
}

// trainedModel registers m2@1, trained on temps@1, by hand with m@1's chunk (ApprovedModel
// registers no training data).
func (f *fixture) trainedModel(t *testing.T) {
	f.st.Must(t, command.TypeModelCreate, state.ModelCreate{Name: "m2"})
	mvs, _ := f.st.Reader().ModelVersions("m", "", 10)
	mv := mvs.Items[0]
	man, _ := f.st.Reader().Manifest("m", 1)
	f.st.Must(t, command.TypeModelVersionCreate, state.ModelVersionCreate{Model: "m2", Digest: mv.Digest, Size: mv.Size,
		Chunks: []state.ChunkRef{{Digest: mv.Digest, Size: mv.Size}}, Manifest: man, ManifestDigest: mv.ManifestDigest,
		TrainedOn: []state.VersionRef{{Dataset: "temps", Version: 1}}})
}

func sample(dev string, idx int64, rows int) []byte {
	s := wire.Sample{Header: wire.Header{DeviceID: dev, TS: 1}, Window: wire.Window{Index: idx, WindowStart: 1, WindowEnd: 1000 * idx},
		ModelRef: wire.ModelRef{Model: "m2", Version: 1}, Reason: "input_drift", WindowRows: 100}
	for i := range rows {
		s.Rows = append(s.Rows, json.RawMessage(fmt.Sprintf(`{"temp":%d}`, 40+i)))
	}
	b, _ := wire.Encode(s)
	return b
}

func TestCollectorMakesOneCandidatePerPeriod(t *testing.T) {
	f := newFixture(t, true)
	f.trainedModel(t)
	for _, dev := range []string{"d1", "d2"} {
		f.st.Must(t, command.TypeDeviceCreate, state.DeviceCreate{ID: dev, TokenHash: "h" + dev})
	}
	ctx := context.Background()
	f.c.stage(ctx, staged{device: "d1", payload: sample("d1", 1, 10)})
	f.c.stage(ctx, staged{device: "d2", payload: sample("d2", 1, 10)})
	f.c.stage(ctx, staged{device: "d2", payload: sample("d2", 1, 10)}) // a repeat: staged once
	f.c.stage(ctx, staged{device: "d1", payload: sample("d2", 2, 10)}) // another device's sample: refused
	if err := f.c.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	if vs, _ := f.st.Reader().DatasetVersions("temps", "", 10); len(vs.Items) != 1 {
		t.Fatalf("a candidate before the samples settled: %d versions", len(vs.Items))
	}
	f.now = f.now.Add(11 * time.Second)
	if err := f.c.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	vs, _ := f.st.Reader().DatasetVersions("temps", "", 10)
	if len(vs.Items) != 2 || vs.Items[1].SampleRows != 20 || !state.IsCandidate(vs.Items[1]) {
		t.Fatalf("versions %+v", vs.Items)
	}
	g, err := f.st.Reader().Lineage("dataset:temps@2", "both", 1)
	if err != nil {
		t.Fatal(err)
	}
	edges := map[string]bool{}
	for _, e := range g.Edges {
		edges[e.Kind+" "+e.To] = true
	}
	if !edges["collected_on device:d1"] || !edges["collected_on device:d2"] || !edges["derived_from dataset:temps@1"] {
		t.Fatalf("edges %v", edges)
	}
	// One drifted window per staged sample (the repeat is one), between its device and the candidate.
	if !edges["sampled_from window:d1/m2@1/1"] || !edges["sampled_from window:d2/m2@1/1"] || len(g.Edges) != 5 {
		t.Fatalf("edges %v", edges)
	}
	if w, err := f.st.Reader().Lineage("window:d2/m2@1/1", "up", 1); err != nil || len(w.Edges) != 1 || w.Edges[0].Kind != state.EdgeObservedOn || w.Edges[0].To != "device:d2" {
		t.Fatalf("window lineage %+v %v", w, err)
	}
	// More drift within Every waits; MaxRows rows make a candidate at once.
	f.c.stage(ctx, staged{device: "d1", payload: sample("d1", 3, 10)})
	f.now = f.now.Add(11 * time.Second)
	_ = f.c.Collect(ctx)
	if vs, _ := f.st.Reader().DatasetVersions("temps", "", 10); len(vs.Items) != 2 {
		t.Fatalf("a second candidate within Every: %d versions", len(vs.Items))
	}
	f.c.stage(ctx, staged{device: "d2", payload: sample("d2", 4, 45)})
	_ = f.c.Collect(ctx)
	if vs, _ := f.st.Reader().DatasetVersions("temps", "", 10); len(vs.Items) != 3 || vs.Items[2].SampleRows != 55 {
		t.Fatalf("MaxRows did not make a candidate: %+v", vs.Items)
	}
}

func TestCollectorRefusesWithoutOptIn(t *testing.T) {
	f := newFixture(t, false)
	f.trainedModel(t)
	f.c.stage(context.Background(), staged{device: "d1", payload: sample("d1", 1, 10)})
	if s, _ := f.st.Reader().StagedSamples(); len(s) != 0 {
		t.Fatalf("staged %d samples of a dataset that does not allow collection", len(s))
	}
}
