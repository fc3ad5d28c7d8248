package protocol

import (
	"context"
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/driftline/driftline/hub/keys"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/clock"
	"github.com/driftline/driftline/shared/wire"
)

// DefaultDesiredTTL is how long a signed desired state is valid when Config.DesiredTTL is 0.
// The hub signs it again once half of it has passed, so a device that hears nothing valid for
// longer knows it is cut off (frozen) rather than idle.
const DefaultDesiredTTL = 24 * time.Hour

// KeySource gives the cluster's current online signing key (hub/keys.Source).
type KeySource interface {
	// Current returns the signer; keys.ErrNoTrust before the first root exists.
	Current() (keys.Current, error)
}

// desiredPublisher keeps every device's retained desired message equal to the FSM. It is driven
// by the state machine's change feed (changes.go), so it reacts to changes however they were made
// (API, rollout controller, a snapshot restore) and on every node, and only to desired changes:
// telemetry (a device's status) does not wake it. It publishes a device when its desired
// revision moved, when the root of trust changed (a rotated key signs it again and carries the
// new root to the agent), and when half of the last signature's lifetime has passed (a refresh:
// same rev, new issue and expiry times).
type desiredPublisher struct {
	s     *Service
	ttl   time.Duration
	dirty *dirtySet
	// trust asks for a pass over every device (the key set changed, or the feed reset).
	trust chan struct{}
	// mu guards published.
	mu sync.Mutex
	// published is what was last published per device (absent: cleared or never).
	published map[string]publishedDesired
	// looked counts devices read because the feed named them (tests: a status change wakes none).
	looked atomic.Int64
}

// publishedDesired is one device's last published desired state.
type publishedDesired struct {
	rev     int64
	root    int64     // root version it was signed under
	refresh time.Time // when to sign it again
}

func newDesiredPublisher(s *Service) *desiredPublisher {
	ttl := s.cfg.DesiredTTL
	if ttl <= 0 {
		ttl = DefaultDesiredTTL
	}
	return &desiredPublisher{s: s, ttl: ttl, dirty: newDirtySet(),
		trust: make(chan struct{}, 1), published: map[string]publishedDesired{}}
}

func (p *desiredPublisher) notify(id string) { p.dirty.mark(id) }

// all asks for a pass over every device.
func (p *desiredPublisher) all() {
	signal(p.trust)
}

func (p *desiredPublisher) run(ctx context.Context) {
	// A periodic pass repairs what a failed publish or a broker restart lost, for the devices
	// that have not acted on their desired revision yet (one that has reported it holds it),
	// and signs again the desired states whose refresh time has come.
	repair := time.NewTicker(min(time.Minute, p.ttl/4))
	defer repair.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-repair.C:
			p.publishAll(true)
		case <-p.trust:
			p.publishAll(false)
		case <-p.dirty.signal:
			p.publishIDs(p.dirty.take())
		}
	}
}

// desiredWorkers is how many devices of one batch of changes publishDevice handles at once. A
// publish waits on the state store's reads (each waits for the commits in flight) and on the
// broker's store of the retained message (a commit): one at a time, a wave start of 9,000
// devices took 85 s to reach its agents in the 10,000-agent bench-fleet run (2026-12-07), with
// the hub's CPU mostly idle; concurrent commits share badger's write batches.
const desiredWorkers = 8

