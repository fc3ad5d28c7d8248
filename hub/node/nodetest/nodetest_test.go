package nodetest_test

import (
	"net/http"
	"testing"

	"github.com/driftline/driftline/hub/node/nodetest"
)

// TestClusterKillRestart drives the cluster harness through a failover: writes through a
// follower and the leader, the leader killed, a new one elected, a write under it, the old
// leader restarted on its data dir and addresses, and every node holding the same state.
func TestClusterKillRestart(t *testing.T) {
	c := nodetest.StartCluster(t, 3, nodetest.NoMQTT())
	old := c.Leader()
	c.Followers()[0].Call(http.MethodPost, "/api/v1/datasets", map[string]string{"name": "before"}, http.StatusCreated, nil)
	c.EnsureSame()
	oldURL := old.URL()
	c.Kill(old)
	if old.Live() || len(c.LiveHubs()) != 2 {
		t.Fatalf("after Kill: live %v, %d live hubs", old.Live(), len(c.LiveHubs()))
	}
	lead := c.WaitForNewLeader(old)
	lead.Call(http.MethodPost, "/api/v1/datasets", map[string]string{"name": "after"}, http.StatusCreated, nil)
	c.Restart(old)
	if old.URL() != oldURL {
		t.Fatalf("restarted on %s, was %s", old.URL(), oldURL)
	}
	c.EnsureSame()
	for _, name := range []string{"before", "after"} {
		if _, err := old.Reader().Dataset(name); err != nil {
			t.Fatalf("restarted node lacks dataset %s: %v", name, err)
		}
	}
}
