package protocol

import (
	"context"
	"time"

	"github.com/driftline/driftline/shared/wire"
)

// ackPublisher tells agents which numbered reports the hub has stored (wire.Ack on
// PREFIX/dev/{id}/ack), so that their outboxes forget them only then: a broker's PUBACK is not
// the hub's receipt. The change feed tells it of stored report cursors (state.ChangeReports), so
// it runs on every node and answers
// whatever node's batch stored the reports; every write of a cursor (a batch with any numbered
// report of the device, repeats included) is acknowledged again, so a lost ack is repaired by
// the agent's next resend.
type ackPublisher struct {
	s     *Service
	dirty *dirtySet
}

func newAckPublisher(s *Service) *ackPublisher {
	return &ackPublisher{s: s, dirty: newDirtySet()}
}

func (p *ackPublisher) notify(id string) { p.dirty.mark(id) }

func (p *ackPublisher) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.dirty.signal:
		}
		for _, id := range p.dirty.take() {
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
