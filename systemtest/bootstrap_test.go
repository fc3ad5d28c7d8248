package systemtest

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/freeport"
	"github.com/driftline/driftline/internal/testhelp"
)

// TestHandsOffBootstrap starts three nodes at once from one shared admin token file (as the
// Kubernetes Secret and the compose init service provide it): nobody reads a token off node 1,
// the cluster forms, the file's token is the admin token, and a restarted member rejoins with the
// same command line.
func TestHandsOffBootstrap(t *testing.T) {
	c := emptyCluster(t)
	tokFile := filepath.Join(c.base, "admin-token")
	c.token = "dl_bootstrap_" + strings.Repeat("k", 32)
	os.WriteFile(tokFile, []byte(c.token+"\n"), 0o600)
	start := func(h *hub, join string) {
		h.Args = []string{"--admin-token-file", tokFile}
		if join != "" {
			h.Start(t, binary, "--join", join)
			return
		}
		h.Start(t, binary)
	}
	for i := 1; i <= 3; i++ {
		c.hubs = append(c.hubs, c.newHub(fmt.Sprintf("hub%d", i)))
	}
	first := "http://" + c.hubs[0].HTTP
	// The joiners start first: they retry until the first node answers.
	start(c.hubs[1], first)
	start(c.hubs[2], first)
	start(c.hubs[0], "")
	c.waitVoters(3)
	if code, b := c.do(c.hubs[2], http.MethodPost, "/api/v1/datasets", map[string]string{"name": "hands-off"}); code != http.StatusCreated {
		t.Fatalf("write with the file's token: %d %s", code, b)
	}
	// A member restarts with the same command line (a pod restart) and stays a member.
	c.stop(c.hubs[1])
	start(c.hubs[1], first)
	c.waitSame(c.hubs)
	st, _ := c.status(c.hubs[0])
	if len(st.Nodes) != 3 {
		t.Fatalf("after a restart: %+v", st.Nodes)
	}
	testhelp.WaitFor(t, 10*time.Second, "restarted node serves", func() bool { return c.datasets(c.hubs[1])["hands-off"] })

	// A member replaced with an empty volume (a new pod for a lost disk) comes back with the same
	// id and command line and catches up from the leader.
	c.kill(c.hubs[2])
	if err := os.RemoveAll(c.hubs[2].Dir); err != nil {
		t.Fatal(err)
	}
	c.hubs[2].Dir = c.dir("hub3")
	start(c.hubs[2], first)
	c.waitVoters(3)
	c.waitSame(c.hubs)
	testhelp.WaitFor(t, 10*time.Second, "replaced node serves", func() bool { return c.datasets(c.hubs[2])["hands-off"] })
	if st, _ := c.status(c.hubs[0]); len(st.Nodes) != 3 {
		t.Fatalf("after replacing a member: %+v", st.Nodes)
	}

	// A token too short to be safe is refused at start.
	os.WriteFile(tokFile, []byte("short\n"), 0o600)
	code, _, errOut := cli(t, "hub", "serve", "--data", t.TempDir(), "--http", freeport.Addr(t), "--raft", freeport.Addr(t), "--mqtt", "",
		"--admin-token-file", tokFile)
	if code == 0 || !strings.Contains(errOut, "at least") {
		t.Fatalf("short admin token: exit %d: %s", code, errOut)
	}
}
