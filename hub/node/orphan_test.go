package node

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/store"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/zstdx"
)

func hasKey(t *testing.T, n *Node, key string) bool {
	t.Helper()
	err := n.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get([]byte(key))
		return err
	})
	if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// TestOrphanChunksOfOlderBuildsSwept: a chunk an aborted upload left before uploads marked their
// chunks (stored, listed by no version, no pending mark) survived every sweep for ever. The
// leader now marks such chunks and the sweep deletes them a grace period later, counting their
// bytes; the chunks of a registered version and those of an upload in progress survive.
func TestOrphanChunksOfOlderBuildsSwept(t *testing.T) {
	n, tok := testNode(t)
	ctx := context.Background()
	call(t, n, tok, http.MethodPost, "/api/v1/models", map[string]string{"name": "m"}, http.StatusCreated, nil)
	kept := make([]byte, 256<<10)
	rand.Read(kept)
	pushModel(t, n, tok, "m", kept)
	base := chunkCount(t, n)

	// The orphan as an older build left it: the chunk alone, no pending mark.
	plain := make([]byte, 64<<10)
	rand.Read(plain)
	orphan := artifact.DigestOf(plain)
	z := zstdx.Encode(nil, plain)
	if err := n.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("fsm/chunk/"+orphan), z) }); err != nil {
		t.Fatal(err)
	}
	// The sweep as it was does not see it, however old.
	if _, err := n.sweepChunksBefore(ctx, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if !hasKey(t, n, "fsm/chunk/"+orphan) {
		t.Fatal("the pending-mark sweep deleted an unmarked chunk: the planted orphan is not what an old build left")
	}

	if _, err := n.markOrphanChunks(ctx); err != nil {
		t.Fatal(err)
	}
	if !hasKey(t, n, "fsm/chunkp/"+orphan) {
		t.Fatal("the orphan was not marked for the sweep")
	}
	marked := time.Now()
	testhelp.WaitFor(t, time.Second, "the clock moved past the mark", func() bool { return time.Now().UnixMilli() > marked.UnixMilli()+1 })

	// An upload in progress after the mark: its chunk is pending, younger than the cut.
	inflight := make([]byte, 32<<10)
	rand.Read(inflight)
	fresh := artifact.DigestOf(inflight)
	env, _ := command.New(command.TypeChunksPut, "", 0, "test",
		state.ChunksPut{Chunks: []state.Chunk{{Digest: fresh, Size: int64(len(inflight)), Zstd: zstdx.Encode(nil, inflight)}}})
	if _, err := n.store.Apply(ctx, env); err != nil {
		t.Fatal(err)
	}

	bytesBefore := testutil.ToFloat64(n.sweep.bytes)
	got, err := n.sweepChunksBefore(ctx, marked.Add(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if got != 1 || hasKey(t, n, "fsm/chunk/"+orphan) {
		t.Fatalf("the sweep deleted %d chunks; orphan still stored: %v", got, hasKey(t, n, "fsm/chunk/"+orphan))
	}
	if !hasKey(t, n, "fsm/chunk/"+fresh) {
		t.Fatal("the chunk of the upload in progress was swept")
	}
	if d := testutil.ToFloat64(n.sweep.bytes) - bytesBefore; d != float64(len(z)) {
		t.Fatalf("swept bytes metric grew by %v, want %d", d, len(z))
	}
	if c := chunkCount(t, n); c != base+1 {
		t.Fatalf("%d chunks after the sweep, want the version's %d and the upload's 1", c, base)
	}
	// The registered version is whole, and marking again marks nothing it lists.
	if m, err := n.markOrphanChunks(ctx); err != nil || m != 0 {
		t.Fatalf("second mark: %d %v", m, err)
	}
	call(t, n, tok, http.MethodGet, "/api/v1/models/m/versions/1/artifact", nil, http.StatusOK, nil)
}

// TestSweepsWaitForEveryNode: the chunk sweep and the orphan mark are commands a build before
// them stops at (or, as the previous release does inside a batch, skips: its state then
// diverges), and a new leader sweeps as soon as it leads, in the middle of a rolling upgrade.
// The leader proposes them only once every node has said, through /cluster/v1/info, that its
// build knows them: here nodes that answer, then a member that never answered (stopped).
func TestSweepsWaitForEveryNode(t *testing.T) {
	n1, _, _, tok := threeNodes(t)
	ctx := context.Background()
	testhelp.WaitFor(t, 20*time.Second, "the leader learns its peers know the rollout parts", func() bool {
		return n1.Store().ClusterKnows(ctx, command.TypeRolloutTransitionPart) == nil
	})
	if _, err := n1.sweepChunksBefore(ctx, time.Now()); err != nil {
		t.Fatalf("sweep with every node on this build: %v", err)
	}
	n4 := joinNode(t, n1, tok, "n4")
	n4.Close() // a member the leader never heard from: a node of an older build, or down
	if _, err := n1.sweepChunksBefore(ctx, time.Now()); !errors.Is(err, store.ErrClusterBehind) {
		t.Fatalf("sweep with n4 unheard of: %v, want ErrClusterBehind", err)
	}
	if _, err := n1.markOrphanChunks(ctx); !errors.Is(err, store.ErrClusterBehind) {
		t.Fatalf("orphan mark with n4 unheard of: %v, want ErrClusterBehind", err)
	}
}
