package outbox

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/shared/wire"
)

// Run publishes queued reports through pub, oldest first, until ctx is done; it then returns
// ctx.Err(). A report is deleted only after pub.Publish returned nil for it (a numbered report,
// once the hub waits are on, only after HubAck); a failed publish is retried with backoff before
// any later report is tried. When pub is also a Connection, each publish waits for the
// connection first, and a failure because the connection went down is retried, unlogged, once
// it is back. Reports older than MaxAge are dropped instead of sent, and corrupt records are
// dropped, counted and logged. Run returns another error only when the state database fails.
func (o *Outbox) Run(ctx context.Context, pub Publisher) error {
	if !o.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer o.running.Store(false)
	link, _ := pub.(Connection)
	backoff := time.Duration(0)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if link != nil {
			if err := link.WaitConnected(ctx); err != nil {
				return err
			}
		}
		o.resendIfStale()
		r, ok, err := o.next()
		if err != nil {
			return err
		}
		if !ok {
			var timeout <-chan time.Time
			var t *time.Timer
			if d, waiting := o.resendIn(); waiting {
				t = time.NewTimer(d)
				timeout = t.C
			}
			select {
			case <-ctx.Done():
			case <-o.wake:
			case <-timeout:
			}
			if t != nil {
				t.Stop()
			}
			continue
		}
		payload := r.payload
		if r.num > 0 {
			if p, err := wire.StampSeq(payload, o.seqOf(r)); err == nil {
				payload = p
			} else {
				o.log.Warn("numbered report not stamped", "seq", r.seq, "err", err)
			}
		}
		err = pub.Publish(ctx, r.topic, payload, r.qos, r.retain)
		if err != nil {
			o.clearInflight()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			wait := o.nextBackoff(backoff)
			if link != nil && !link.Connected() {
				// The connection went down: the next attempt waits for it (above). The short
				// wait only keeps a connection that reports up while it is already failing from
				// spinning the loop. The connection's owner logs the outage.
				wait = o.nextBackoff(0)
				o.log.Debug("publish failed, connection down; waiting for it", "topic", r.topic, "seq", r.seq, "err", err)
			} else {
				backoff = wait
				o.log.Info("publish failed, will retry", "topic", r.topic, "seq", r.seq, "retry_in", wait, "err", err)
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			continue
		}
		backoff = 0
		if err := o.sent1(r); err != nil {
			return err
		}
	}
}

// seqOf returns the number stamped into numbered report r: its number, the epoch, and the
// oldest number the outbox still holds (the hub need not wait for anything below).
func (o *Outbox) seqOf(r record) wire.ReportSeq {
	o.mu.Lock()
	defer o.mu.Unlock()
	first := r.num
	_ = o.ns.IterateFrom(seqKey(o.head), func(k, v []byte) error {
		if len(k) != 8 {
			return nil
		}
		if h, _, err := decodeHeader(v); err == nil && h.num > 0 {
			first = min(first, h.num)
			return devicedb.ErrStop
		}
		return nil
	})
	return wire.ReportSeq{Seq: r.num, Epoch: o.epoch, First: first}
}

// resendIfStale rewinds when numbered reports have waited ResendAfter for the hub, the hub
// acknowledging nothing meanwhile.
func (o *Outbox) resendIfStale() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.awaitHub && o.sendFrom > o.head && o.opts.Now().Sub(o.lastProgress) >= o.opts.ResendAfter {
		o.log.Info("the hub acknowledged nothing for a while: sending unacknowledged reports again", "after", o.opts.ResendAfter)
		o.rewindLocked()
	}
}

// resendIn says whether sent numbered reports wait for the hub, and how long until they are
// sent again.
func (o *Outbox) resendIn() (time.Duration, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.awaitHub || o.sendFrom <= o.head {
		return 0, false
	}
	return max(o.opts.ResendAfter-o.opts.Now().Sub(o.lastProgress), time.Millisecond), true
}

// nextBackoff doubles the previous wait within [RetryMin, RetryMax], with up to 20% jitter.
func (o *Outbox) nextBackoff(prev time.Duration) time.Duration {
	d := min(max(prev*2, o.opts.RetryMin), o.opts.RetryMax)
	return d - time.Duration(rand.Int64N(int64(d)/5+1))
}

// next returns the oldest report not sent yet (from sendFrom) and marks it in flight, dropping
// expired and corrupt records it meets on the way. ok is false when there is none.
func (o *Outbox) next() (record, bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	cutoff := o.opts.Now().Add(-o.opts.MaxAge)
	for {
		var (
			found  bool
			r      record
			key    []byte
			size   int64
			decErr error
		)
		from := max(o.head, o.sendFrom)
		atHead := from == o.head
		err := o.ns.IterateFrom(seqKey(from), func(k, v []byte) error {
			if len(k) != 8 {
				return nil
			}
			found = true
			key = append([]byte(nil), k...)
			size = recordSize(int64(len(v)))
			r, decErr = decodeRecord(v)
			return devicedb.ErrStop
		})
		if err != nil {
			return record{}, false, fmt.Errorf("read outbox head: %w", err)
		}
		if !found {
			return record{}, false, nil
		}
		seq := binary.BigEndian.Uint64(key)
		if atHead {
			o.head = seq
		}
		reason := ""
		switch {
		case decErr != nil:
			reason = ReasonCorrupt
		case r.at.Before(cutoff):
			reason = ReasonAge
		}
		if reason == "" {
			r.seq = seq
			r.rewinds = o.rewinds
			o.inflight = seq
			return r, true, nil
		}
		if err := o.ns.Delete(key); err != nil {
			return record{}, false, fmt.Errorf("drop report %d: %w", seq, err)
		}
		o.countDropLocked(reason, size, seq, decErr)
		if atHead {
			o.head = seq + 1
		} else {
			o.sendFrom = seq + 1
		}
	}
}

func (o *Outbox) clearInflight() {
	o.mu.Lock()
	o.inflight = 0
	o.mu.Unlock()
}

// sent1 records that the broker acknowledged r: a numbered report waiting for the hub is kept
// (the sender moves past it), anything else is deleted.
func (o *Outbox) sent1(r record) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.inflight = 0
	if o.rewinds == r.rewinds {
		if o.sendFrom <= o.head {
			o.lastProgress = o.opts.Now() // the first report to wait: its wait starts now
		}
		o.sendFrom = r.seq + 1
	}
	if r.num > 0 && o.awaitHub {
		return nil
	}
	key := seqKey(r.seq)
	var size int64 = -1
	err := o.ns.Update(func(tx *devicedb.Txn) error {
		v, err := tx.Get(key)
		if err != nil {
			return err
		}
		size = recordSize(int64(len(v)))
		return tx.Delete(key)
	})
	if errors.Is(err, devicedb.ErrNotFound) {
		return nil // the hub's acknowledgement came first
	}
	if err != nil {
		return fmt.Errorf("delete acknowledged report %d: %w", r.seq, err)
	}
	if o.head == r.seq {
		o.head = r.seq + 1
	}
	o.depth--
	o.bytes -= size
	o.sent++
	o.publishGauges()
	return nil
}
