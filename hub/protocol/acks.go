package protocol

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/wire"
)

// ackPublisher tells agents which numbered reports the hub has stored (wire.Ack on
// PREFIX/dev/{id}/ack), so that their outboxes forget them only then: a broker's PUBACK is not
// the hub's receipt. It watches the FSM's report cursors, so it runs on every node and answers
// whatever node's batch stored the reports; every write of a cursor (a batch with any numbered
// report of the device, repeats included) is acknowledged again, so a lost ack is repaired by
// the agent's next resend.
type ackPublisher struct {
	s      *Service
	mu     sync.Mutex
	dirty  map[string]bool
	signal chan struct{}
}

func newAckPublisher(s *Service) *ackPublisher {
	return &ackPublisher{s: s, dirty: map[string]bool{}, signal: make(chan struct{}, 1)}
}

func (p *ackPublisher) notify(id string) {
	p.mu.Lock()
	p.dirty[id] = true
	p.mu.Unlock()
	select {
	case p.signal <- struct{}{}:
	default:
	}
}

func (p *ackPublisher) run(ctx context.Context) {
	go p.s.watchPrefix(ctx, state.ReportCursorPrefix, p.notify)
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.signal:
		}
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

func (p *ackPublisher) publish(id string) {
	c, err := p.s.cfg.Reader.ReportCursor(id)
	if err != nil {
		p.s.log.Error("read report cursor", "device", id, "err", err)
		return
	}
	if c.Epoch == 0 {
		return // deleted, or never numbered
	}
	b, err := wire.Encode(wire.Ack{Header: wire.Header{DeviceID: id, TS: time.Now().UnixMilli()}, Epoch: c.Epoch, Seq: c.Through, Gap: c.Gap()})
	if err != nil {
		p.s.log.Error("encode ack", "device", id, "err", err)
		return
	}
	if err := p.s.cfg.Transport.Publish(p.s.cfg.Topics.Ack(id), b, false, 1); err != nil {
		p.s.log.Warn("publish ack", "device", id, "err", err)
		return
	}
	p.s.m.acks.Inc()
}
