// Package outbox is the agent's store-and-forward queue of outgoing MQTT reports.
//
// Enqueue persists a report (zstd-compressed, under a monotonic sequence key in the agent's state
// namespace) and returns; Run publishes the queued reports oldest first through a Publisher. A
// failed publish is retried, with exponential backoff, before anything younger is sent, so order
// is kept. The queue is bounded by stored bytes and by age: to make room, or when a report is
// older than MaxAge, the oldest reports are dropped and counted.
//
// A report is deleted once it is delivered. For most reports that is the broker's
// acknowledgement. Numbered reports (Options.Numbered: the ones the hub stores) carry a
// wire.ReportSeq, and once the hub has acknowledged any (HubAck, the hub's wire.Ack) they are
// kept after the broker's acknowledgement until the hub's says it stored them: a broker can
// accept a message and lose it (restarted, or nobody subscribed). Unacknowledged numbered reports
// are sent again, in order, after Rewind (the agent calls it on every reconnect), when the hub
// reports a gap, and when the hub has acknowledged nothing for ResendAfter. Delivery is at least
// once; the hub counts each numbered report once.
package outbox

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/shared/wire"
	"github.com/driftline/driftline/shared/zstdx"
)

// MaxPayload is the largest report payload Enqueue accepts (the shared zstd decoder's limit).
const MaxPayload = zstdx.MaxDecoded

var (
	// ErrTooLarge is returned by Enqueue for a report that could never fit the bounds.
	ErrTooLarge = errors.New("outbox: report too large")
	// ErrBadReport is returned by Enqueue for a report that cannot be stored (topic empty or
	// over 65,535 bytes, QoS over 2).
	ErrBadReport = errors.New("outbox: bad report")
	// ErrCorrupt marks a stored record that cannot be decoded; Run drops such records.
	ErrCorrupt = errors.New("outbox: corrupt record")
	// ErrRunning is returned by Run when another Run of the same Outbox is active.
	ErrRunning = errors.New("outbox: already running")
)

// Publisher sends one report to the broker. Publish must return nil only once the broker has
// acknowledged the message (the PUBACK for QoS 1; for QoS 0, once it is written to the
// connection), and must return when ctx is done. It is called from one goroutine at a time.
type Publisher interface {
	Publish(ctx context.Context, topic string, payload []byte, qos byte, retain bool) error
}

// Connection is implemented by a Publisher that knows whether its connection is up. Run then
// waits for the connection before each publish instead of trying, failing and logging every
// attempt while it is down (a refused token, an unreachable broker): the connection's owner
// tells the outage, once. A publish that fails while Connected is false is not logged.
type Connection interface {
	// WaitConnected returns nil once the connection is up (at once if it is), or ctx.Err().
	WaitConnected(ctx context.Context) error
	// Connected reports whether the connection is up now.
	Connected() bool
}

// Options bound and tune an Outbox. Zero values take the defaults.
type Options struct {
	// MaxBytes bounds the stored size of all queued reports (default 64 MiB).
	MaxBytes int64
	// MaxAge drops reports older than this instead of sending them (default 7 days).
	MaxAge time.Duration
	// RetryMin and RetryMax bound the backoff between failed publishes (default 250 ms, 30 s).
	RetryMin, RetryMax time.Duration
	// Logger receives drops, corrupt records and publish failures (default slog.Default()).
	Logger *slog.Logger
	// Registerer, when set, receives the MetricDropped, MetricDepth and MetricBytes collectors.
	// Several outboxes in one process need distinct wrappers (prometheus.WrapRegistererWith).
	Registerer prometheus.Registerer
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time
	// Numbered says, by topic, which reports are numbered for the hub's acknowledgement (only
	// JSON objects can be: others are sent unnumbered). nil numbers none.
	Numbered func(topic string) bool
	// ResendAfter is how long numbered reports wait for the hub's acknowledgement, the hub
	// acknowledging nothing meanwhile, before they are sent again (default 10 s). GapWait is the
	// least time between two resends for a gap the hub reported (default 2 s).
	ResendAfter, GapWait time.Duration
}

func (o *Options) defaults() {
	if o.MaxBytes <= 0 {
		o.MaxBytes = 64 << 20
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 7 * 24 * time.Hour
	}
	if o.RetryMin <= 0 {
		o.RetryMin = 250 * time.Millisecond
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 30 * time.Second
	}
	o.RetryMax = max(o.RetryMax, o.RetryMin)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ResendAfter <= 0 {
		o.ResendAfter = 10 * time.Second
	}
	if o.GapWait <= 0 {
		o.GapWait = 2 * time.Second
	}
}

