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
