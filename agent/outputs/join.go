package outputs

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/shared/contract"
)

// Join defaults.
const (
	// DefaultMaxEntries bounds the join state: predictions waiting for a label, labels waiting
	// for a prediction and the ids of joined pairs (kept to recognise duplicates).
	DefaultMaxEntries = 200_000
	// DefaultMaxAge is how long an entry waits before it expires.
	DefaultMaxAge = 7 * 24 * time.Hour
)

// JoinOptions bound the join state.
type JoinOptions struct {
	// MaxEntries bounds the entries held on disk (default DefaultMaxEntries); the oldest go
	// first when it is reached.
	MaxEntries int
	// MaxAge is how long an entry is kept (default DefaultMaxAge).
	MaxAge time.Duration
}

// Pair is a prediction that met its label.
type Pair struct {
	ID                string
	Prediction, Label contract.Value
	// PredictedAt and LabelledAt are when each half arrived.
	PredictedAt, LabelledAt time.Time
}

// JoinStats count what the join did since it was opened (Pending* are the current sizes).
type JoinStats struct {
	PendingPredictions, PendingLabels int64
	Joined                            int64
	// Duplicates are predictions or labels for an id already waiting or already joined:
	// ignored, the first one counts.
	Duplicates int64
	// ExpiredPredictions never got a label; ExpiredLabels never met their prediction (for age
	// or space).
	ExpiredPredictions, ExpiredLabels int64
}

// Join matches predictions and labels by id, in any order and with any delay within its
// bounds, on disk (a devicedb.Namespace), so a restart keeps what waits. Safe for concurrent use.
//
// Keys: "p/ID" a waiting prediction, "l/ID" a waiting label, "j/ID" a joined id, each holding an
// entry with its order number; "o/SEQ" (big endian) -> kind and id, the age order used to expire
// and evict.
type Join struct {
	ns   devicedb.Namespace
	opts JoinOptions

	mu      sync.Mutex
	seq     uint64 // last order number used
	head    []byte // first order key that may still exist (deleted keys are not rescanned)
	entries int
	stats   JoinStats
}

type joinEntry struct {
	Seq uint64         `json:"s"`
	At  int64          `json:"t"`
	V   contract.Value `json:"v,omitempty"`
}

const (
	kindPred   = 'p'
	kindLabel  = 'l'
	kindJoined = 'j'
)