// Keys of the outbox's own settings beside the records (never 8 bytes long, so the record scans
// skip them).
var (
	keyEpoch   = []byte("epoch")   // the numbering epoch, 8 bytes big endian
	keyHubAcks = []byte("hubacks") // present once the hub has acknowledged a numbered report
)

// Stats is a snapshot of the queue.
type Stats struct {
	// Depth is the number of queued reports; Bytes their stored size.
	Depth int
	Bytes int64
	// Dropped counts reports dropped since Open, by reason (ReasonSize, ReasonAge, ReasonCorrupt).
	Dropped map[string]uint64
	// Sent counts reports acknowledged and deleted since Open.
	Sent uint64
	// Epoch is the numbering epoch of numbered reports; NextNumber the number the next one gets.
	Epoch, NextNumber uint64
	// AwaitHub says numbered reports are kept until the hub acknowledges them.
	AwaitHub bool
	// Resends counts rewinds that sent numbered reports again since Open.
	Resends uint64
}

// Outbox is a persistent FIFO of reports. Enqueue and Stats are safe for concurrent use; Run
// runs once at a time.
type Outbox struct {
	ns      devicedb.Namespace
	opts    Options
	log     *slog.Logger
	metrics *metrics
	wake    chan struct{}
	running atomic.Bool
	// stats is the snapshot Stats returns, replaced under mu after every change of the
	// figures: mu is held across the database's reads and commits, and the heartbeat reads the
	// figures on every beat without waiting for them.
	stats atomic.Pointer[Stats]

	// writeHeld, when set (tests only), is called by Enqueue before its write.
	writeHeld func()

	mu       sync.Mutex
	nextSeq  uint64
	depth    int
	bytes    int64
	inflight uint64 // seq being published (never dropped meanwhile); 0 = none
	// head is a seq at or below the oldest live record: scans start there instead of walking
	// over the deletion markers of everything already sent (see devicedb.Namespace.IterateFrom).
	head    uint64
	dropped map[string]uint64
	sent    uint64

	// Numbering (see the package doc). sendFrom is the next key the sender considers: the live
	// records below it are numbered reports sent and waiting for the hub (0: start at head).
	epoch        uint64
	nextNum      uint64
	awaitHub     bool
	sendFrom     uint64
	rewinds      uint64
	lastRewind   time.Time
	lastProgress time.Time
}

