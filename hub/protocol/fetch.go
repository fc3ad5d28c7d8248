package protocol

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/wire"
	"github.com/driftline/driftline/shared/zstdx"
)

type fetchJob struct {
	device string
	req    wire.FetchRequest
}

// makeFetchQueues makes the fetch queues (Config.FetchQueue each).
func (s *Service) makeFetchQueues() {
	s.fetchCh = make(chan fetchJob, s.cfg.FetchQueue)
	s.sharedCh = make(chan fetchJob, s.cfg.FetchQueue)
	s.objCh = make(chan fetchJob, s.cfg.FetchQueue)
}

// enqueueFetch validates a fetch request and queues it, refusing it (counted) when the device
// already has PerDeviceQueued requests waiting or its queue is full: the agent's own window and
// retry make up for a drop, and the broker's per-client write queue is never flooded. A request
// naming a shared topic goes to its own queue (sharedCh): booking a device into the wave's
// publish costs a scope read, while the per-device queue's workers wait on the broker for every
// frame they send; a shared request dropped behind them costs the whole model per device when
// the agent asks again (docs/benchmarks.md, run d). A request for registry objects answered
// lately (a wave's manifest, objects.go) goes to a third queue (objCh), for the same reason.
func (s *Service) enqueueFetch(id string, payload []byte) bool {
	req, err := wire.DecodeFetchRequest(payload)
	if err == nil {
		err = req.MatchTopic(id)
	}
	if err != nil {
		s.m.fetches.WithLabelValues("bad").Inc()
		s.log.Warn("bad fetch request", "device", id, "err", err)
		return false
	}
	s.queuedMu.Lock()
	if s.queued[id] >= s.cfg.PerDeviceQueued {
		s.queuedMu.Unlock()
		s.m.fetches.WithLabelValues("dropped").Inc()
		return false
	}
	s.queued[id]++
	s.queuedMu.Unlock()
	ch := s.fetchCh
	switch {
	case req.Shared != "":
		ch = s.sharedCh
	case s.cachedObjects(req.Digests):
		ch = s.objCh
	}
	select {
	case ch <- fetchJob{device: id, req: req}:
		return true
	default:
		s.dequeued(id)
		s.m.fetches.WithLabelValues("dropped").Inc()
		return false
	}
}

// cachedObjects reports whether every digest is an object of the object cache.
func (s *Service) cachedObjects(digests []string) bool {
	for _, d := range digests {
		if !s.objects.has(d) {
			return false
		}
	}
	return len(digests) > 0
}

func (s *Service) dequeued(id string) {
	s.queuedMu.Lock()
	if s.queued[id]--; s.queued[id] <= 0 {
		delete(s.queued, id)
	}
	s.queuedMu.Unlock()
}

// fetchWorker answers the requests of queue ch until ctx ends.
func (s *Service) fetchWorker(ctx context.Context, ch <-chan fetchJob) {
	var bufs frameBufs
	if pc, ok := s.cfg.Transport.(PayloadCopier); ok && pc.PublishCopiesPayload() {
		bufs.reuse = true
	}
	for {
		select {
		case <-ctx.Done():
			return
		case job := <-ch:
			start := time.Now()
			s.serve(job, &bufs)
			s.dequeued(job.device)
			s.m.serveSecs.Observe(time.Since(start).Seconds())
			s.m.fetches.WithLabelValues("served").Inc()
		}
	}
}

// frameBufs are a fetch worker's buffers: the chunk read from the store, and, when the transport
// copies what it publishes (reuse), the frame built from it.
type frameBufs struct {
	zst, frame []byte
	reuse      bool
}

// next returns a buffer to append a frame of about n bytes to: the worker's own when it may be
// reused, else a new one.
func (b *frameBufs) next(n int) []byte {
	if !b.reuse {
		return make([]byte, 0, n)
	}
	return b.frame[:0]
}

// serve answers every digest of one request: a chunk of the model a shared request names goes
// to the fan-out (shared.go); any other stored chunk goes out as one frame built from the
// zstd bytes at rest (no recompression); a manifest, contract or profile is framed from its
// plain bytes; an unknown digest gets a not-found frame so the agent fails fast. Only objects of
// the device's scope (scope.go) are served: anything else gets a not-found frame too, and the
// request is counted as out_of_scope. Not found is final for the agent's revision, so it is
// said only after this node caught up with the cluster (CatchUp); a node that cannot tell
// (catch-up failed, a state read failed) says nothing and the agent asks again.
func (s *Service) serve(job fetchJob, bufs *frameBufs) {
	missing := s.serveDigests(job, job.req.Digests, bufs, s.cfg.CatchUp != nil)
	if len(missing) == 0 {
		return
	}
	// This node may only lag: the device heard of a desired state (from the leader, or from
	// another node's publish) that this node has not applied yet, and its request came here
	// (a shared subscription spreads requests over the nodes). A not-found is final for the
	// agent's revision, so catch up with the cluster before saying it.
	// A node that could not catch up (no leader, the barrier or read index timed out under load)
	// cannot tell yet: it answers nothing for those digests, as for a dropped request, and the
	// agent asks again when its request deadline passes (a retry, never final; the wire has no
	// "retry" frame, and an unknown frame kind is refused by agents of earlier releases:
	// docs/decisions.md).
	ctx, cancel := context.WithTimeout(context.Background(), catchUpTimeout)
	err := s.cfg.CatchUp(ctx)
	cancel()
	if err != nil {
		s.log.Warn("fetch: could not catch up with the cluster; not answering, the agent will ask again",
			"device", job.device, "digests", len(missing), "err", err)
		s.m.fetches.WithLabelValues("catch_up_failed").Inc()
		return
	}
	s.m.fetches.WithLabelValues("caught_up").Inc()
	s.serveDigests(job, missing, bufs, false)
}

