package protocol

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/wire"
)

// Shared chunk fan-out (issue 18). All devices of a rollout wave fetch the same chunks; an agent
// that subscribed to its model's shared topic (wire.Topics.ModelChunk) says so in its fetch
// requests (FetchRequest.Shared), and the hub answers their chunks there, once for every
// listening device, instead of once per device on PREFIX/dev/{id}/chunk.
//
// A device is listening since its first request naming the subscription (SharedSub): the agent
// sends it only after the broker acknowledged the subscription, and the broker handles a
// client's packets in order, so the subscription is in place before the hub sees the request.
// A chunk published on the shared topic after that time reached the device. So, for each chunk
// of a shared request:
//   - published after the device started listening, or about to be published: nothing to do
//     (deduplicated: the device has it or will have it);
//   - else it is scheduled, or joins the publish already scheduled: it goes out once no device
//     joined it for SharedDelay (the wave's devices, which got their desired states together,
//     ask within that of each other), but no later than a wait after the first device that
//     waits for it: SharedWait, or, while devices keep joining without a pause of SharedGap
//     (a burst: a wave simulated on one machine, each device joining as its share of the CPU
//     allows, or a large wave whose desired states and manifests go out at the hub's pace),
//     twice as long as the burst has lasted, up to wire.MaxSharedHold (8 s by default: whatever
//     SharedWait, never beyond what an agent waits for a request naming the shared topic,
//     wire.SharedDeadline of its request timeout, 20 s by default, less the request's and the
//     frames' transit). A burst then goes out about 2, 6 and 14 s into it, then every
//     MaxSharedHold: T seconds cost about 2+T/MaxSharedHold publishes, not T/SharedGap (with
//     the hold growing as the burst's age, 2, 5, 10, 18 s: a 20 s burst cost 5 publishes, 4
//     now, TestSharedFanoutBurstPublishes), and the next wave, after a pause, starts again at
//     SharedWait. Never sooner than SharedGap after the chunk's previous shared publish.
//   - A pending publish goes out at once when every device listening on the topic has asked for
//     it (the embedded broker counts them: SubscriberCounter; elsewhere the devices that joined
//     within sharedForget stand for them, so a lone pull soon after a wave still waits) and the
//     device asking has listened for SharedDelay already (its first requests wait as above: the
//     first device of a wave is alone for a moment): nobody is left to wait for. A
//     device pulling alone (a canary, a resume, a device replaced in the field) then waits once,
//     not one SharedDelay per request window.
//
// The agents make this work: a pull subscribes, and names the subscription in its first
// requests, as soon as it has the model's manifest, before anything else bounds it (a fleet
// process's pull slots); it takes shared frames for as long as they come, and asks on its own
// topic only what the wave's publishes did not bring.
//
// Retries (an agent asks again for what did not arrive in time), old agents and resumes without
// a subscription are answered on the per-device topic: stragglers, counted apart
// (MetricChunkEgressBytes).

// sharedRequestID is the request id of every frame on a shared topic: no device issued it; an
// agent takes a shared frame for any digest it still wants, and checks it against its manifest.
const sharedRequestID = "shared"

// Defaults of Config.SharedDelay, Config.SharedWait and Config.SharedGap.
const (
	DefaultSharedDelay = 250 * time.Millisecond
	DefaultSharedWait  = 2 * time.Second
	DefaultSharedGap   = 3 * time.Second
)

// DefaultSharedCopyRate is Config.SharedCopyRate's default.
const DefaultSharedCopyRate = 256 << 20

// sharedForget is how long the fan-out remembers a subscription or a published chunk.
const sharedForget = 10 * time.Minute

// listenersAge is how long a broker's count of a shared topic's subscribers is used before it
// is asked again. mochi counts by gathering every matching subscription into a new map
// (TopicsIndex.Subscribers): with 9,000 devices listening and every one of their requests
// naming 16 chunks, asking per chunk request took a third of the hub's CPU in a 10,000-agent
// rollout (docs/benchmarks.md). A count this old at most only moves when "every listener
// asked" (want) or a pacing pause (run) is decided.
const listenersAge = 100 * time.Millisecond

// listenerCount is a broker's subscriber count of one shared topic and when it was taken.
type listenerCount struct {
	n  int
	at time.Time
}

type sharedKey struct{ model, digest string }

type joinKey struct{ device, model, sub string }

type sharedChunk struct {
	lastPub time.Time // when it last went out on the shared topic (taken before the publish)
	due     time.Time // when the pending publish goes out
	first   time.Time // when the first device waiting for the pending publish asked
	pending bool
	// waiting holds the devices that asked for the pending publish.
	waiting map[string]struct{}
	// burst is when the devices' current run of joins began (no pause of SharedGap since),
	// lastJoin the last join.
	burst, lastJoin time.Time
}

