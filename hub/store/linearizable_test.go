package store_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/store"
	"github.com/driftline/driftline/hub/store/storetest"
	"github.com/driftline/driftline/internal/testhelp"
)

// kvInput and kvOutput are one operation of the porcupine history.
type kvInput struct {
	put   bool
	key   string
	value string
}

type kvOutput struct {
	value string
}

// kvModel is a register per key: put sets it, get returns it ("" before any put).
var kvModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(kvInput).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(kvInput)
		if in.put {
			return true, in.value
		}
		return output.(kvOutput).value == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(kvInput)
		if in.put {
			return fmt.Sprintf("put(%s, %s)", in.key, in.value)
		}
		return fmt.Sprintf("get(%s) -> %s", in.key, output.(kvOutput).value)
	},
}

// member is what the clients use of a node: fixed for the whole run, so killing a node (Abort)
// does not race with the clients reading the harness's Node fields.
type member struct {
	id string
	s  *store.Store
	db *badger.DB
}

// history collects operations from all clients.
type history struct {
	mu    sync.Mutex
	start time.Time
	ops   []porcupine.Operation
	acked []string // unique keys whose put was acknowledged
}

func (h *history) now() int64 { return time.Since(h.start).Nanoseconds() }

func (h *history) add(op porcupine.Operation) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

func leaderOf(ms []member) *member {
	for i := range ms {
		if ms[i].s.IsLeader() {
			return &ms[i]
		}
	}
	return nil
}

// unknownOutcome reports whether a failed write may still have been applied.
func unknownOutcome(err error) bool {
	return !errors.Is(err, store.ErrNotLeader)
}

// strongGet reads key linearizably: Barrier on the leader, then its local state.
func strongGet(ctx context.Context, m *member, key string) (string, error) {
	if err := m.s.Barrier(ctx); err != nil {
		return "", err
	}
	v, _, err := storetest.Get(m.db, key)
	return v, err
}

// TestLeaderKillLinearizable kills the leader while 16 clients write and read; a new leader must
// appear within a few seconds, the history must be linearizable (porcupine), every acknowledged
// write must be on every live node, and the killed node must catch up after a restart.
func TestLeaderKillLinearizable(t *testing.T) {
	c := storetest.MakeCluster(t, 3, kvProcessor)
	var ms []member
	for _, n := range c.Nodes() {
		ms = append(ms, member{id: n.ID, s: n.Store, db: n.DB})
	}
	const clients, keys, killAfter, stopAfter = 16, 6, 150, 500
	h := &history{start: time.Now()}
	var done atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(cl), 7))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				m := leaderOf(ms)
				if m == nil {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				op := porcupine.Operation{ClientId: cl}
				switch r := rng.IntN(10); {
				case r < 3: // strong read
					in := kvInput{key: fmt.Sprintf("k%d", rng.IntN(keys))}
					op.Input, op.Call = in, h.now()
					v, err := strongGet(ctx, m, in.key)
					op.Return = h.now()
					if err == nil {
						op.Output = kvOutput{value: v}
						h.add(op)
					}
				default: // write to a shared key, and on odd steps to a unique one too
					in := kvInput{put: true, key: fmt.Sprintf("k%d", rng.IntN(keys)), value: fmt.Sprintf("c%d-%d", cl, i)}
					if r%2 == 1 {
						in.key = "u-" + in.value
					}
					op.Input, op.Call = in, h.now()
					_, err := m.s.Apply(ctx, storetest.Put(in.key, in.value))
					op.Return, op.Output = h.now(), kvOutput{}
					switch {
					case err == nil:
						h.add(op)
						done.Add(1)
						if in.key[0] == 'u' {
							h.mu.Lock()
							h.acked = append(h.acked, in.key)
							h.mu.Unlock()
						}
					case unknownOutcome(err):
						op.Return = math.MaxInt64 // may take effect at any later time
						h.add(op)
					}
				}
				cancel()
			}
		}()
	}

	testhelp.WaitFor(t, storetest.WaitTimeout, "writes before the kill", func() bool { return done.Load() >= killAfter })
	old := c.Leader()
	killedAt := time.Now()
	if err := old.Store.Abort(); err != nil {
		t.Logf("abort %s: %v", old.ID, err)
	}
	testhelp.WaitFor(t, 5*time.Second, "a new leader", func() bool {
		l := leaderOf(ms)
		return l != nil && l.id != old.ID
	})
	t.Logf("new leader %s after %v", leaderOf(ms).id, time.Since(killedAt).Round(time.Millisecond))
	testhelp.WaitFor(t, storetest.WaitTimeout, "writes after the kill", func() bool { return done.Load() >= stopAfter })
	close(stop)
	wg.Wait()
	c.Kill(old) // closes its database now that no client reads it

	// Final strong reads of every shared key close the history.
	l := c.Leader()
	lm := &member{id: l.ID, s: l.Store, db: l.DB}
	for k := range keys {
		in := kvInput{key: fmt.Sprintf("k%d", k)}
		call := h.now()
		v, err := strongGet(ctxT(t), lm, in.key)
		if err != nil {
			t.Fatalf("final read of %s: %v", in.key, err)
		}
		h.add(porcupine.Operation{Input: in, Call: call, Output: kvOutput{value: v}, Return: h.now()})
	}
	res := porcupine.CheckOperationsTimeout(kvModel, h.ops, 30*time.Second)
	t.Logf("%d operations (%d acknowledged writes), linearizability: %s", len(h.ops), done.Load(), res)
	if res == porcupine.Illegal {
		t.Fatal("history is not linearizable")
	}

	c.EnsureSame()
	checkAcked := func() {
		for _, n := range c.LiveNodes() {
			for _, k := range h.acked {
				if _, ok, err := storetest.Get(n.DB, k); !ok || err != nil {
					t.Fatalf("%s: acknowledged write %s missing (%v)", n.ID, k, err)
				}
			}
		}
	}
	checkAcked()
	c.Restart(old)
	c.EnsureSame()
	checkAcked()
}
