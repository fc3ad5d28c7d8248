package agent_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/agenttest"
	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/wire"
)

// TestModelLifecycle drives one agent through what a hub asks over a device's life: a version
// with its contract and reference profile, a version that fails its health check (switched
// back, reported failed), a second model, and the removal of a model from the desired state.
func TestModelLifecycle(t *testing.T) {
	b := startBroker(t, 0)
	h := newFakeHub(t, b, "dev-life")
	latest := h.watchReported()
	states, bytesTotal := h.watchStates()
	cfg := agenttest.Config(t, "dev-life", "any", []string{b.url()}, []string{h.publicKey()})
	// Version 2 of any model is unhealthy.
	cfg.HealthCheck.Command = []string{"sh", "-c", `test "$DRIFTLINE_MODEL_VERSION" != 2 || { echo "v2 is broken" >&2; exit 3; }`}
	cfg.Fetch.Retry = config.Duration(100 * time.Millisecond) // a failed health check must not be retried
	a := agenttest.Start(t, cfg, agent.Options{})
	testhelp.WaitFor(t, 10*time.Second, "connected", a.Connected)

	v1, v2, other := h.addModel(agenttest.RandomBytes(8, 300<<10)), h.addModel(agenttest.RandomBytes(9, 300<<10)), h.addModel(agenttest.RandomBytes(10, 50<<10))
	contract := []byte(`{"fields":[{"name":"temp","type":"number"}]}`)
	profile := bytes.Repeat([]byte("profile bytes "), 30000) // > one frame part: fetched as a multi-part object
	e1 := h.entry("clf", 1, v1)
	e1.ContractDigest, e1.ProfileDigest = h.addObject(contract), h.addObject(profile)
	e1.Dataset, e1.DatasetVersion = "sensors", 3
	e1 = h.approve(e1) // the approval binds the contract, profile and dataset version

	waitState := func(name string, st wire.State, active int) wire.ReportedModel {
		t.Helper()
		var m wire.ReportedModel
		testhelp.WaitFor(t, 15*time.Second, name+" "+string(st), func() bool {
			var ok bool
			m, ok = latest().Models[name]
			return ok && m.State == st && m.Active != nil && *m.Active == active
		})
		return m
	}

	h.desire(e1)
	waitState("clf", wire.StateActive, 1)
	if got := fmt.Sprint(states("clf")); got != "[notified downloading activating active]" {
		t.Fatalf("reported states %s", got)
	}
	if bytesTotal("clf") != int64(len(v1.data)) {
		t.Fatalf("bytes_total %d, want %d", bytesTotal("clf"), len(v1.data))
	}
	var am agent.ActiveModel
	for i := 0; i < 2; i++ { // the second call is served from the cache
		ms, err := a.ActiveModels()
		if err != nil || len(ms) != 1 {
			t.Fatalf("ActiveModels = %+v %v", ms, err)
		}
		am = ms[0]
		if am.Name != "clf" || am.Version != 1 || am.Dataset != "sensors" || am.DatasetVersion != 3 ||
			!bytes.Equal(am.Contract, contract) || !bytes.Equal(am.Profile, profile) {
			t.Fatalf("ActiveModels = %+v (contract %d bytes, profile %d bytes)", am.Name, len(am.Contract), len(am.Profile))
		}
	}
	if got := agenttest.FileDigest(t, am.Path); got != v1.manifest.Digest {
		t.Fatalf("ActiveModels path holds %s", got)
	}
	noPartials(t, filepath.Join(cfg.ModelDir, "clf"))

	// v2 fails its health check: current goes back to v1, the state says failed and why.
	e2 := h.entry("clf", 2, v2)
	h.desire(e2)
	m := waitState("clf", wire.StateFailed, 1)
	if !strings.Contains(m.LastError, "health check") || !strings.Contains(m.LastError, "v2 is broken") {
		t.Fatalf("last_error %q", m.LastError)
	}
	if got := agenttest.FileDigest(t, agenttest.ModelFile(cfg.ModelDir, "clf")); got != v1.manifest.Digest {
		t.Fatalf("current %s after a failed health check, want v1", got)
	}
	if _, err := os.Stat(filepath.Join(cfg.ModelDir, "clf", "2")); !os.IsNotExist(err) {
		t.Fatalf("failed version left on disk: %v", err)
	}
	time.Sleep(time.Second) // ten retry periods
	if n := agenttest.Metric(t, a.Reg, agent.MetricActivations, "result", agent.ResultFailed); n != 1 {
		t.Fatalf("%v failed activations: an unhealthy version was tried again", n)
	}

	// A second model beside the first, then the first is removed from the desired state.
	h.desire(e1, h.entry("aux", 1, other))
	waitState("aux", wire.StateActive, 1)
	waitState("clf", wire.StateActive, 1)
	h.desire(h.entry("aux", 1, other))
	testhelp.WaitFor(t, 10*time.Second, "clf dropped from the report", func() bool {
		_, ok := latest().Models["clf"]
		return !ok && len(latest().Models) == 1
	})
	if _, err := os.Stat(filepath.Join(cfg.ModelDir, "clf")); !os.IsNotExist(err) {
		t.Fatalf("deactivated model still on disk: %v", err)
	}
	ms, err := a.ActiveModels()
	if err != nil || len(ms) != 1 || ms[0].Name != "aux" || ms[0].Contract != nil {
		t.Fatalf("ActiveModels after removal = %+v %v", ms, err)
	}

	// The removed model's chunks went into the chunk cache: assigning it again fetches none.
	fetched, reused := agenttest.Metric(t, a.Reg, agent.MetricFetchedChunks), agenttest.Metric(t, a.Reg, agent.MetricChunksReused)
	h.desire(e1, h.entry("aux", 1, other))
	waitState("clf", wire.StateActive, 1)
	if got := agenttest.FileDigest(t, agenttest.ModelFile(cfg.ModelDir, "clf")); got != v1.manifest.Digest {
		t.Fatalf("current %s after assigning clf again, want v1", got)
	}
	if n := agenttest.Metric(t, a.Reg, agent.MetricFetchedChunks) - fetched; n != 0 {
		t.Fatalf("assigning a removed model again fetched %v chunks, want 0 (from the cache)", n)
	}
	if n := agenttest.Metric(t, a.Reg, agent.MetricChunksReused) - reused; n != float64(len(uniqueDigests(v1.manifest))) {
		t.Fatalf("assigning a removed model again reused %v chunks, want %d", n, len(uniqueDigests(v1.manifest)))
	}
}

