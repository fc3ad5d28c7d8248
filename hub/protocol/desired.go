package protocol

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/wire"
)

// devicePrefix is where the FSM keeps devices (hub/state key layout).
const devicePrefix = "fsm/dev/"

// desiredPublisher keeps every device's retained desired message equal to the FSM. It watches
// the node's database for writes under the device prefix (badger's Subscribe), so it reacts to
// changes however they were made (API, rollout controller, a snapshot restore) and on every node.
// It publishes a device only when its desired revision moved.
type desiredPublisher struct {
	s      *Service
	mu     sync.Mutex
	dirty  map[string]bool
	signal chan struct{}
	// published is the last desired rev published per device (0: cleared or never).
	published map[string]int64
}

func newDesiredPublisher(s *Service) *desiredPublisher {
	return &desiredPublisher{s: s, dirty: map[string]bool{}, signal: make(chan struct{}, 1), published: map[string]int64{}}
}

func (p *desiredPublisher) notify(id string) {
	p.mu.Lock()
	p.dirty[id] = true
	p.mu.Unlock()
	select {
	case p.signal <- struct{}{}:
	default:
	}
}

func (p *desiredPublisher) run(ctx context.Context) {
	go p.s.watchPrefix(ctx, devicePrefix, p.notify)
	p.publishAll(false)
	// A periodic pass repairs what a failed publish or a broker restart lost, for the devices
	// that have not acted on their desired revision yet: one that has reported it holds it.
	repair := time.NewTicker(time.Minute)
	defer repair.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-repair.C:
			p.publishAll(true)
		case <-p.signal:
			p.mu.Lock()
			ids := make([]string, 0, len(p.dirty))
			for id := range p.dirty {
				ids = append(ids, id)
			}
			p.dirty = map[string]bool{}
			p.mu.Unlock()
			sort.Strings(ids)
			for _, id := range ids {
				p.publish(id)
			}
		}
	}
}

// publishAll publishes every device's desired state that was not published at its revision yet;
// with repair, it publishes again those whose agents have not reported acting on it.
func (p *desiredPublisher) publishAll(repair bool) {
	cursor := ""
	for {
		page, err := p.s.cfg.Reader.Devices(nil, cursor, state.MaxLimit)
		if err != nil {
			p.s.log.Error("list devices for desired publish", "err", err)
			return
		}
		for _, d := range page.Items {
			if repair && unacknowledged(d) {
				p.forget(d.ID)
			}
			p.publishDevice(d)
		}
		if page.NextCursor == nil {
			return
		}
		cursor = *page.NextCursor
	}
}

func (p *desiredPublisher) publish(id string) {
	d, err := p.s.cfg.Reader.Device(id)
	if errors.Is(err, state.ErrNotFound) {
		if p.s.cfg.OnDeviceRemoved != nil {
			p.s.cfg.OnDeviceRemoved(id)
		}
		p.mu.Lock()
		had := p.published[id] != 0
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
	p.mu.Lock()
	same := p.published[d.ID] == d.DesiredRev
	p.mu.Unlock()
	if same {
		return
	}
	msg, err := BuildDesired(p.s.cfg.Reader, d, time.Now().UnixMilli())
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
	p.published[d.ID] = d.DesiredRev
	p.mu.Unlock()
}

// BuildDesired renders a device's desired state as the wire message: per model the version,
// its manifest digest and signature, and the digests of the training data's contract and
// reference profile (from the first trained_on dataset version).
func BuildDesired(r state.Reader, d state.Device, now int64) (wire.Desired, error) {
	msg := wire.Desired{Header: wire.Header{DeviceID: d.ID, TS: now}, Rev: uint64(d.DesiredRev), Models: []wire.DesiredModel{}}
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
		dm := wire.DesiredModel{
			Name: name, Version: mv.Version, ManifestDigest: mv.ManifestDigest, Size: mv.Size, RolloutID: want.RolloutID,
		}
		if mv.Output != nil {
			dm.OutputDigest = mv.Output.Digest
		}
		if n := len(mv.Signatures); n > 0 {
			dm.Signature = artifact.Signature{KeyID: mv.Signatures[n-1].KeyID, Sig: mv.Signatures[n-1].Sig}
		}
		if len(mv.TrainedOn) > 0 {
			t := mv.TrainedOn[0]
			dv, err := r.DatasetVersion(t.Dataset, t.Version)
			if err != nil && !errors.Is(err, state.ErrNotFound) {
				return msg, err
			}
			if err == nil {
				dm.Dataset, dm.DatasetVersion = t.Dataset, t.Version
				dm.ContractDigest, dm.ProfileDigest = dv.ContractHash, dv.ProfileDigest
			}
		}
		msg.Models = append(msg.Models, dm)
	}
	return msg, nil
}
