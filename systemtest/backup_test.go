package systemtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/freeport"
	"github.com/driftline/driftline/internal/testhelp"
)

// cli runs the driftline binary with args and returns its exit code and output.
func cli(t testing.TB, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errb.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errb.String()
	}
	t.Fatalf("run driftline %v: %v", args, err)
	return 0, "", ""
}

// TestBackupRestoreRoundTrip takes an online backup through a follower while writers keep
// writing, restores it into a new one-node cluster, checks that everything acknowledged before
// the backup is served (registry, artifact bytes, device, tokens, keys, audit chain), and lets a
// second node join the restored one.
func TestBackupRestoreRoundTrip(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.leader(c.hubs)
	if lead == nil {
		t.Fatal("no leader")
	}
	var follower *hub
	for _, h := range c.hubs {
		if h != lead {
			follower = h
			break
		}
	}
	// State of every kind.
	if code, b := c.do(lead, http.MethodPost, "/api/v1/models", map[string]string{"name": "m1"}); code != http.StatusCreated {
		t.Fatalf("model: %d %s", code, b)
	}
	if code, b := c.uploadTiny(lead, "m1"); code != http.StatusCreated {
		t.Fatalf("upload: %d %s", code, b)
	}
	if code, b := c.do(lead, http.MethodPost, "/api/v1/models/m1/versions/1/approve", map[string]string{"comment": "ok"}); code != http.StatusOK {
		t.Fatalf("approve: %d %s", code, b)
	}
	code, b := c.do(lead, http.MethodPost, "/api/v1/devices", map[string]any{"id": "dev-1", "labels": map[string]string{"site": "a"}})
	if code != http.StatusCreated {
		t.Fatalf("device: %d %s", code, b)
	}
	var dev struct {
		Token string `json:"token"`
	}
	json.Unmarshal(b, &dev)
	code, b = c.do(lead, http.MethodPost, "/api/v1/tokens", map[string]string{"name": "ci", "role": "viewer"})
	if code != http.StatusCreated {
		t.Fatalf("token: %d %s", code, b)
	}
	var viewer struct {
		Token string `json:"token"`
	}
	json.Unmarshal(b, &viewer)
	_, artifact := c.do(lead, http.MethodGet, "/api/v1/models/m1/versions/1/artifact", nil)
	_, keys := c.do(lead, http.MethodGet, "/api/v1/keys", nil)

	// Writers through every node while the backup runs.
	var (
		mu    sync.Mutex
		acked = map[string]bool{}
		wg    sync.WaitGroup
		stop  = make(chan struct{})
	)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("load-%d-%05d", w, n)
				if code, _ := c.do(c.hubs[(w+n)%3], http.MethodPost, "/api/v1/datasets", map[string]string{"name": name}); code == http.StatusCreated {
					mu.Lock()
					acked[name] = true
					mu.Unlock()
				}
			}
		}(w)
	}
	testhelp.WaitFor(t, 20*time.Second, "load", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) > 50 })
	mu.Lock()
	before := make([]string, 0, len(acked))
	for k := range acked {
		before = append(before, k)
	}
	mu.Unlock()
	file := filepath.Join(c.base, "cluster.backup")
	code, out, errOut := cli(t, "hub", "backup", file, "--hub", "http://"+follower.HTTP, "--token", c.token, "-o", "json")
	close(stop)
	wg.Wait()
	if code != 0 {
		t.Fatalf("hub backup: exit %d: %s %s", code, out, errOut)
	}
	var res struct {
		Index   uint64 `json:"index"`
		Records int    `json:"records"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Index == 0 || res.Records == 0 {
		t.Fatalf("backup result %q: %v", out, err)
	}
	t.Logf("backup at index %d, %d records, %d writes acknowledged before it", res.Index, res.Records, len(before))
	if code, _, errOut := cli(t, "hub", "backup", file, "--hub", "http://"+follower.HTTP, "--token", c.token); code != 2 || !strings.Contains(errOut, "exists") {
		t.Fatalf("backup over an existing file: exit %d %s", code, errOut)
	}

	// A damaged copy is refused with a clear message and leaves no node behind.
	whole, _ := os.ReadFile(file)
	bad := filepath.Join(c.base, "truncated.backup")
	os.WriteFile(bad, whole[:len(whole)*2/3], 0o600)
	badDir := c.dir("bad")
	if code, _, errOut := cli(t, "hub", "restore", bad, "--data", badDir, "--raft", freeport.Addr(t)); code != 2 || !strings.Contains(errOut, "truncated") {
		t.Fatalf("restore of a truncated file: exit %d: %s", code, errOut)
	}
	if entries, _ := os.ReadDir(filepath.Join(badDir, "raft")); len(entries) != 0 {
		t.Fatalf("a refused restore left raft state: %v", entries)
	}

	// Restore into a new node and serve it.
	r := c.newHub("restored")
	code, out, errOut = cli(t, "hub", "restore", file, "--data", r.Dir, "--raft", r.Raft, "--node-id", r.ID)
	if code != 0 {
		t.Fatalf("hub restore: exit %d: %s %s", code, out, errOut)
	}
	if code, _, errOut := cli(t, "hub", "restore", file, "--data", r.Dir, "--raft", r.Raft); code != 2 || !strings.Contains(errOut, "already holds") {
		t.Fatalf("restore over a node: exit %d: %s", code, errOut)
	}
	c.hubs = append(c.hubs, r) // stopped at cleanup
	c.start(r, "")
	testhelp.WaitFor(t, 30*time.Second, "restored node leads", func() bool {
		st, ok := c.status(r)
		return ok && st.Leader != nil && st.Leader.ID == r.ID && st.AppliedIndex >= res.Index
	})
	have := c.datasets(r)
	for _, name := range before {
		if !have[name] {
			t.Fatalf("dataset %s, acknowledged before the backup, missing after restore", name)
		}
	}
	if code, got := c.do(r, http.MethodGet, "/api/v1/models/m1/versions/1/artifact", nil); code != http.StatusOK || !bytes.Equal(got, artifact) {
		t.Fatalf("artifact after restore: %d, %d bytes (want %d)", code, len(got), len(artifact))
	}
	if code, b := c.do(r, http.MethodGet, "/api/v1/devices/dev-1", nil); code != http.StatusOK || !strings.Contains(string(b), `"site"`) {
		t.Fatalf("device after restore: %d %s", code, b)
	}
	if code, got := c.do(r, http.MethodGet, "/api/v1/keys", nil); code != http.StatusOK || !containsJSONItems(t, got, keys) {
		t.Fatalf("keys after restore: %d %s, before %s", code, got, keys)
	}
	for name, tok := range map[string]string{"viewer": viewer.Token, "device": dev.Token} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+r.HTTP+"/api/v1/devices/dev-1", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s token after restore: %d", name, resp.StatusCode)
		}
	}
	if code, out, errOut := cli(t, "audit", "verify", "--hub", "http://"+r.HTTP, "--token", c.token); code != 0 {
		t.Fatalf("audit verify after restore: exit %d: %s %s", code, out, errOut)
	}
	if code, b := c.do(r, http.MethodPost, "/api/v1/datasets", map[string]string{"name": "after-restore"}); code != http.StatusCreated {
		t.Fatalf("write after restore: %d %s", code, b)
	}

	// A new node joins the restored cluster and gets its state.
	j := c.newHub("joiner")
	c.hubs = append(c.hubs, j)
	c.start(j, "http://"+r.HTTP)
	testhelp.WaitFor(t, 60*time.Second, "joiner is a voter of the restored cluster", func() bool {
		st, ok := c.status(r)
		voters := 0
		for _, n := range st.Nodes {
			if n.Voter {
				voters++
			}
		}
		return ok && voters == 2
	})
	c.waitSame([]*hub{r, j})
	if !c.datasets(j)["after-restore"] || !c.datasets(j)[before[0]] {
		t.Fatal("the joiner lacks the restored state")
	}
}

// containsJSONItems reports whether every item of want's "items" (or array) is in got.
func containsJSONItems(t testing.TB, got, want []byte) bool {
	t.Helper()
	items := func(b []byte) []string {
		var page struct {
			Items []json.RawMessage `json:"items"`
		}
		var arr []json.RawMessage
		if json.Unmarshal(b, &page) == nil && page.Items != nil {
			arr = page.Items
		} else if err := json.Unmarshal(b, &arr); err != nil {
			t.Fatalf("not a list: %s", b)
		}
		var out []string
		for _, it := range arr {
			var m map[string]any
			json.Unmarshal(it, &m)
			out = append(out, fmt.Sprint(m["key_id"], m["public_key"]))
		}
		return out
	}
	have := map[string]bool{}
	for _, k := range items(got) {
		have[k] = true
	}
	w := items(want)
	for _, k := range w {
		if !have[k] {
			return false
		}
	}
	return len(w) > 0
}

// TestClusterOpsCLI drives `cluster list`, `cluster transfer-leadership` and `hub status` against
// real processes, bad input included.
func TestClusterOpsCLI(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.leader(c.hubs)
	var target *hub
	for _, h := range c.hubs {
		if h != lead {
			target = h
			break
		}
	}
	hubURL := "http://" + lead.HTTP
	code, out, errOut := cli(t, "cluster", "list", "--hub", hubURL, "--token", c.token)
	if code != 0 || strings.Count(out, "hub") < 3 {
		t.Fatalf("cluster list: exit %d: %s %s", code, out, errOut)
	}
	code, out, errOut = cli(t, "hub", "status", "--hub", "http://"+target.HTTP, "--token", c.token, "-o", "json")
	var st struct {
		ID           string `json:"id"`
		State        string `json:"state"`
		AppliedIndex uint64 `json:"applied_index"`
		Disk         struct {
			TotalBytes int64 `json:"total_bytes"`
			FreeBytes  int64 `json:"free_bytes"`
		} `json:"disk"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.ID != target.ID || st.State != "follower" || st.AppliedIndex == 0 ||
		st.Disk.TotalBytes == 0 || st.Disk.FreeBytes == 0 {
		t.Fatalf("hub status -o json: exit %d: %s %s", code, out, errOut)
	}
	if code, out, _ := cli(t, "hub", "status", "--hub", hubURL, "--token", c.token); code != 0 || !strings.Contains(out, "leader") || !strings.Contains(out, "disk free") {
		t.Fatalf("hub status: exit %d: %s", code, out)
	}
	for _, bad := range [][]string{
		{"cluster", "transfer-leadership", "ghost"},
		{"cluster", "transfer-leadership", "a", "b"},
		{"hub", "status", "extra"},
		{"hub", "restore", "/nonexistent.backup", "--data", t.TempDir()},
		{"hub", "restore", "x"},
		{"hub", "backup"},
	} {
		code, out, errOut := cli(t, append(bad, "--hub", hubURL, "--token", c.token)...)
		if code == 0 || strings.TrimSpace(errOut) == "" {
			t.Errorf("%v: exit %d, stderr %q, stdout %q", bad, code, errOut, out)
		}
	}
	if code, _, errOut := cli(t, "hub", "status", "--hub", hubURL, "--token", "wrong"); code != 1 || !strings.Contains(errOut, "401") {
		t.Errorf("hub status with a bad token: exit %d: %s", code, errOut)
	}
	code, out, errOut = cli(t, "cluster", "transfer-leadership", target.ID, "--hub", "http://"+target.HTTP, "--token", c.token)
	if code != 0 || !strings.Contains(out, target.ID) {
		t.Fatalf("transfer-leadership via a follower: exit %d: %s %s", code, out, errOut)
	}
	testhelp.WaitFor(t, 10*time.Second, target.ID+" leads", func() bool { return c.leader(c.hubs) == target })
}
