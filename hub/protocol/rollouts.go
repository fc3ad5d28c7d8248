package protocol

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4/pb"

	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/wire"
)

// rolloutPrefix is where the FSM keeps rollouts (hub/state key layout).
const rolloutPrefix = "fsm/ro/"

// runRolloutPublisher keeps the retained PREFIX/fleet/rollouts/{id} message equal to each
// rollout's replicated state, for dashboards.
func (s *Service) runRolloutPublisher(ctx context.Context) {
	dirty := make(chan string, 1024)
	go s.watchPrefix(ctx, rolloutPrefix, func(id string) {
		select {
		case dirty <- id:
		default: // the next full pass catches up
		}
	})
	full := time.NewTicker(time.Minute)
	defer full.Stop()
	s.publishAllRollouts()
	for {
		select {
		case <-ctx.Done():
			return
		case <-full.C:
			s.publishAllRollouts()
		case id := <-dirty:
			if r, err := s.cfg.Reader.Rollout(id); err == nil {
				s.publishRollout(r)
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

// watchPrefix calls changed with the rest of every key written under prefix in the node's
// database (badger's Subscribe), until ctx ends. changed must not block.
func (s *Service) watchPrefix(ctx context.Context, prefix string, changed func(rest string)) {
	err := s.cfg.DB.Subscribe(ctx, func(kvs *pb.KVList) error {
		for _, kv := range kvs.Kv {
			if rest, ok := strings.CutPrefix(string(kv.Key), prefix); ok {
				changed(rest)
			}
		}
		return nil
	}, []pb.Match{{Prefix: []byte(prefix)}})
	if err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
		s.log.Error("watch state", "prefix", prefix, "err", err)
	}
}
