package store_test

import (
	"testing"
	"time"

	"github.com/driftline/driftline/hub/store/storetest"
	"github.com/driftline/driftline/internal/testhelp"
)

// TestDeadNodesRemovedAfterScaleDown: five voters, two of them gone for good (a StatefulSet
// scaled from 5 to 3). After the timeout the leader removes both, one at a time, so the cluster is
// three voters (quorum 2, one failure tolerated) instead of five with two missing (quorum 3, none
// tolerated); writes go on throughout.
func TestDeadNodesRemovedAfterScaleDown(t *testing.T) {
	c := storetest.MakeCluster(t, 5, kvProcessor, storetest.Options{DeadNodeTimeout: 2 * time.Second})
	lead := c.Leader()
	var gone []*storetest.Node
	for _, n := range c.Nodes() {
		if n != lead && len(gone) < 2 {
			gone = append(gone, n)
		}
	}
	for _, n := range gone {
		c.Kill(n)
	}
	killed := time.Now()
	mustPut(t, lead.Store, "during", "x")
	testhelp.WaitFor(t, 60*time.Second, "the two dead voters removed", func() bool {
		l := c.Leader()
		st := l.Store.Status()
		for _, n := range st.Nodes {
			if n.ID == gone[0].ID || n.ID == gone[1].ID {
				return false
			}
		}
		return len(st.Nodes) == 3
	})
	if d := time.Since(killed); d < 2*time.Second {
		t.Fatalf("removed after %s, before the timeout", d)
	}
	mustPut(t, c.Leader().Store, "after", "y")
	c.WaitReplicated()
	for _, n := range c.LiveNodes() {
		wantValue(t, n, "after", "y")
	}
}
