// Package systemtest holds the tests that span both binaries (as rqlite's system_test/). This
// package runs real `driftline hub serve` processes on loopback and checks cluster
// behaviour from the outside: writes through followers, a leader killed with SIGKILL under load,
// a restarted node catching up, and membership changes.
package systemtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/testhelp"
)

func (c *cluster) datasets(h *hub) map[string]bool {
	out := map[string]bool{}
	cursor := ""
	for {
		code, b := c.do(h, http.MethodGet, "/api/v1/datasets?limit=1000&cursor="+cursor, nil)
		if code != http.StatusOK {
			c.t.Fatalf("list datasets on %s: %d %s", h.ID, code, b)
		}
		var page struct {
			Items []struct {
				Name string `json:"name"`
			} `json:"items"`
			NextCursor *string `json:"next_cursor"`
		}
		json.Unmarshal(b, &page)
		for _, d := range page.Items {
			out[d.Name] = true
		}
		if page.NextCursor == nil {
			return out
		}
		cursor = *page.NextCursor
	}
}

// waitSame waits until every live node applied as far as the leader committed.
func (c *cluster) waitSame(live []*hub) {
	c.t.Helper()
	testhelp.WaitFor(c.t, 30*time.Second, "nodes to converge", func() bool {
		var want uint64
		for _, h := range live {
			st, ok := c.status(h)
			if !ok {
				return false
			}
			want = max(want, st.CommitIndex)
		}
		for _, h := range live {
			st, _ := c.status(h)
			if st.AppliedIndex < want {
				return false
			}
		}
		return true
	})
}

func TestWriteThroughFollower(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.leader(c.hubs)
	var follower *hub
	for _, h := range c.hubs {
		if h != lead {
			follower = h
		}
	}
	if code, b := c.do(follower, http.MethodPost, "/api/v1/datasets", map[string]string{"name": "via-follower"}); code != http.StatusCreated {
		t.Fatalf("write through follower: %d %s", code, b)
	}
	c.waitSame(c.hubs)
	for _, h := range c.hubs {
		if !c.datasets(h)["via-follower"] {
			t.Fatalf("%s lacks the write", h.ID)
		}
	}
	// It went as the command, over the cluster client (hub/cluster), not as a proxied request.
	code, m := c.do(follower, http.MethodGet, "/metrics", nil)
	if code != http.StatusOK || !strings.Contains(string(m), `driftline_hub_forwarded_total{call="apply",outcome="ok"} 1`) {
		t.Fatalf("the follower's metrics (%d) do not count one forwarded command:\n%s", code, forwardedLines(m))
	}
}

// forwardedLines are the lines of a /metrics answer about forwarded calls.
func forwardedLines(m []byte) string {
	var out []string
	for _, l := range strings.Split(string(m), "\n") {
		if strings.HasPrefix(l, "driftline_hub_forwarded_total") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestLeaderKilledUnderLoad(t *testing.T) {
	c := newCluster(t, 3)
	old := c.leader(c.hubs)
	if old == nil {
		t.Fatal("no leader")
	}
	var live []*hub
	for _, h := range c.hubs {
		if h != old {
			live = append(live, h)
		}
	}
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
		stop  = make(chan struct{})
	)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("w%02d-%04d", w, n)
				// Each client spreads its writes over every node; followers forward to the leader.
				h := c.hubs[(w+n)%len(c.hubs)]
				for attempt := 0; attempt < 50; attempt++ {
					code, _ := c.do(h, http.MethodPost, "/api/v1/datasets", map[string]string{"name": name})
					if code == http.StatusCreated || code == http.StatusConflict {
						if code == http.StatusCreated {
							mu.Lock()
							acked = append(acked, name)
							mu.Unlock()
						}
						break
					}
					h = live[(attempt+w)%len(live)]
					time.Sleep(50 * time.Millisecond)
				}
			}
		}(w)
	}
	time.Sleep(1500 * time.Millisecond) // let load build up before the kill
	killedAt := time.Now()
	c.kill(old)
	var newLeader *hub
	testhelp.WaitFor(t, 15*time.Second, "a new leader", func() bool {
		newLeader = c.leader(live)
		return newLeader != nil
	})
	t.Logf("new leader %s after %s", newLeader.ID, time.Since(killedAt).Round(10*time.Millisecond))
	time.Sleep(1500 * time.Millisecond) // writes go on against the new leader
	close(stop)
	wg.Wait()
	c.waitSame(live)
	mu.Lock()
	defer mu.Unlock()
	if len(acked) < 50 {
		t.Fatalf("only %d writes acknowledged", len(acked))
	}
	for _, h := range live {
		have := c.datasets(h)
		for _, name := range acked {
			if !have[name] {
				t.Fatalf("acknowledged write %s missing on %s", name, h.ID)
			}
		}
	}
	t.Logf("%d acknowledged writes present on every live node", len(acked))
	// The killed node comes back from its disk and catches up.
	c.start(old, "")
	all := append(live, old)
	c.waitSame(all)
	have := c.datasets(old)
	for _, name := range acked {
		if !have[name] {
			t.Fatalf("restarted %s lacks %s", old.ID, name)
		}
	}
}

func TestRemoveAndReAdd(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.leader(c.hubs)
	var gone *hub
	for _, h := range c.hubs {
		if h != lead {
			gone = h
			break
		}
	}
	if code, b := c.do(lead, http.MethodDelete, "/api/v1/cluster/nodes/"+gone.ID, nil); code != http.StatusOK {
		t.Fatalf("remove: %d %s", code, b)
	}
	c.kill(gone)
	testhelp.WaitFor(t, 10*time.Second, "two nodes", func() bool {
		st, ok := c.status(lead)
		return ok && len(st.Nodes) == 2
	})
	if code, _ := c.do(lead, http.MethodPost, "/api/v1/datasets", map[string]string{"name": "after-remove"}); code != http.StatusCreated {
		t.Fatalf("write on two nodes: %d", code)
	}
	// A fresh node (empty data dir) takes its place.
	gone.Dir = c.dir(gone.ID + "-again")
	c.start(gone, "http://"+lead.HTTP)
	c.waitVoters(3)
	c.waitSame(c.hubs)
	if !c.datasets(gone)["after-remove"] {
		t.Fatal("re-added node lacks the state")
	}
}

// uploadTiny registers a one-chunk model version.
func (c *cluster) uploadTiny(h *hub, model string) (int, []byte) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("artifact", "m.bin")
	fw.Write([]byte("a tiny model"))
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, "http://"+h.HTTP+"/api/v1/models/"+model+"/versions", &buf)
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	res, err := client.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}