// OpenJoin opens the join state in ns, counting what a previous run left.
func OpenJoin(ns devicedb.Namespace, opts JoinOptions) (*Join, error) {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = DefaultMaxAge
	}
	j := &Join{ns: ns, opts: opts, head: []byte("o/")}
	err := ns.IterateKeys(false, func(k []byte, _ int64) error {
		switch {
		case len(k) > 2 && k[0] == 'o' && k[1] == '/':
			j.entries++
			if s := binary.BigEndian.Uint64(k[2:]); s > j.seq {
				j.seq = s
			}
		case len(k) > 2 && k[0] == kindPred:
			j.stats.PendingPredictions++
		case len(k) > 2 && k[0] == kindLabel:
			j.stats.PendingLabels++
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open join state: %w", err)
	}
	return j, nil
}

func orderKey(seq uint64) []byte {
	k := make([]byte, 10)
	k[0], k[1] = 'o', '/'
	binary.BigEndian.PutUint64(k[2:], seq)
	return k
}

func idKey(kind byte, id string) []byte { return append([]byte{kind, '/'}, id...) }

// AddPrediction records the prediction for id at time at. It returns the pair when the label
// was already waiting.
func (j *Join) AddPrediction(id string, v contract.Value, at time.Time) (Pair, bool, error) {
	return j.add(kindPred, kindLabel, id, v, at)
}

// AddLabel records the label for id at time at. It returns the pair when the prediction was
// waiting.
func (j *Join) AddLabel(id string, v contract.Value, at time.Time) (Pair, bool, error) {
	return j.add(kindLabel, kindPred, id, v, at)
}

func (j *Join) add(mine, other byte, id string, v contract.Value, at time.Time) (Pair, bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	var pair Pair
	joined, dup := false, false
	newEntries := 0
	err := j.ns.Update(func(tx *devicedb.Txn) error {
		for _, k := range []byte{kindJoined, mine} {
			if _, err := tx.Get(idKey(k, id)); err == nil {
				dup = true
				return nil
			} else if !errors.Is(err, devicedb.ErrNotFound) {
				return err
			}
		}
		b, err := tx.Get(idKey(other, id))
		switch {
		case err == nil:
			var e joinEntry
			if err := json.Unmarshal(b, &e); err != nil {
				return fmt.Errorf("join entry %s: %w", id, err)
			}
			if err := tx.Delete(idKey(other, id)); err != nil {
				return err
			}
			if err := tx.Delete(orderKey(e.Seq)); err != nil {
				return err
			}
			joined = true
			pair = Pair{ID: id}
			if mine == kindPred {
				pair.Prediction, pair.Label = v, e.V
				pair.PredictedAt, pair.LabelledAt = at, time.UnixMilli(e.At)
			} else {
				pair.Prediction, pair.Label = e.V, v
				pair.PredictedAt, pair.LabelledAt = time.UnixMilli(e.At), at
			}
			return j.put(tx, kindJoined, id, contract.Value{}, at)
		case errors.Is(err, devicedb.ErrNotFound):
			newEntries = 1
			return j.put(tx, mine, id, v, at)
		default:
			return err
		}
	})
	if err != nil {
		return Pair{}, false, err
	}
	switch {
	case dup:
		j.stats.Duplicates++
		return Pair{}, false, nil
	case joined:
		// The waiting half's entry became the joined marker: the count is unchanged.
		j.stats.Joined++
		if other == kindPred {
			j.stats.PendingPredictions--
		} else {
			j.stats.PendingLabels--
		}
	default:
		j.entries += newEntries
		if mine == kindPred {
			j.stats.PendingPredictions++
		} else {
			j.stats.PendingLabels++
		}
	}
	if j.entries > j.opts.MaxEntries {
		if err := j.trim(time.Time{}, j.entries-j.opts.MaxEntries); err != nil {
			return pair, joined, err
		}
	}
	return pair, joined, nil
}

// put writes an entry and its order key; the caller counts it.
func (j *Join) put(tx *devicedb.Txn, kind byte, id string, v contract.Value, at time.Time) error {
	j.seq++
	b, err := json.Marshal(joinEntry{Seq: j.seq, At: at.UnixMilli(), V: v})
	if err != nil {
		return err
	}
	if err := tx.Set(idKey(kind, id), b); err != nil {
		return err
	}
	return tx.Set(orderKey(j.seq), append([]byte{kind}, id...))
}

// Expire drops the entries older than MaxAge at now.
func (j *Join) Expire(now time.Time) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.entries == 0 {
		return nil // nothing to scan (fleet mode runs thousands of idle joins)
	}
	return j.trim(now.Add(-j.opts.MaxAge), 0)
}

// trim removes entries in age order: those before cutoff (when not zero), and at least n.
// Called with mu held.
func (j *Join) trim(cutoff time.Time, n int) error {
	type victim struct {
		order []byte
		kind  byte
		id    string
	}
	const batch = 256
	for {
		var vs []victim
		err := j.ns.View(func(tx *devicedb.Txn) error {
			return tx.IterateFrom(j.head, func(k, v []byte) error {
				if len(k) < 2 || k[0] != 'o' || k[1] != '/' || len(vs) >= batch {
					return devicedb.ErrStop
				}
				if len(vs) >= n {
					if cutoff.IsZero() {
						return devicedb.ErrStop
					}
					b, err := tx.Get(idKey(v[0], string(v[1:])))
					if err != nil {
						return nil // already gone: remove the order key anyway
					}
					var e joinEntry
					if json.Unmarshal(b, &e) == nil && !time.UnixMilli(e.At).Before(cutoff) {
						return devicedb.ErrStop
					}
				}
				vs = append(vs, victim{order: append([]byte(nil), k...), kind: v[0], id: string(v[1:])})
				return nil
			})
		})
		if err != nil {
			return fmt.Errorf("join state scan: %w", err)
		}
		if len(vs) == 0 {
			return nil
		}
		err = j.ns.Update(func(tx *devicedb.Txn) error {
			for _, v := range vs {
				if err := tx.Delete(v.order); err != nil {
					return err
				}
				if err := tx.Delete(idKey(v.kind, v.id)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("join state trim: %w", err)
		}
		for _, v := range vs {
			j.entries--
			switch v.kind {
			case kindPred:
				j.stats.PendingPredictions--
				j.stats.ExpiredPredictions++
			case kindLabel:
				j.stats.PendingLabels--
				j.stats.ExpiredLabels++
			}
		}
		j.head = append(vs[len(vs)-1].order, 0) // past the last deleted key
		n -= len(vs)
		if n < 0 {
			n = 0
		}
	}
}

// Stats returns the counters.
func (j *Join) Stats() JoinStats {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.stats
}
