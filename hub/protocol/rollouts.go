package protocol

import (
	"context"
	"time"

	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/wire"
)

// runRolloutPublisher keeps the retained PREFIX/fleet/rollouts/{id} message equal to each
// rollout's replicated state, for dashboards: the rollouts the change feed names (s.rollouts),
// every rollout after a feed reset (s.rolloutsAll), and every minute as a repair.
func (s *Service) runRolloutPublisher(ctx context.Context) {
	full := time.NewTicker(time.Minute)
	defer full.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-full.C:
			s.publishAllRollouts()
		case <-s.rolloutsAll:
			s.publishAllRollouts()
		case <-s.rollouts.signal:
			for _, id := range s.rollouts.take() {
				if r, err := s.cfg.Reader.Rollout(id); err == nil {
					s.publishRollout(r)
				}
			}
		}
	}
}

func (s *Service) publishAllRollouts() {
	cursor := ""
	for {
		page, err := s.cfg.Reader.Rollouts(cursor, state.MaxLimit)
		if err != nil {
			return
		}
		for _, r := range page.Items {
			s.publishRollout(r)
		}
		if page.NextCursor == nil {
			return
		}
		cursor = *page.NextCursor
	}
}

// FleetRollout renders a rollout as the retained fleet progress message.
func FleetRollout(r state.Rollout, now int64) wire.FleetRollout {
	msg := wire.FleetRollout{
		TS: now, RolloutID: r.ID, Model: r.Model, Version: r.Version, State: r.State, Wave: r.Wave,
		Waves: r.Waves(), Reason: r.Reason, Total: int64(r.Total), Devices: map[wire.State]int64{}, Gates: map[string]wire.Gate{},
	}
	for _, st := range wire.States {
		msg.Devices[st] = int64(r.Counts[string(st)])
	}
	for k, g := range r.GateValues {
		msg.Gates[k] = wire.Gate{Value: g.Value, Threshold: g.Threshold, Failed: g.Failed}
	}
	return msg
}

func (s *Service) publishRollout(r state.Rollout) {
	b, err := wire.Encode(FleetRollout(r, time.Now().UnixMilli()))
	if err != nil {
		s.log.Error("encode fleet rollout", "rollout", r.ID, "err", err)
		return
	}
	if err := s.cfg.Transport.Publish(s.cfg.Topics.FleetRollout(r.ID), b, true, 1); err != nil {
		s.log.Warn("publish fleet rollout", "rollout", r.ID, "err", err)
	}
}