// publishIDs publishes the devices ids (distinct: one dirty set's take), desiredWorkers at a
// time, and returns when all are done. A device is never published by two workers at once.
func (p *desiredPublisher) publishIDs(ids []string) {
	if len(ids) <= 1 {
		for _, id := range ids {
			p.publish(id)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(desiredWorkers, len(ids)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(len(ids)); i = next.Add(1) - 1 {
				p.publish(ids[i])
			}
		}()
	}
	wg.Wait()
}

// publishAll publishes every device's desired state that was not published at its revision yet;
// with repair, it publishes again those whose agents have not reported acting on it. A device
// published before that is gone (removed by a restored snapshot, which no change describes) has
// its retained message cleared.
func (p *desiredPublisher) publishAll(repair bool) {
	cursor := ""
	seen := map[string]bool{}
	for {
		page, err := p.s.cfg.Reader.Devices(nil, cursor, state.MaxLimit)
		if err != nil {
			p.s.log.Error("list devices for desired publish", "err", err)
			return
		}
		for _, d := range page.Items {
			seen[d.ID] = true
			if repair && unacknowledged(d) {
				p.forget(d.ID)
			}
			p.publishDevice(d)
		}
		if page.NextCursor == nil {
			break
		}
		cursor = *page.NextCursor
	}
	var gone []string
	p.mu.Lock()
	for id := range p.published {
		if !seen[id] {
			gone = append(gone, id)
		}
	}
	p.mu.Unlock()
	for _, id := range gone {
		p.publish(id)
	}
}

func (p *desiredPublisher) publish(id string) {
	p.looked.Add(1)
	d, err := p.s.cfg.Reader.Device(id)
	if errors.Is(err, state.ErrNotFound) {
		p.mu.Lock()
		_, had := p.published[id]
		delete(p.published, id)
		p.mu.Unlock()
		if had { // clear the retained message of a removed device
			if err := p.s.cfg.Transport.Publish(p.s.cfg.Topics.Desired(id), nil, true, 1); err != nil {
				p.s.log.Warn("clear desired", "device", id, "err", err)
			}
		}
		return
	}
	if err != nil {
		p.s.log.Error("read device for desired publish", "device", id, "err", err)
		return
	}
	p.publishDevice(d)
}

// unacknowledged reports whether d's agent has not reported acting on its desired revision.
func unacknowledged(d state.Device) bool { return d.DesiredRev > 0 && d.Reported.Rev < d.DesiredRev }

// forget makes the next publishDevice of id publish whatever was published before.
func (p *desiredPublisher) forget(id string) {
	p.mu.Lock()
	delete(p.published, id)
	p.mu.Unlock()
}

func (p *desiredPublisher) publishDevice(d state.Device) {
	if d.DesiredRev == 0 {
		return
	}
	cur, err := p.s.cfg.Keys.Current()
	if err != nil {
		// Before the first root exists nothing can be signed; its creation republishes all.
		p.s.log.Debug("no signing key for desired states yet", "device", d.ID, "err", err)
		return
	}
	now := clock.Now()
	p.mu.Lock()
	last, ok := p.published[d.ID]
	p.mu.Unlock()
	if ok && last.rev == d.DesiredRev && last.root == cur.RootVersion && now.Before(last.refresh) {
		return
	}
	msg, err := BuildDesired(p.s.cfg.Reader, d, cur, now, p.ttl)
	if err != nil {
		p.s.log.Error("build desired", "device", d.ID, "err", err)
		return
	}
	b, err := wire.Encode(msg)
	if err != nil {
		p.s.log.Error("encode desired", "device", d.ID, "err", err)
		return
	}
	if err := p.s.cfg.Transport.Publish(p.s.cfg.Topics.Desired(d.ID), b, true, 1); err != nil {
		p.s.log.Warn("publish desired", "device", d.ID, "err", err)
		return
	}
	p.s.m.desired.Inc()
	p.mu.Lock()
	p.published[d.ID] = publishedDesired{rev: d.DesiredRev, root: cur.RootVersion, refresh: now.Add(p.ttl / 2)}
	p.mu.Unlock()
}

// BuildDesired renders a device's desired state as the wire message and signs it with the
// cluster's current online key for the time from now to now+ttl: per model the version, its
// manifest digest, approval signature and legacy manifest signature (for agents of the
// previous release, wire.DesiredModel.LegacySignature), and the digests of the training data's contract and
// reference profile (from the first trained_on dataset version); and the root documents after
// version 1, so an agent enrolled with an older root learns the current key set; and the
// deprecated versions of its models (the revocation list).
//
// A version approved before approvals were bound (or whose approval key was since retired)
// has no approval signature the agents accept: it is signed here with the current key, as TUF
// re-signs targets metadata after a key rotation. A deprecated version is never signed again.
func BuildDesired(r state.Reader, d state.Device, cur keys.Current, now time.Time, ttl time.Duration) (wire.Desired, error) {
	msg := wire.Desired{Header: wire.Header{DeviceID: d.ID, TS: now.UnixMilli()}, Rev: uint64(d.DesiredRev), Models: []wire.DesiredModel{},
		IssuedAt: now.UnixMilli(), Expires: now.Add(ttl).UnixMilli(), Roots: cur.Roots}
	names := make([]string, 0, len(d.Desired))
	for n := range d.Desired {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		want := d.Desired[name]
		mv, err := r.ModelVersion(name, want.Version)
		if err != nil {
			return msg, err
		}
		a, err := r.ApprovalOf(mv)
		if err != nil {
			return msg, err
		}
		sig, ok := state.ApprovalSignature(mv, a, cur.Online)
		if !ok && mv.Status == state.StatusApproved {
			sig = artifact.SignApproval(cur.Key, a)
		}
		// A deprecated version without a current approval goes out unsigned: a device already
		// running it keeps it, no device starts it.
		revoked, err := r.Revoked(name)
		if err != nil {
			return msg, err
		}
		for _, v := range revoked {
			msg.Revoked = append(msg.Revoked, wire.VersionRef(name, v))
		}
		// The legacy signature (a node key's over the manifest bytes, stored at approval) goes
		// out as the previous release sent it: agents of that release verify it, not the
		// approval signature.
		legacy, _ := state.LegacySignature(mv)
		msg.Models = append(msg.Models, wire.DesiredModel{
			Name: name, Version: mv.Version, ManifestDigest: mv.ManifestDigest, Size: mv.Size, RolloutID: want.RolloutID,
			LegacySignature: legacy, ApprovalSignature: sig, ContractDigest: a.ContractDigest, ProfileDigest: a.ProfileDigest,
			Dataset: a.Dataset, DatasetVersion: a.DatasetVersion, OutputDigest: outputDigest(mv),
		})
	}
	msg.Sign(cur.Key)
	return msg, nil
}

// outputDigest names a model version's output reference, "" when it has none.
func outputDigest(mv state.ModelVersion) string {
	if mv.Output == nil {
		return ""
	}
	return mv.Output.Digest
}