// sharedFanout schedules and publishes shared chunk frames.
type sharedFanout struct {
	s                *Service
	delay, wait, gap time.Duration
	// maxWait is the longest hold of a burst: wire.MaxSharedHold, or wait if longer. A pull
	// listening before its fleet pull slot waits wire.SharedListenQuiet timeouts (40 s by
	// default) of silence before it asks on its own topic; one holding a slot, or a device
	// without slots, wire.SharedDeadline of its timeout (20 s). The hold used to double up to
	// 32 s, which the devices joining a long burst outlived: at 100,000 devices they asked per
	// device, hundreds of copies of the model (docs/benchmarks.md, run d).
	maxWait time.Duration
	wake    chan struct{}

	mu     sync.Mutex
	chunks map[sharedKey]*sharedChunk
	joined map[joinKey]time.Time
	// joinedPer counts joined's subscriptions per model: where the broker does not count a
	// topic's subscribers, the devices remembered as joining (sharedForget) stand for them.
	joinedPer map[string]int

	// counted caches the broker's subscriber counts by model (listenersAge), under countMu.
	countMu sync.Mutex
	counted map[string]listenerCount
}

func newSharedFanout(s *Service) *sharedFanout {
	return &sharedFanout{
		s: s, delay: s.cfg.SharedDelay, wait: s.cfg.SharedWait, gap: s.cfg.SharedGap, maxWait: max(s.cfg.SharedWait, wire.MaxSharedHold), wake: make(chan struct{}, 1),
		chunks: map[sharedKey]*sharedChunk{}, joined: map[joinKey]time.Time{}, joinedPer: map[string]int{},
		counted: map[string]listenerCount{},
	}
}

// want books device's shared request for chunk digest of model: it is deduplicated (already on
// its way to the device) or scheduled. It never serves anything itself.
func (f *sharedFanout) want(device, model, sub, digest string, now time.Time) {
	listening, counted := f.brokerListeners(model) // else counted below from the devices seen joining
	f.mu.Lock()
	k := joinKey{device, model, sub}
	since, ok := f.joined[k]
	if !ok {
		since = now
		f.joined[k] = now
		f.joinedPer[model]++
	}
	if !counted {
		listening = f.joinedPer[model]
	}
	ck := sharedKey{model, digest}
	c := f.chunks[ck]
	if c == nil {
		c = &sharedChunk{}
		f.chunks[ck] = c
	}
	if c.lastPub.After(since) {
		f.mu.Unlock()
		f.s.m.shared.WithLabelValues("deduplicated").Inc()
		return
	}
	if c.lastJoin.IsZero() || now.Sub(c.lastJoin) > f.gap {
		c.burst = now
	}
	c.lastJoin = now
	joined := c.pending
	if !joined {
		c.pending, c.first, c.waiting = true, now, map[string]struct{}{}
	}
	c.waiting[device] = struct{}{}
	c.due = f.dueAt(c, now)
	if listening > 0 && len(c.waiting) >= listening && now.Sub(since) >= f.delay {
		c.due = now // every listener asked, the asker is not new: nobody to wait for
		if !c.lastPub.IsZero() && c.lastPub.Add(f.gap).After(now) {
			c.due = c.lastPub.Add(f.gap)
		}
		f.s.m.shared.WithLabelValues("all_listening").Inc()
	}
	f.mu.Unlock()
	if joined {
		f.s.m.shared.WithLabelValues("joined").Inc()
	} else {
		f.s.m.shared.WithLabelValues("scheduled").Inc()
	}
	signal(f.wake)
}

// dueAt returns when c's pending publish goes out, a device having joined it at now: delay
// after the last join, but no later than the wait (twice the burst's age, within SharedWait
// and maxWait) after the first, and no sooner than gap after the previous publish. Called with f.mu
// held.
func (f *sharedFanout) dueAt(c *sharedChunk, now time.Time) time.Time {
	due := now.Add(f.delay)
	wait := min(max(2*c.first.Sub(c.burst), f.wait), f.maxWait)
	if limit := c.first.Add(wait); due.After(limit) {
		due = limit
	}
	if !c.lastPub.IsZero() && c.lastPub.Add(f.gap).After(due) {
		due = c.lastPub.Add(f.gap)
	}
	return due
}

