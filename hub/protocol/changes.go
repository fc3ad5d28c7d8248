package protocol

import (
	"context"

	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/store"
)

// watchChanges hands the state machine's change feed to the publishers until ctx ends: a desired
// state or a removed device to the desired publisher, a changed key set or a reset (a snapshot
// restore, the subscription's start) to its full pass, a rollout to the rollout publisher, a
// stored report cursor to the acknowledgements. A device's status (telemetry) wakes nobody: its
// presence after the change is noted for the heartbeats (telemetry.replicated).
func (s *Service) watchChanges(ctx context.Context, sub *store.Subscription) {
	defer sub.Close()
	started := false // the subscription's first change is a reset: its start, not a restore
	for {
		cs, err := sub.Next(ctx)
		if err != nil {
			return
		}
		for _, c := range cs {
			if c.Reset {
				if started {
					s.tele.reset()
				}
				started = true
				s.desired.all()
				signal(s.rolloutsAll)
				continue
			}
			started = true
			ch, ok := c.Event.(state.Change)
			if !ok {
				continue
			}
			switch ch.Kind {
			case state.ChangeDesired:
				s.desired.notify(ch.Device)
			case state.ChangeDeviceRemoved:
				s.tele.forget(ch.Device)
				s.desired.notify(ch.Device)
			case state.ChangeStatus:
				s.tele.replicated(ch.Device, ch.Online, ch.LastSeen)
			case state.ChangeKeys:
				s.desired.all()
			case state.ChangeRollout:
				s.rollouts.mark(ch.Rollout)
			case state.ChangeReports:
				s.acks.notify(ch.Device)
			}
		}
	}
}

// signal wakes whoever waits on c (capacity 1) unless a wake-up is pending.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