// noPartials fails if modelDir holds a partial download: none may stay once the model runs
// what is desired.
func noPartials(t *testing.T, modelDir string) {
	t.Helper()
	entries, err := os.ReadDir(modelDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".partial-") {
			t.Fatalf("%s still holds the partial download %s", modelDir, e.Name())
		}
	}
}

// uniqueDigests lists the distinct chunk digests of m.
func uniqueDigests(m artifact.Manifest) map[string]bool {
	out := map[string]bool{}
	for _, c := range m.Chunks {
		out[c.Digest] = true
	}
	return out
}

// TestPrunedVersionCached: a version pruned from disk (neither current nor previous any more)
// leaves its chunks in the chunk cache, so going back to it fetches nothing.
func TestPrunedVersionCached(t *testing.T) {
	b := startBroker(t, 0)
	h := newFakeHub(t, b, "dev-prune")
	latest := h.watchReported()
	cfg := agenttest.Config(t, "dev-prune", "any", []string{b.url()}, []string{h.publicKey()})
	a := agenttest.Start(t, cfg, agent.Options{})
	testhelp.WaitFor(t, 10*time.Second, "connected", a.Connected)
	v1data := agenttest.RandomBytes(31, 600<<10)
	versions := []model{h.addModel(v1data), h.addModel(agenttest.RandomBytes(32, 600<<10)), h.addModel(agenttest.Mutate(v1data, 0.3, 3))}
	run := func(v int) {
		t.Helper()
		h.desire(h.entry("m", v, versions[v-1]))
		testhelp.WaitFor(t, 15*time.Second, fmt.Sprint("v", v, " active"), func() bool {
			m, ok := latest().Models["m"]
			return ok && m.Active != nil && *m.Active == v && (m.State == wire.StateActive || m.State == wire.StateRolledBack)
		})
	}
	for v := 1; v <= 3; v++ {
		run(v)
	}
	if _, err := os.Stat(filepath.Join(cfg.ModelDir, "m", "1")); !os.IsNotExist(err) {
		t.Fatalf("v1 still on disk after v3 was activated: %v", err)
	}
	fetched := agenttest.Metric(t, a.Reg, agent.MetricFetchedChunks)
	run(1)
	if got := agenttest.FileDigest(t, agenttest.ModelFile(cfg.ModelDir, "m")); got != versions[0].manifest.Digest {
		t.Fatalf("current holds %s, want v1", got)
	}
	if n := agenttest.Metric(t, a.Reg, agent.MetricFetchedChunks) - fetched; n != 0 {
		t.Fatalf("going back to a pruned version fetched %v chunks, want 0 (from the cache and v3's file)", n)
	}
}
