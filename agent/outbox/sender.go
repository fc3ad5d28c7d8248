package outbox

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/driftline/driftline/agent/state"
)

// Run publishes queued reports through pub, oldest first, until ctx is done; it then returns
// ctx.Err(). A report is deleted only after pub.Publish returned nil for it; a failed publish
// is retried with backoff before any later report is tried. Reports older than MaxAge are dropped
// instead of sent, and corrupt records are dropped, counted and logged. Run returns another error
// only when the state database fails.
func (o *Outbox) Run(ctx context.Context, pub Publisher) error {
	if !o.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer o.running.Store(false)
	backoff := time.Duration(0)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		r, ok, err := o.next()
		if err != nil {
			return err
		}
		if !ok {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-o.wake:
			}
			continue
		}
		err = pub.Publish(ctx, r.topic, r.payload, r.qos, r.retain)
		if err != nil {
			o.clearInflight()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			backoff = o.nextBackoff(backoff)
			o.log.Info("publish failed, will retry", "topic", r.topic, "seq", r.seq, "retry_in", backoff, "err", err)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			continue
		}
		backoff = 0
		if err := o.ack(r.seq); err != nil {
			return err
		}
	}
}

// nextBackoff doubles the previous wait within [RetryMin, RetryMax], with up to 20% jitter.
func (o *Outbox) nextBackoff(prev time.Duration) time.Duration {
	d := min(max(prev*2, o.opts.RetryMin), o.opts.RetryMax)
	return d - time.Duration(rand.Int64N(int64(d)/5+1))
}

// next returns the oldest deliverable report and marks it in flight, dropping expired and corrupt
// records it meets on the way. ok is false when the queue is empty.
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
		err := o.ns.IterateFrom(seqKey(o.head), func(k, v []byte) error {
			if len(k) != 8 {
				return nil
			}
			found = true
			key = append([]byte(nil), k...)
			size = recordSize(int64(len(v)))
			r, decErr = decodeRecord(v)
			return state.ErrStop
		})
		if err != nil {
			return record{}, false, fmt.Errorf("read outbox head: %w", err)
		}
		if !found {
			return record{}, false, nil
		}
		seq := binary.BigEndian.Uint64(key)
		o.head = seq
		reason := ""
		switch {
		case decErr != nil:
			reason = ReasonCorrupt
		case r.at.Before(cutoff):
			reason = ReasonAge
		}
		if reason == "" {
			r.seq = seq
			o.inflight = seq
			return r, true, nil
		}
		if err := o.ns.Delete(key); err != nil {
			return record{}, false, fmt.Errorf("drop report %d: %w", seq, err)
		}
		o.countDropLocked(reason, size, seq, decErr)
		o.head = seq + 1
	}
}

func (o *Outbox) clearInflight() {
	o.mu.Lock()
	o.inflight = 0
	o.mu.Unlock()
}

// ack deletes the acknowledged report seq.
func (o *Outbox) ack(seq uint64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.inflight = 0
	o.head = seq + 1
	key := seqKey(seq)
	var size int64 = -1
	err := o.ns.Update(func(tx *state.Txn) error {
		v, err := tx.Get(key)
		if err != nil {
			return err
		}
		size = recordSize(int64(len(v)))
		return tx.Delete(key)
	})
	if err != nil {
		return fmt.Errorf("delete acknowledged report %d: %w", seq, err)
	}
	o.depth--
	o.bytes -= size
	o.sent++
	o.publishGauges()
	return nil
}
