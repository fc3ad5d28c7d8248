// Package publish plays simulated device streams in real time: Play paces one stream against
// the wall clock and hands each message to a Device, and the MQTT Device publishes it on the
// device's data topic with paho, connected as that device.
package publish

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/driftline/driftline/firmware-sim/sim"
)

// Device is where a played stream goes: an MQTT connection, or an agent's ingest path in fleet
// mode. Play calls it from one goroutine.
type Device interface {
	// Send delivers one message; an error is counted, not fatal.
	Send(ctx context.Context, m sim.Message) error
	// Disconnect drops the connection for a disconnect event.
	Disconnect()
	// Connect (re)connects after a disconnect event; it returns when connected or ctx ends.
	Connect(ctx context.Context) error
}

// Stats are counters shared by every played device; safe for concurrent use.
type Stats struct {
	// Messages counts messages delivered, Rows the rows in them, Bytes their payload bytes.
	Messages, Rows, Bytes atomic.Int64
	// Malformed counts deliberately broken payloads delivered (also in Messages).
	Malformed atomic.Int64
	// Failed counts messages whose Send failed.
	Failed atomic.Int64
	// Disconnects counts disconnect events played; Online is devices connected now.
	Disconnects, Online atomic.Int64
}

// Play sends st's messages to d, each at start + its due time, until the stream ends or ctx
// does. At a disconnect window it disconnects d at the window's start and reconnects at its
// end. It does not connect d first: the caller does, and counts it in stats.Online; Play
// leaves stats.Online as it found it when it returns.
func Play(ctx context.Context, st *sim.Stream, start time.Time, d Device, stats *Stats) error {
	windows := st.Disconnects()
	offline := false
	defer func() {
		if offline {
			stats.Online.Add(1)
		}
	}()
	for {
		m, ok := st.Next()
		if !ok {
			return nil
		}
		for len(windows) > 0 && windows[0].From <= m.At {
			w := windows[0]
			windows = windows[1:]
			if err := sleepUntil(ctx, start.Add(w.From)); err != nil {
				return err
			}
			d.Disconnect()
			offline = true
			stats.Online.Add(-1)
			stats.Disconnects.Add(1)
			if err := sleepUntil(ctx, start.Add(w.To)); err != nil {
				return err
			}
			if err := d.Connect(ctx); err != nil {
				return err
			}
			offline = false
			stats.Online.Add(1)
		}
		if err := sleepUntil(ctx, start.Add(m.At)); err != nil {
			return err
		}
		if err := d.Send(ctx, m); err != nil {
			stats.Failed.Add(1)
			continue
		}
		stats.Messages.Add(1)
		stats.Rows.Add(int64(len(m.Rows)))
		stats.Bytes.Add(int64(len(m.Payload)))
		if m.Malformed {
			stats.Malformed.Add(1)
		}
	}
}

// sleepUntil waits for t or ctx, whichever comes first.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