// Open loads the queue kept in ns (its size and last sequence number) and registers its metrics.
func Open(ns devicedb.Namespace, opts Options) (*Outbox, error) {
	opts.defaults()
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	o := &Outbox{
		ns: ns, opts: opts, log: opts.Logger.With("component", "outbox"), metrics: m,
		wake: make(chan struct{}, 1), dropped: map[string]uint64{}, nextSeq: 1, nextNum: 1,
	}
	// Values are read (not just badger's size estimate) so that the byte count is exact.
	var maxNum uint64
	o.epoch, o.awaitHub, err = scan(ns, func(k, v []byte) error {
		if o.depth == 0 {
			o.head = binary.BigEndian.Uint64(k)
		}
		o.depth++
		o.bytes += recordSize(int64(len(v)))
		o.nextSeq = binary.BigEndian.Uint64(k) + 1
		if r, _, err := decodeHeader(v); err == nil {
			maxNum = max(maxNum, r.num)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load outbox: %w", err)
	}
	// Numbers stay unique among the records held, whatever the epoch.
	o.nextNum = maxNum + 1
	if maxNum == 0 || o.epoch == 0 {
		// Nothing numbered is waiting: start a new epoch (later than any before, so the hub
		// takes it for the newer), numbering from 1.
		o.epoch = max(o.epoch+1, uint64(opts.Now().UnixMilli()))
		if err := ns.Set(keyEpoch, binary.BigEndian.AppendUint64(nil, o.epoch)); err != nil {
			return nil, fmt.Errorf("store outbox epoch: %w", err)
		}
	}
	o.lastProgress = opts.Now()
	o.publishGauges()
	return o, nil
}

// scan reads what an outbox keeps in ns: it returns the stored epoch (0: none) and whether the
// hub has acknowledged a numbered report, and hands each report's key and value, in order, to
// record. Other keys are not the outbox's and are skipped (Run skips them too).
func scan(ns devicedb.Namespace, record func(k, v []byte) error) (epoch uint64, awaitHub bool, err error) {
	err = ns.Iterate(false, func(k, v []byte) error {
		switch {
		case string(k) == string(keyEpoch) && len(v) == 8:
			epoch = binary.BigEndian.Uint64(v)
			return nil
		case string(k) == string(keyHubAcks):
			awaitHub = true
			return nil
		case len(k) != 8:
			return nil
		}
		return record(k, v)
	})
	return epoch, awaitHub, err
}

// recordSize is what one record costs against MaxBytes: its key and stored value.
func recordSize(valueSize int64) int64 { return valueSize + 8 }

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// Enqueue stores a report to be published later, in order after every report enqueued before it.
// When the queue would exceed MaxBytes the oldest reports (except the one being published) are
// dropped and counted. It returns once the report is written to the state database.
func (o *Outbox) Enqueue(topic string, payload []byte, qos byte, retain bool) error {
	if topic == "" || len(topic) > maxTopic || qos > 2 {
		return fmt.Errorf("%w: topic of %d bytes, qos %d", ErrBadReport, len(topic), qos)
	}
	if len(payload) > MaxPayload {
		return fmt.Errorf("%w: payload %d bytes, max %d", ErrTooLarge, len(payload), MaxPayload)
	}
	now := o.opts.Now()
	numbered := o.opts.Numbered != nil && o.opts.Numbered(topic) && jsonObject(payload)
	rec := record{at: now, topic: topic, payload: payload, qos: qos, retain: retain}
	// The number is filled in under the lock; it does not change the encoded size.
	size := recordSize(int64(len(encodeRecord(rec))))
	if size > o.opts.MaxBytes {
		return fmt.Errorf("%w: %d stored bytes, bound %d", ErrTooLarge, size, o.opts.MaxBytes)
	}

	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.dropLocked(now, size); err != nil {
		return err
	}
	if numbered {
		rec.num = o.nextNum
	}
	val := encodeRecord(rec)
	seq := o.nextSeq
	if o.writeHeld != nil {
		o.writeHeld()
	}
	if err := o.ns.Set(seqKey(seq), val); err != nil {
		return fmt.Errorf("enqueue %s: %w", topic, err)
	}
	o.nextSeq++
	if numbered {
		o.nextNum++
	}
	o.depth++
	o.bytes += size
	o.publishGauges()
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return nil
}

// jsonObject reports whether b starts (after white space) a JSON object, so that a number can be
// stamped into it.
func jsonObject(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c == '{'
	}
	return false
}

// dropLocked deletes, oldest first, the reports older than MaxAge and then as many as it takes
// for need more bytes to fit MaxBytes. The in-flight report is never dropped.
func (o *Outbox) dropLocked(now time.Time, need int64) error {
	cutoff := now.Add(-o.opts.MaxAge)
	type victim struct {
		key    []byte
		size   int64
		reason string
	}
	var victims []victim
	free := o.opts.MaxBytes - o.bytes
	err := o.ns.IterateFrom(seqKey(o.head), func(k, v []byte) error {
		if len(k) != 8 {
			return nil
		}
		seq := binary.BigEndian.Uint64(k)
		if seq == o.inflight {
			return nil
		}
		size := recordSize(int64(len(v)))
		reason := ""
		if r, _, err := decodeHeader(v); err != nil {
			reason = ReasonCorrupt
		} else if r.at.Before(cutoff) {
			reason = ReasonAge
		} else if free < need {
			reason = ReasonSize
		} else {
			return devicedb.ErrStop
		}
		victims = append(victims, victim{append([]byte(nil), k...), size, reason})
		free += size
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan outbox for drops: %w", err)
	}
	for len(victims) > 0 {
		batch := victims[:min(len(victims), 1000)]
		victims = victims[len(batch):]
		err := o.ns.Update(func(tx *devicedb.Txn) error {
			for _, v := range batch {
				if err := tx.Delete(v.key); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("drop old reports: %w", err)
		}
		for _, v := range batch {
			seq := binary.BigEndian.Uint64(v.key)
			o.countDropLocked(v.reason, v.size, seq, nil)
			if o.inflight == 0 {
				o.head = seq + 1
			}
		}
	}
	return nil
}

func (o *Outbox) countDropLocked(reason string, size int64, seq uint64, cause error) {
	o.depth--
	o.bytes -= size
	o.dropped[reason]++
	o.metrics.dropped.WithLabelValues(reason).Inc()
	o.publishGauges()
	if reason == ReasonCorrupt {
		o.log.Warn("dropped corrupt buffered report", "seq", seq, "err", cause)
	} else {
		o.log.Debug("dropped buffered report", "seq", seq, "reason", reason)
	}
}

// publishGauges sets the gauges and the snapshot Stats returns from the figures (o.mu held).
func (o *Outbox) publishGauges() {
	o.metrics.depth.Set(float64(o.depth))
	o.metrics.bytes.Set(float64(o.bytes))
	d := make(map[string]uint64, len(o.dropped))
	for k, v := range o.dropped {
		d[k] = v
	}
	o.stats.Store(&Stats{Depth: o.depth, Bytes: o.bytes, Dropped: d, Sent: o.sent,
		Epoch: o.epoch, NextNumber: o.nextNum, AwaitHub: o.awaitHub, Resends: o.rewinds})
}

// Stats returns a snapshot of the queue's size and counters as of the last change that
// completed. It never waits for a write in progress (the heartbeat calls it on every beat).
func (o *Outbox) Stats() Stats {
	st := *o.stats.Load()
	d := make(map[string]uint64, len(st.Dropped))
	for k, v := range st.Dropped {
		d[k] = v
	}
	st.Dropped = d
	return st
}

// Rewind makes the sender send the numbered reports still waiting for the hub again, oldest
// first, before anything younger. The agent calls it on every (re)connect: the broker may have
// lost what it acknowledged.
func (o *Outbox) Rewind() {
	o.mu.Lock()
	o.rewindLocked()
	o.mu.Unlock()
}

func (o *Outbox) rewindLocked() {
	o.sendFrom = 0
	o.rewinds++
	o.publishGauges()
	now := o.opts.Now()
	o.lastRewind, o.lastProgress = now, now
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// HubAck applies the hub's acknowledgement: the numbered reports of a.Epoch up to a.Seq are
// deleted (the hub stored them), and from now on numbered reports wait for it (persisted: a
// restart keeps waiting). An ack of another epoch is ignored. With a.Gap, the reports after
// a.Seq are sent again (at most once per GapWait). It returns an error only when the state
// database fails.
func (o *Outbox) HubAck(a wire.Ack) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if a.Epoch != o.epoch {
		return nil
	}
	if !o.awaitHub {
		if err := o.ns.Set(keyHubAcks, []byte{1}); err != nil {
			return fmt.Errorf("store hub acks: %w", err)
		}
		o.awaitHub = true
		o.publishGauges()
		o.log.Info("the hub acknowledges reports: numbered reports are kept until it has them")
	}
	type victim struct {
		key  []byte
		size int64
	}
	var victims []victim
	newHead, headSet := o.head, false
	var last uint64
	err := o.ns.IterateFrom(seqKey(o.head), func(k, v []byte) error {
		if len(k) != 8 {
			return nil
		}
		seq := binary.BigEndian.Uint64(k)
		r, _, err := decodeHeader(v)
		if err != nil || r.num == 0 || r.num > a.Seq {
			if !headSet {
				newHead, headSet = seq, true
			}
			if err == nil && r.num > a.Seq {
				return devicedb.ErrStop // numbers grow with keys: nothing later is acknowledged
			}
			return nil
		}
		victims = append(victims, victim{append([]byte(nil), k...), recordSize(int64(len(v)))})
		last = seq
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan outbox for acknowledged reports: %w", err)
	}
	if len(victims) > 0 {
		err = o.ns.Update(func(tx *devicedb.Txn) error {
			for _, v := range victims {
				if err := tx.Delete(v.key); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("delete acknowledged reports: %w", err)
		}
		for _, v := range victims {
			o.depth--
			o.bytes -= v.size
			o.sent++
		}
		o.publishGauges()
		o.lastProgress = o.opts.Now()
		if !headSet {
			newHead = last + 1
		}
		// Still at or below the oldest live record (the in-flight one included, if live).
		o.head = max(o.head, newHead)
	}
	if a.Gap && o.sendFrom > o.head && o.opts.Now().Sub(o.lastRewind) >= o.opts.GapWait {
		o.log.Info("the hub misses a report: sending again", "from", a.Seq+1)
		o.rewindLocked()
	}
	return nil
}

// Held is what an outbox keeps in its namespace, as Inspect reads it.
type Held struct {
	// Epoch is the stored numbering epoch (0: none yet).
	Epoch uint64
	// Numbers are the numbers of the numbered reports held, oldest first; Unnumbered counts
	// the other reports.
	Numbers    []uint64
	Unnumbered int
	// AwaitHub says numbered reports are kept until the hub acknowledges them.
	AwaitHub bool
}

// Inspect reads, without changing anything, the reports an outbox keeps in ns (a stopped
// agent's: Open would start a new epoch when no numbered report is held). Crash tests call it
// to learn what a killed agent had durably queued.
func Inspect(ns devicedb.Namespace) (Held, error) {
	var h Held
	var err error
	h.Epoch, h.AwaitHub, err = scan(ns, func(k, v []byte) error {
		r, _, err := decodeHeader(v)
		switch {
		case err != nil:
			return fmt.Errorf("%w: seq %d: %v", ErrCorrupt, binary.BigEndian.Uint64(k), err)
		case r.num > 0:
			h.Numbers = append(h.Numbers, r.num)
		default:
			h.Unnumbered++
		}
		return nil
	})
	return h, err
}
