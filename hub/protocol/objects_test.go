package protocol

import (
	"context"
	"fmt"
	"testing"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/wire"
)

// fetchPayload encodes device id's fetch request for digests (naming shared model's topic when
// shared is set).
func fetchPayload(t testing.TB, id, reqID, shared string, digests ...string) []byte {
	t.Helper()
	r := wire.FetchRequest{Header: wire.Header{DeviceID: id, TS: 1}, RequestID: reqID, Digests: digests}
	if shared != "" {
		r.Shared, r.SharedSub = shared, "sub-"+id
	}
	b, err := wire.Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestManifestRequestsNotDroppedBehindPerDeviceServing: while the per-device queue is full
// (its workers wait on the broker for the chunk frames they publish, or, at 100,000 devices,
// the wave's manifest requests themselves pile up behind the scope reads), a request for a
// manifest the hub answered lately still gets in, on the object queue. Dropped, the device
// waits its fetch timeout (10 s) before it asks again and joins the wave's shared publish that
// much later: run i dropped 91,648 of them, wave 3 joined over ~130 s and the model went out 29
// times on the shared topic (docs/benchmarks.md).
func TestManifestRequestsNotDroppedBehindPerDeviceServing(t *testing.T) {
	f := newScopeFixture(t)
	for i := range 8 {
		id := fmt.Sprintf("w%d", i)
		f.st.Must(t, command.TypeDeviceCreate, state.DeviceCreate{ID: id, TokenHash: "h-" + id})
		f.st.Must(t, command.TypeDeviceDesiredSet, state.DeviceDesiredSet{ID: id, Model: "m", Version: 1})
	}
	s := f.service(nil)
	s.cfg.FetchQueue, s.cfg.PerDeviceQueued, s.queued = 2, 8, map[string]int{}
	s.makeFetchQueues()
	// The first device of the wave: answered by a worker, the manifest is now known.
	if fr := fetchOne(t, s, "first", f.manifestDigest); fr == nil || fr.Kind != wire.FrameData {
		t.Fatalf("first manifest request answered %v; want the manifest", fr)
	}
	// No worker runs: the per-device queue fills with chunk requests and then drops.
	_, _, refs := oneChunkModel(t)
	dropped := 0
	for i := range 4 {
		id := fmt.Sprintf("w%d", i)
		if !s.enqueueFetch(id, fetchPayload(t, id, "chunk-"+id, "", refs[0].Digest)) {
			dropped++
		}
	}
	if dropped != 2 {
		t.Fatalf("%d of 4 chunk requests dropped with a queue of 2; want 2 (the setup should fill the queue)", dropped)
	}
	for i := 4; i < 6; i++ {
		id := fmt.Sprintf("w%d", i)
		if !s.enqueueFetch(id, fetchPayload(t, id, "manifest-"+id, "", f.manifestDigest)) {
			t.Fatalf("manifest request of %s dropped behind a full per-device queue", id)
		}
	}
	// Objects not answered yet, and requests mixing chunks in, stay on the per-device queue.
	if s.enqueueFetch("w6", fetchPayload(t, "w6", "mixed", "", f.manifestDigest, refs[0].Digest)) {
		t.Fatal("a request naming a chunk took the object queue")
	}
}

// TestCachedObjectStillScoped: an object answered from the cache is answered only to devices
// whose scope holds it, as one read from the registry: the cache holds bytes, never a
// device's right to them.
func TestCachedObjectStillScoped(t *testing.T) {
	f := newScopeFixture(t)
	f.st.Must(t, command.TypeDeviceCreate, state.DeviceCreate{ID: "d2", TokenHash: "h-d2"})
	s := f.service(func(context.Context) error { return nil })
	for _, d := range []string{f.manifestDigest, f.contractDigest, f.profileDigest} {
		if fr := fetchOne(t, s, "fill", d); fr == nil || fr.Kind != wire.FrameData {
			t.Fatalf("%s: answered %v; want the data", d, fr)
		}
		if !s.objects.has(d) {
			t.Fatalf("%s not cached after it was answered", d)
		}
	}
	f.st.Must(t, command.TypeDeviceDesiredSet, state.DeviceDesiredSet{ID: "d1", Model: "m", Version: 0})
	for _, d := range []string{f.manifestDigest, f.contractDigest, f.profileDigest} {
		if fr := fetchOne(t, s, "unscoped-"+d[7:15], d); fr == nil || fr.Kind != wire.FrameNotFound {
			t.Fatalf("%s, cached, to a device no longer told to run m: answered %v; want not found", d, fr)
		}
	}
}

// BenchmarkServeManifest: one device's request for its model's manifest, answered (scope read,
// object, frames, publish to a recording transport).
func BenchmarkServeManifest(b *testing.B) {
	f := newScopeFixture(b)
	s := f.service(nil)
	job := fetchJob{device: "d1", req: wire.FetchRequest{Header: wire.Header{DeviceID: "d1"}, RequestID: "r",
		Digests: []string{f.manifestDigest}}}
	var bufs frameBufs
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		s.serve(job, &bufs)
	}
}