// run publishes scheduled chunks when they are due, and forgets old subscriptions and chunks.
func (f *sharedFanout) run(ctx context.Context) {
	var bufs frameBufs
	if pc, ok := f.s.cfg.Transport.(PayloadCopier); ok && pc.PublishCopiesPayload() {
		bufs.reuse = true
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	lastSweep := time.Now()
	for {
		now := time.Now()
		due, next := f.takeDue(now)
		for i, k := range due {
			n := f.publish(k, &bufs)
			if bufs.reuse && n > 0 && i < len(due)-1 {
				// The embedded broker copies the frame for every subscriber and holds the copies
				// until each socket takes them: pace the copies (SharedCopyRate), so a burst of
				// chunks to thousands of listeners does not sit in memory at once.
				pause := time.Duration(float64(n*f.listeners(k.model)) / float64(f.s.cfg.SharedCopyRate) * float64(time.Second))
				select {
				case <-ctx.Done():
					return
				case <-time.After(pause):
				}
			}
		}
		if now.Sub(lastSweep) > time.Minute {
			f.sweep(now)
			lastSweep = now
		}
		wait := time.Minute
		if !next.IsZero() {
			wait = max(time.Until(next), time.Millisecond)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
			timer.Stop() // Go 1.23+: Reset above never delivers a stale expiry
		case <-timer.C:
		}
	}
}

// listeners returns the devices listening on model's shared topic: from the broker when it
// counts them (SubscriberCounter), else the subscriptions seen joining within sharedForget.
func (f *sharedFanout) listeners(model string) int {
	if n, ok := f.brokerListeners(model); ok {
		return n
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.joinedPer[model]
}

// brokerListeners returns the subscribers of model's shared topic when the broker counts them,
// as counted at most listenersAge ago.
func (f *sharedFanout) brokerListeners(model string) (int, bool) {
	sc, ok := f.s.cfg.Transport.(SubscriberCounter)
	if !ok {
		return 0, false
	}
	f.countMu.Lock()
	defer f.countMu.Unlock()
	now := time.Now()
	if c, ok := f.counted[model]; ok && now.Sub(c.at) < listenersAge {
		return c.n, true
	}
	n := sc.Subscribers(f.s.cfg.Topics.ModelChunk(model))
	f.counted[model] = listenerCount{n: n, at: now}
	return n, true
}

// takeDue returns the chunks due at now, stamped as published (the stamp is taken before the
// publish, so a device listening before it surely gets the frame), and when the next one is due.
func (f *sharedFanout) takeDue(now time.Time) (due []sharedKey, next time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, c := range f.chunks {
		if !c.pending {
			continue
		}
		if c.due.After(now) {
			if next.IsZero() || c.due.Before(next) {
				next = c.due
			}
			continue
		}
		c.pending, c.lastPub, c.waiting = false, now, nil
		due = append(due, k)
	}
	// Chunks in manifest order do not matter to the agents; a stable order keeps runs alike.
	sort.Slice(due, func(i, j int) bool { return due[i].digest < due[j].digest })
	return due, next
}

// publish sends chunk k once on its model's shared topic and returns the frame's size (0 when
// nothing went out). A failure forgets the stamp and schedules the chunk again, SharedGap later
// (or joins the publish already pending): the devices that waited for it still listen, and left
// to their retries they would each fetch it on their own topic.
func (f *sharedFanout) publish(k sharedKey, bufs *frameBufs) int {
	fail := func() {
		f.mu.Lock()
		if c := f.chunks[k]; c != nil {
			c.lastPub = time.Time{}
			if !c.pending {
				now := time.Now()
				c.pending, c.first, c.waiting, c.due = true, now, map[string]struct{}{}, now.Add(f.gap)
			}
		}
		f.mu.Unlock()
		signal(f.wake)
	}
	sum, err := artifact.ParseDigest(k.digest)
	if err != nil {
		fail()
		return 0
	}
	z, err := f.s.cfg.Reader.Chunk(bufs.zst[:0], k.digest)
	if err != nil {
		f.s.log.Error("read chunk for shared topic", "model", k.model, "digest", k.digest, "err", err)
		fail()
		return 0
	}
	bufs.zst = z
	plainSize, err := storedPlainSize(z)
	if err != nil {
		f.s.log.Error("stored chunk is unreadable", "digest", k.digest, "err", err)
		fail()
		return 0
	}
	frame, err := wire.AppendFrame(bufs.next(len(z)+256), wire.Frame{
		Kind: wire.FrameData, RequestID: sharedRequestID, Digest: sum,
		Total: plainSize, Plain: plainSize, Payload: z,
	})
	if err != nil {
		f.s.log.Error("encode chunk frame", "digest", k.digest, "err", err)
		fail()
		return 0
	}
	if bufs.reuse {
		bufs.frame = frame
	}
	if err := f.s.cfg.Transport.Publish(f.s.cfg.Topics.ModelChunk(k.model), frame, false, 1); err != nil {
		f.s.log.Warn("publish shared chunk frame", "model", k.model, "err", err)
		fail()
		return 0
	}
	f.s.m.chunkBytes.WithLabelValues("shared_chunk").Add(float64(len(frame)))
	f.s.m.egress.WithLabelValues(EgressShared).Add(float64(len(frame)))
	return len(frame)
}

// sweep forgets subscriptions and published chunks older than sharedForget.
func (f *sharedFanout) sweep(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, t := range f.joined {
		if now.Sub(t) > sharedForget {
			delete(f.joined, k)
			if f.joinedPer[k.model]--; f.joinedPer[k.model] <= 0 {
				delete(f.joinedPer, k.model)
			}
		}
	}
	for k, c := range f.chunks {
		if !c.pending && now.Sub(c.lastPub) > sharedForget {
			delete(f.chunks, k)
		}
	}
	f.countMu.Lock()
	for m, c := range f.counted {
		if now.Sub(c.at) > sharedForget {
			delete(f.counted, m)
		}
	}
	f.countMu.Unlock()
}
