package reconcile

import (
	"context"
	"runtime"
	"testing"

	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/shared/artifact"
)

// TestFirstPullReadsNothingLocally: a device's first pull of a model (no partial download to
// resume, no other version on disk, an empty chunk cache) allocates no read buffer in fillLocal.
// It allocated one of artifact.MaxChunkSize (256 KiB) per pull: 2.5 GB for a 10,000-agent
// fleet's rollout, all of it garbage at once.
func TestFirstPullReadsNothingLocally(t *testing.T) {
	r := newRig(t, config.Default().Fetch)
	e, man := r.conn.version(r.key, "m", 1, randomBytes(7, 512<<10))
	p, done, err := r.rc.store.OpenPartial(e.Name, e.Version, e.ManifestDigest, man.Digest, man.Size)
	if err != nil || done {
		t.Fatalf("open partial: done %v, %v", done, err)
	}
	defer p.Close()
	as := newAssembly(p, man)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	reused, err := r.rc.fillLocal(context.Background(), e.Name, e.Version, as)
	runtime.ReadMemStats(&after)
	if err != nil || reused != 0 {
		t.Fatalf("fillLocal: reused %d, %v", reused, err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n >= artifact.MaxChunkSize {
		t.Fatalf("fillLocal with nothing local allocated %d bytes; want less than a chunk buffer (%d)", n, artifact.MaxChunkSize)
	}
}

// TestActiveModelsUnchangedAllocatesNothing: while the running models' records are unchanged,
// ActiveModels answers without allocating (the pipeline asks for every stream and every
// second, the outputs tracker every second: 10,000 fleet agents asked ~30,000 times a second,
// each answer built anew); a new version activated is seen at once.
func TestActiveModelsUnchangedAllocatesNothing(t *testing.T) {
	r := newRig(t, config.Default().Fetch)
	ctx := context.Background()
	v1, _ := r.conn.version(r.key, "m", 1, randomBytes(1, 100<<10))
	if _, err := r.rc.handleDesired(ctx, desired(t, 1, v1)); err != nil {
		t.Fatal(err)
	}
	ms, err := r.rc.ActiveModels()
	if err != nil || len(ms) != 1 || ms[0].Version != 1 {
		t.Fatalf("ActiveModels = %+v, %v", ms, err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = r.rc.ActiveModels() }); n != 0 {
		t.Fatalf("ActiveModels with nothing changed: %.1f allocations a call, want 0", n)
	}
	v2, _ := r.conn.version(r.key, "m", 2, randomBytes(2, 100<<10))
	if _, err := r.rc.handleDesired(ctx, desired(t, 2, v2)); err != nil {
		t.Fatal(err)
	}
	ms, err = r.rc.ActiveModels()
	if err != nil || len(ms) != 1 || ms[0].Version != 2 || ms[0].Path != r.rc.store.CurrentPath("m") {
		t.Fatalf("after version 2: ActiveModels = %+v, %v", ms, err)
	}
	// A contract named by the record but not stored yet is not remembered as absent.
	contract := []byte(`{"fields":[]}`)
	d := artifact.DigestOf(contract)
	r.rc.mu.Lock()
	r.rc.models["m"].ContractDigest = d
	r.rc.mu.Unlock()
	if ms, _ = r.rc.ActiveModels(); ms[0].Contract != nil {
		t.Fatalf("contract %q before it is stored", ms[0].Contract)
	}
	if err := r.rc.assets.Set([]byte(d), contract); err != nil {
		t.Fatal(err)
	}
	if ms, _ = r.rc.ActiveModels(); string(ms[0].Contract) != string(contract) {
		t.Fatalf("contract %q once stored, want %q", ms[0].Contract, contract)
	}
}
