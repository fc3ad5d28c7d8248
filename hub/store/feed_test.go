package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/driftline/driftline/hub/raftstore"
	"github.com/driftline/driftline/hub/store"
	"github.com/driftline/driftline/hub/store/storetest"
	"github.com/driftline/driftline/internal/testhelp"
)

// consumer records what one subscription of a node's change feed delivered.
type consumer struct {
	mu  sync.Mutex
	got []store.Change
}

func (c *consumer) run(ctx context.Context, sub *store.Subscription) {
	for {
		cs, err := sub.Next(ctx)
		if err != nil {
			return
		}
		c.mu.Lock()
		c.got = append(c.got, cs...)
		c.mu.Unlock()
	}
}

func (c *consumer) changes() []store.Change {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]store.Change(nil), c.got...)
}

// TestChangeFeedExactlyOnceInOrder checks the change feed's contract on a 3-node cluster: every
// consumer on every node sees every committed change exactly once, in commit order, across a
// leader change (the leader stops and comes back), and across a snapshot restore (a follower that
// missed compacted entries gets a Reset at the restored index instead of the changes it covers,
// and every change after it).
func TestChangeFeedExactlyOnceInOrder(t *testing.T) {
	feeds := map[string]*store.Feed{}
	for _, id := range []string{"n0", "n1", "n2"} {
		feeds[id] = store.NewFeed()
	}
	// Two consumers per node, subscribed before the nodes start and kept across their restarts.
	cons := map[string][]*consumer{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for id, f := range feeds {
		for range 2 {
			c := &consumer{}
			sub := f.Subscribe()
			cons[id] = append(cons[id], c)
			wg.Add(1)
			go func() { defer wg.Done(); defer sub.Close(); c.run(ctx, sub) }()
		}
	}
	t.Cleanup(func() { cancel(); wg.Wait() })

	c := storetest.MakeCluster(t, 3, kvProcessor, storetest.Options{
		Changes: func(id string) *store.Feed { return feeds[id] },
		Tune: func(rc *raft.Config) {
			rc.TrailingLogs = 5
			rc.SnapshotThreshold = 1 << 20
		}})
	puts := map[string]uint64{} // key -> raft index of its put
	put := func(n int, prefix string) {
		for i := range n {
			k := fmt.Sprintf("%s%03d", prefix, i)
			puts[k] = mustPut(t, c.Leader().Store, k, "v").Index
		}
	}

	put(20, "a")
	// A leader change: the leader stops (handing over) and comes back as a follower.
	old := c.Leader()
	c.Stop(old)
	c.WaitForNewLeader(old)
	put(20, "b")
	c.Restart(old)
	put(20, "c")

	// A snapshot restore: a follower misses entries the leader then compacts away.
	lag := c.Followers()[0]
	c.Kill(lag)
	put(60, "d")
	if err := c.Leader().Store.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if first, err := raftstore.New(c.Leader().DB).FirstIndex(); err != nil || first <= puts["c019"] {
		t.Fatalf("leader log starts at %d (%v): no snapshot would be sent", first, err)
	}
	c.Restart(lag)
	put(20, "e")
	c.WaitReplicated()

	last := puts["e019"]
	for id, list := range cons {
		for ci, cn := range list {
			var got []store.Change
			testhelp.WaitFor(t, storetest.WaitTimeout, fmt.Sprintf("%s consumer %d to see index %d", id, ci, last), func() bool {
				got = cn.changes()
				return len(got) > 0 && got[len(got)-1].Index >= last
			})
			seen := map[string]int{}
			var prev uint64
			resetAt := uint64(0)
			for i, ch := range got {
				if ch.Index < prev {
					t.Fatalf("%s consumer %d: change %d at index %d after index %d: not in commit order", id, ci, i, ch.Index, prev)
				}
				prev = ch.Index
				if ch.Reset {
					resetAt = ch.Index
					continue
				}
				kc, ok := ch.Event.(storetest.KVChange)
				if !ok {
					t.Fatalf("%s: event %#v", id, ch.Event)
				}
				if puts[kc.Key] != ch.Index {
					t.Fatalf("%s: change of %s at index %d, put at %d", id, kc.Key, ch.Index, puts[kc.Key])
				}
				seen[kc.Key]++
			}
			if !got[0].Reset || got[0].Index != 0 {
				t.Fatalf("%s consumer %d: first change %+v, want the subscription's reset at 0", id, ci, got[0])
			}
			for k, idx := range puts {
				switch {
				case seen[k] > 1:
					t.Fatalf("%s consumer %d: %s delivered %d times", id, ci, k, seen[k])
				case seen[k] == 0 && idx > resetAt:
					t.Fatalf("%s consumer %d: %s (index %d) never delivered (last reset at %d)", id, ci, k, idx, resetAt)
				}
			}
			if id == lag.ID {
				if resetAt < puts["d059"] {
					t.Fatalf("%s consumer %d: no reset for the restored snapshot (last reset at %d, snapshot covers %d)", id, ci, resetAt, puts["d059"])
				}
				for k, idx := range puts {
					if idx > puts["c019"] && idx <= puts["d059"] && seen[k] > 0 {
						t.Fatalf("%s: %s is in the restored snapshot, yet delivered as a change", id, k)
					}
				}
			} else if resetAt != 0 {
				t.Fatalf("%s consumer %d: a reset at %d without a restore", id, ci, resetAt)
			}
		}
	}
}