// catchUpTimeout bounds the wait for this node to apply what the cluster committed before it
// answers a digest it does not have.
const catchUpTimeout = 3 * time.Second

// sendDeviceFrame publishes one fetch answer frame of kind on a device's own chunk topic and
// counts its bytes (a chunk's as per-device egress).
func (s *Service) sendDeviceFrame(device, topic, kind string, frame []byte) {
	if err := s.cfg.Transport.Publish(topic, frame, false, 1); err != nil {
		s.log.Warn("publish chunk frame", "device", device, "err", err)
		return
	}
	s.m.chunkBytes.WithLabelValues(kind).Add(float64(len(frame)))
	if kind == "chunk" {
		s.m.egress.WithLabelValues(EgressDevice).Add(float64(len(frame)))
	}
}

// serveDigests answers digests of job (see serve). With deferMissing it sends nothing for a
// digest this node does not have or that is outside the device's scope, and returns those
// digests instead; without, it answers them not found.
func (s *Service) serveDigests(job fetchJob, digests []string, bufs *frameBufs, deferMissing bool) (missing []string) {
	topic := s.cfg.Topics.Chunk(job.device)
	send := func(kind string, frame []byte) { s.sendDeviceFrame(job.device, topic, kind, frame) }
	scope, err := s.scopeFor(job.device)
	if err != nil {
		s.log.Error("device scope for fetch", "device", job.device, "err", err)
		return nil
	}
	refused := false
	notFound := func(sum [32]byte) {
		if frame, err := wire.NotFoundFrame(job.req.RequestID, sum); err == nil {
			send("not_found", frame)
		}
	}
	defer func() {
		if refused {
			s.m.fetches.WithLabelValues("out_of_scope").Inc()
		}
	}()
	shared := job.req.Shared != "" && scope.sc.ModelName(job.req.Shared)
	now := time.Now()
	for _, d := range digests {
		sum, err := artifact.ParseDigest(d)
		if err != nil {
			continue // validated already
		}
		if shared && scope.modelChunk(job.req.Shared, d) {
			s.shared.want(job.device, job.req.Shared, job.req.SharedSub, d, now)
			continue
		}
		obj, fresh := s.objects.get(d, now)
		if !fresh {
			var z []byte
			if scope.chunk(d) {
				z, err = s.cfg.Reader.Chunk(bufs.zst[:0], d)
			} else {
				err = state.ErrNotFound // not a chunk this device may fetch: perhaps an object of its scope
			}
			if err == nil {
				if frame, ok := s.chunkFrame(job.req.RequestID, sum, d, z, bufs); ok {
					send("chunk", frame)
				}
				continue
			}
			if !errors.Is(err, state.ErrNotFound) {
				s.log.Error("read chunk", "digest", d, "err", err)
				continue
			}
			var data []byte
			var ref state.ObjectRef
			data, ref, err = s.cfg.Reader.Object(d)
			if err == nil {
				if obj, err = s.objects.put(d, ref, data, now); err != nil {
					s.log.Error("frame object", "digest", d, "err", err)
					continue
				}
			}
		}
		outOfScope := false
		if err == nil {
			var in bool
			if in, err = scope.object(s.cfg.Reader, d, obj.ref); err == nil && !in {
				outOfScope, err = true, state.ErrNotFound
			}
		}
		if err != nil && !errors.Is(err, state.ErrNotFound) {
			// Cannot tell: say nothing, the agent asks again (not found would be final).
			s.log.Error("read object for fetch", "device", job.device, "digest", d, "err", err)
			continue
		}
		if err != nil {
			if deferMissing {
				missing = append(missing, d)
				continue
			}
			if ok, _ := s.cfg.Reader.HasChunk(d); ok || outOfScope {
				refused = true // an object or chunk outside the scope
			}
			notFound(sum)
			continue
		}
		frames, err := obj.frames(job.req.RequestID)
		if err != nil {
			s.log.Error("frame object", "digest", d, "err", err)
			continue
		}
		for _, f := range frames {
			send(obj.ref.Kind, f)
		}
	}
	return missing
}

// chunkFrame encodes stored chunk z (zstd, digest d) as one data frame of request reqID in bufs;
// false when the chunk cannot be framed (logged).
func (s *Service) chunkFrame(reqID string, sum [32]byte, d string, z []byte, bufs *frameBufs) ([]byte, bool) {
	bufs.zst = z
	plainSize, err := storedPlainSize(z)
	if err != nil {
		s.log.Error("stored chunk is unreadable", "digest", d, "err", err)
		return nil, false
	}
	frame, err := wire.AppendFrame(bufs.next(len(z)+256), wire.Frame{
		Kind: wire.FrameData, RequestID: reqID, Digest: sum,
		Total: plainSize, Plain: plainSize, Payload: z,
	})
	if err != nil {
		s.log.Error("encode chunk frame", "digest", d, "err", err)
		return nil, false
	}
	if bufs.reuse {
		bufs.frame = frame
	}
	return frame, true
}

// storedPlainSize returns the plain size of a chunk stored as zstd: from the frame header when it
// declares it, else (zstd omits it for very small inputs) by decoding the chunk.
func storedPlainSize(z []byte) (uint32, error) {
	var h zstd.Header
	if err := h.Decode(z); err != nil {
		return 0, err
	}
	if h.HasFCS {
		if h.FrameContentSize > wire.MaxPartSize {
			return 0, fmt.Errorf("chunk declares %d bytes, at most %d", h.FrameContentSize, wire.MaxPartSize)
		}
		return uint32(h.FrameContentSize), nil
	}
	plain, err := zstdx.Decode(nil, z, wire.MaxPartSize)
	if err != nil {
		return 0, err
	}
	return uint32(len(plain)), nil
}
