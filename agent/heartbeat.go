package agent

import (
	"context"
	"errors"
	"time"

	"github.com/driftline/driftline/shared/wire"
)

// PipelineStats are the data pipeline's counters the heartbeat carries.
type PipelineStats struct {
	// RecordsSeen and RecordsInvalid count input rows since start.
	RecordsSeen, RecordsInvalid int64
	// QuarantineDepth is the number of rows held in quarantine.
	QuarantineDepth int64
}

// loop is the agent's housekeeping goroutine, one for what needs no goroutine of its own: a
// heartbeat every cfg.Heartbeat, the hub's acknowledgements of numbered reports (to the
// outbox), the data topic's messages (in order, to the extensions that provide EventData), and
// every ExtensionTick the Tick of the extensions that provide EventTick, whose Flush it calls
// when ctx ends. Each of these was a goroutine of its own (four or five per device: 50,000 in
// a fleet process of 10,000 agents); none of them waits on the network.
func (a *Agent) loop(ctx context.Context) {
	var data, tickers []Extension
	for _, x := range a.exts {
		if x.Provides(EventData) {
			data = append(data, x)
		}
		if x.Provides(EventTick) {
			tickers = append(tickers, x)
		}
	}
	hb := time.NewTicker(a.cfg.Heartbeat.D())
	defer hb.Stop()
	var tickC <-chan time.Time
	if len(tickers) > 0 {
		t := time.NewTicker(ExtensionTick)
		defer t.Stop()
		tickC = t.C
	}
	var dataReady <-chan struct{}
	if a.conn.wantData {
		dataReady = a.conn.data.Ready()
	}
	last, lastAt := processStats(), time.Now()
	for {
		select {
		case <-ctx.Done():
			for _, x := range tickers {
				x.Flush()
			}
			return
		case now := <-hb.C:
			ps := processStats()
			cpu := 0.0
			if dt := now.Sub(lastAt).Seconds(); dt > 0 && ps.CPUSeconds >= last.CPUSeconds {
				cpu = (ps.CPUSeconds - last.CPUSeconds) / dt * 100
			}
			last, lastAt = ps, now
			if err := a.heartbeat(now, ps, cpu); err != nil {
				a.log.Warn("heartbeat not queued", "err", err)
			}
		case b := <-a.conn.acks:
			a.ack(b)
		case <-dataReady:
			if b, ok := a.conn.data.Pop(); ok {
				for _, x := range data {
					x.OnData(b)
				}
			}
		case <-tickC:
			for _, x := range tickers {
				x.Tick()
			}
		}
	}
}

func (a *Agent) heartbeat(now time.Time, ps procStats, cpu float64) error {
	st := a.out.Stats()
	var dropped int64
	for _, n := range st.Dropped {
		dropped += int64(n)
	}
	hb := wire.Heartbeat{
		Header:  wire.Header{DeviceID: a.cfg.DeviceID, TS: now.UnixMilli()},
		UptimeS: int64(now.Sub(a.started).Seconds()), AgentVersion: Version,
		ActiveModels: a.rec.ActiveNames(), BufferDepth: int64(st.Depth), BufferBytes: st.Bytes,
		BufferDropped: dropped, CPU: cpu, RSS: ps.RSS,
	}
	hb.DesiredStale, hb.DesiredExpires = a.trust.stale(now)
	if hb.DesiredStale {
		a.log.Warn("no valid desired state heard since the last one expired: the hub's feed may be frozen; running what is active",
			"expired_at", time.UnixMilli(hb.DesiredExpires).UTC())
	}
	rootErr := a.trust.rootExpiry(now)
	hb.RootExpired = rootErr != nil
	if hb.RootExpired && !a.reportedRootExpired {
		a.log.Warn("the root of trust expired: desired states are refused until the hub sends a renewed root (driftline key rotate); running what is active",
			"err", rootErr)
	}
	if hb.DesiredStale != a.reportedStale || hb.RootExpired != a.reportedRootExpired { // the retained reported state says so too
		a.reportedStale, a.reportedRootExpired = hb.DesiredStale, hb.RootExpired
		a.report()
	}
	if p, ok := a.extensionStats(); ok {
		hb.RecordsSeen, hb.RecordsInvalid, hb.QuarantineDepth = p.RecordsSeen, p.RecordsInvalid, p.QuarantineDepth
	}
	b, err := wire.Encode(hb)
	if err != nil {
		return err
	}
	// A heartbeat says the device is alive now: it goes straight out at its QoS 0, never
	// through the durable outbox (two database commits each, and late heartbeats replayed after
	// an outage say nothing). While disconnected it is skipped.
	if err := a.conn.Send(a.topics.Heartbeat(a.cfg.DeviceID), b, wire.KindHeartbeat.QoS()); err != nil && !errors.Is(err, ErrNotConnected) {
		return err
	}
	return nil
}
