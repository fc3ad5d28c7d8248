package protocol

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/state/statetest"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/wire"
)

// oneChunkModel splits a model small enough for one chunk: its manifest, the manifest's
// canonical bytes and its chunk.
func oneChunkModel(t testing.TB) (artifact.Manifest, []byte, []state.ChunkRef) {
	t.Helper()
	data := []byte("a model small enough for one chunk")
	var refs []state.ChunkRef
	man, err := artifact.Split(bytes.NewReader(data), func(c artifact.Chunk) error {
		refs = append(refs, state.ChunkRef{Digest: c.Digest, Size: int64(len(c.Data))})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := man.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	return man, manifest, refs
}

// TestFetchOnLaggingNodeCatchesUp: with several hub nodes, a device hears of its desired state
// from one node and its fetch request may reach another (shared subscriptions) that has not
// applied that desired state yet. Found by the operations walkthrough (3 nodes on Mosquitto):
// the lagging node answered the manifest not found, which is final for the agent's revision, so
// the rollout never completed. The node now catches up with the cluster (CatchUp) before it says
// not found. Here the lag is the device's desired state, applied by CatchUp as a follower
// applies the entry once it has caught up.
func TestFetchOnLaggingNodeCatchesUp(t *testing.T) {
	man, manifest, refs := oneChunkModel(t)
	manifestDigest := artifact.DigestOf(manifest)
	for _, withCatchUp := range []bool{false, true} {
		st := statetest.New(t)
		st.Must(t, command.TypeModelCreate, state.ModelCreate{Name: "m"})
		st.Must(t, command.TypeChunksPut, state.ChunksPut{Chunks: []state.Chunk{{Digest: refs[0].Digest, Size: refs[0].Size, Zstd: []byte{1}}}})
		st.Must(t, command.TypeModelVersionCreate, state.ModelVersionCreate{Model: "m", Digest: man.Digest, Size: man.Size,
			Chunks: refs, Manifest: manifest, ManifestDigest: manifestDigest})
		st.Must(t, command.TypeModelVersionApprove, state.ModelVersionApprove{Model: "m", Version: 1,
			Signature: state.Signature{KeyID: "k", Sig: "s"}})
		st.Must(t, command.TypeDeviceCreate, state.DeviceCreate{ID: "d1", TokenHash: "h-d1"})
		caughtUp := 0
		cfg := Config{Transport: &recorder{}, Reader: st.Reader(), Topics: wire.Default()}
		if withCatchUp {
			cfg.CatchUp = func(context.Context) error {
				caughtUp++
				st.Must(t, command.TypeDeviceDesiredSet, state.DeviceDesiredSet{ID: "d1", Model: "m", Version: 1})
				return nil
			}
		}
		s := &Service{cfg: cfg, log: slog.New(slog.NewTextHandler(io.Discard, nil)), m: newMetrics(prometheus.NewRegistry())}
		s.serve(fetchJob{device: "d1", req: wire.FetchRequest{Header: wire.Header{DeviceID: "d1"}, RequestID: "r1",
			Digests: []string{manifestDigest}}}, &frameBufs{})
		b := cfg.Transport.(*recorder).last(wire.Default().Chunk("d1"))
		if b == nil {
			t.Fatalf("catch-up %v: no answer to the fetch", withCatchUp)
		}
		f, err := wire.DecodeFrame(b)
		if err != nil {
			t.Fatal(err)
		}
		if !withCatchUp {
			if f.Kind != wire.FrameNotFound {
				t.Fatalf("a node without CatchUp answered %v; the setup should show the lag as not found", f.Kind)
			}
			continue
		}
		if f.Kind != wire.FrameData || caughtUp != 1 {
			t.Fatalf("lagging node: answered frame kind %v after %d catch-ups; want the manifest after one", f.Kind, caughtUp)
		}
	}
}

// TestFetchAnsweredConcurrently: the default fetch workers answer many devices' requests at
// once: each answer mostly waits (state reads, the broker), and 4 workers answered a
// 10,000-agent wave ~70 requests a second with the hub's CPU half idle.
func TestFetchAnsweredConcurrently(t *testing.T) {
	st := statetest.New(t)
	tr := &overlapTransport{need: 8}
	cfg := Config{Transport: tr, Reader: st.Reader(), Topics: wire.Default(), FetchWorkers: DefaultFetchWorkers}
	s := &Service{cfg: cfg, log: slog.New(slog.NewTextHandler(io.Discard, nil)), m: newMetrics(prometheus.NewRegistry()),
		fetchCh: make(chan fetchJob, 64), queued: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); s.wg.Wait() }()
	s.startFetchWorkers(ctx)
	const devices = 16
	for i := range devices {
		id := fmt.Sprintf("d%02d", i)
		st.Must(t, command.TypeDeviceCreate, state.DeviceCreate{ID: id, TokenHash: "h-" + id})
		s.fetchCh <- fetchJob{device: id, req: wire.FetchRequest{Header: wire.Header{DeviceID: id}, RequestID: "r1",
			Digests: []string{"sha256:" + strings.Repeat("ab", 32)}}}
	}
	testhelp.WaitFor(t, 10*time.Second, "every request answered", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return tr.n == devices
	})
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.most < 8 {
		t.Fatalf("at most %d fetch answers in flight at once; want 8 or more", tr.most)
	}
}
