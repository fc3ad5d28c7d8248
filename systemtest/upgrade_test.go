package systemtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/freeport"
	"github.com/driftline/driftline/internal/hubproc"
	"github.com/driftline/driftline/internal/testhelp"
)

// previousRelease reads the commit of testdata/previous-release.
func previousRelease(t *testing.T) string {
	f, err := os.Open("testdata/previous-release")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line != "" && !strings.HasPrefix(line, "#") {
			return strings.Fields(line)[0]
		}
	}
	t.Fatal("testdata/previous-release names no commit")
	return ""
}

// buildPrevious exports the previous release's tree from git (read-only: git archive, so the
// repository and its worktrees are not touched) and builds its hub and agent.
func buildPrevious(t *testing.T, commit string) (hubBin, agentBin string) {
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("SKIPPED: not a git checkout (%v): the previous release is built from git", err)
	}
	if err := exec.Command("git", "cat-file", "-e", commit+"^{commit}").Run(); err != nil {
		t.Skipf("SKIPPED: commit %s of testdata/previous-release is not in this clone (a shallow clone?)", commit)
	}
	src := t.TempDir()
	export := exec.Command("sh", "-c", "git -C \"$1\" archive \"$2\" | tar -x -C \"$3\"", "sh", strings.TrimSpace(string(root)), commit, src)
	if out, err := export.CombinedOutput(); err != nil {
		t.Fatalf("export %s: %v\n%s", commit, err, out)
	}
	bin := t.TempDir()
	hubBin, agentBin = filepath.Join(bin, "driftline-old"), filepath.Join(bin, "driftline-agent-old")
	for out, pkg := range map[string]string{hubBin: "./hub/cmd/driftline", agentBin: "./agent/cmd/driftline-agent"} {
		b := exec.Command("go", "build", "-o", out, pkg)
		b.Dir = src
		if o, err := b.CombinedOutput(); err != nil {
			t.Fatalf("build %s at %s: %v\n%s", pkg, commit, err, o)
		}
	}
	return hubBin, agentBin
}

// TestRollingUpgrade runs the previous release (testdata/previous-release) as a 3-node cluster
// with two of its agents online, replaces the hub nodes one at a time with this build, and checks
// that nothing is lost, every agent keeps its model, and the old agents take a new version from
// the new hubs.
func TestRollingUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED in -short: builds the previous release")
	}
	oldHub, oldAgent := buildPrevious(t, previousRelease(t))
	c := emptyCluster(t) // its cleanup, registered first, runs after the agents'
	mqtt := map[string]string{}
	var agents []*exec.Cmd
	var agentLogs []*hubproc.Output
	t.Cleanup(func() {
		for _, a := range agents {
			a.Process.Signal(os.Interrupt)
			a.Wait()
		}
		if t.Failed() {
			for i, l := range agentLogs {
				t.Logf("log of agent %d:\n%s", i, tail(l.String(), 3000))
			}
		}
	})
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("hub%d", i)
		c.hubs = append(c.hubs, c.newHub(id))
		mqtt[id] = freeport.Addr(t)
	}
	var brokers []string
	for _, h := range c.hubs {
		brokers = append(brokers, "tcp://"+mqtt[h.ID])
	}
	start := func(bin string, h *hub, join string) {
		h.MQTT = mqtt[h.ID]
		h.Args = []string{"--advertise-mqtt", strings.Join(brokers, ",")}
		if join != "" {
			h.Start(t, bin, "--join", join, "--join-token", c.token)
			return
		}
		h.Start(t, bin)
	}
	first := "http://" + c.hubs[0].HTTP
	join := func(h *hub) string {
		if h == c.hubs[0] {
			return "http://" + c.hubs[1].HTTP
		}
		return first
	}
	start(oldHub, c.hubs[0], "")
	c.token = hubproc.ReadToken(t, c.hubs[0].Dir)
	start(oldHub, c.hubs[1], first)
	start(oldHub, c.hubs[2], first)
	c.waitVoters(3)

	// State on the old cluster: datasets, a model, two enrolled devices running version 1.
	for i := 0; i < 20; i++ {
		if code, b := c.do(c.hubs[i%3], http.MethodPost, "/api/v1/datasets", map[string]string{"name": fmt.Sprintf("old-%02d", i)}); code != http.StatusCreated {
			t.Fatalf("dataset: %d %s", code, b)
		}
	}
	lead := c.leader(c.hubs)
	if code, b := c.do(lead, http.MethodPost, "/api/v1/models", map[string]string{"name": "m"}); code != http.StatusCreated {
		t.Fatalf("model: %d %s", code, b)
	}
	if code, b := c.uploadTiny(lead, "m"); code != http.StatusCreated {
		t.Fatalf("upload: %d %s", code, b)
	}
	if code, b := c.do(lead, http.MethodPost, "/api/v1/models/m/versions/1/approve", nil); code != http.StatusOK {
		t.Fatalf("approve: %d %s", code, b)
	}
	devs := []string{"edge-1", "edge-2"}
	for _, dev := range devs {
		cfg := filepath.Join(c.base, dev+".yaml")
		out, err := exec.Command(oldHub, "device", "add", dev, "--agent-config", cfg, "--hub", "http://"+lead.HTTP, "--token", c.token).CombinedOutput()
		if err != nil {
			t.Fatalf("device add: %v\n%s", err, out)
		}
		if code, b := c.do(lead, http.MethodPut, "/api/v1/devices/"+dev+"/models/m", map[string]int{"version": 1}); code != http.StatusOK {
			t.Fatalf("desired: %d %s", code, b)
		}
		a := exec.Command(oldAgent, "run", "--config", cfg, "--state-dir", filepath.Join(c.base, dev, "state"),
			"--model-dir", filepath.Join(c.base, dev, "models"), "--metrics", "off")
		l := &hubproc.Output{}
		a.Stdout, a.Stderr = l, l
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		agents, agentLogs = append(agents, a), append(agentLogs, l)
	}
	active := func(h *hub, dev string, version int) bool {
		code, b := c.do(h, http.MethodGet, "/api/v1/devices/"+dev, nil)
		var d struct {
			Online   bool `json:"online"`
			Reported struct {
				Models map[string]struct {
					Active *int `json:"active"`
				} `json:"models"`
			} `json:"reported"`
		}
		if code != http.StatusOK || json.Unmarshal(b, &d) != nil {
			return false
		}
		m, ok := d.Reported.Models["m"]
		return ok && m.Active != nil && *m.Active == version
	}
	for _, dev := range devs {
		testhelp.WaitFor(t, 60*time.Second, dev+" runs version 1 on the old cluster", func() bool { return active(c.hubs[0], dev, 1) })
	}
	_, artifact := c.do(lead, http.MethodGet, "/api/v1/models/m/versions/1/artifact", nil)

	// Replace the nodes one at a time: followers first, the leader last, each caught up before
	// the next goes.
	order := []*hub{}
	for _, h := range c.hubs {
		if h != lead {
			order = append(order, h)
		}
	}
	order = append(order, lead)
	for _, h := range order {
		if h == lead {
			c.rolloutMixed(oldHub, h, start, join(h))
		}
		c.stop(h)
		start(binary, h, join(h))
		c.waitVoters(3)
		c.waitSame(c.hubs)
		if code, b := c.do(h, http.MethodPost, "/api/v1/datasets", map[string]string{"name": "after-" + h.ID}); code != http.StatusCreated {
			t.Fatalf("write after upgrading %s: %d %s", h.ID, code, b)
		}
		t.Logf("%s runs the new build", h.ID)
	}
	c.waitSame(c.hubs)
	for _, h := range c.hubs {
		have := c.datasets(h)
		for i := 0; i < 20; i++ {
			if !have[fmt.Sprintf("old-%02d", i)] {
				t.Fatalf("%s lost old-%02d", h.ID, i)
			}
		}
		for _, x := range c.hubs {
			if !have["after-"+x.ID] {
				t.Fatalf("%s lacks after-%s", h.ID, x.ID)
			}
		}
		if code, got := c.do(h, http.MethodGet, "/api/v1/models/m/versions/1/artifact", nil); code != http.StatusOK || string(got) != string(artifact) {
			t.Fatalf("%s: artifact %d, %d bytes", h.ID, code, len(got))
		}
		for _, dev := range devs {
			if !active(h, dev, 1) {
				t.Fatalf("%s: %s no longer reports version 1 active", h.ID, dev)
			}
		}
	}
	if code, out, errOut := cli(t, "audit", "verify", "--hub", "http://"+c.hubs[0].HTTP, "--token", c.token); code != 0 {
		t.Fatalf("audit verify after the upgrade: %d %s %s", code, out, errOut)
	}

	// The old agents take a new version from the new hubs. Approvals are signed by the leader's
	// key and the agents trust the keys they were enrolled with (hub1's), so hub1 leads.
	if l := c.leader(c.hubs); l != c.hubs[0] {
		if code, out, errOut := cli(t, "cluster", "transfer-leadership", "hub1", "--hub", "http://"+l.HTTP, "--token", c.token); code != 0 {
			t.Fatalf("transfer leadership to hub1: %d %s %s", code, out, errOut)
		}
	}
	testhelp.WaitFor(t, 10*time.Second, "hub1 leads", func() bool { return c.leader(c.hubs) == c.hubs[0] })
	if code, b := c.uploadBytes(c.hubs[0], "m", []byte("version two of a tiny model")); code != http.StatusCreated {
		t.Fatalf("upload v2: %d %s", code, b)
	}
	// The first leader on the new build creates the root of trust; until it has, an approval
	// answers 503 (Retry-After), and a client tries again.
	var code int
	var b []byte
	testhelp.WaitFor(t, 30*time.Second, "the new leader to take the approval of v2", func() bool {
		code, b = c.do(c.hubs[0], http.MethodPost, "/api/v1/models/m/versions/2/approve", nil)
		return code != http.StatusServiceUnavailable
	})
	if code != http.StatusOK {
		t.Fatalf("approve v2: %d %s", code, b)
	}
	for _, dev := range devs {
		if code, b := c.do(c.hubs[0], http.MethodPut, "/api/v1/devices/"+dev+"/models/m", map[string]int{"version": 2}); code != http.StatusOK {
			t.Fatalf("desired v2: %d %s", code, b)
		}
	}
	for _, dev := range devs {
		testhelp.WaitFor(t, 60*time.Second, dev+" (old agent) runs version 2 from the new hubs", func() bool { return active(c.hubs[0], dev, 2) })
	}
}

// bigRolloutDevices is one device more than a part of a split rollout (state.DefaultPartDevices):
// a rollout of them is one the new build would write in parts.
const bigRolloutDevices = 1001

// rolloutMixed runs the mixed phase the leader-last order never has: a leader of the new build
// with a live node of the old one. It stops old (the old build's leader; the two upgraded
// followers elect a new leader), starts it again on the old build (a follower now), and creates
// a rollout of bigRolloutDevices devices through the new leader: with an old node in the cluster
// the leader must write it whole, as the old build did, and the old node keeps applying (before
// the leader asked the nodes' builds, it wrote the rollout in parts and the old node stopped at
// them). The rollout is aborted before the upgrade goes on.
func (c *cluster) rolloutMixed(oldHub string, old *hub, start func(string, *hub, string), join string) {
	t := c.t
	t.Helper()
	c.stop(old)
	start(oldHub, old, join)
	c.waitVoters(3)
	c.waitSame(c.hubs)
	lead := c.leader(c.hubs)
	if lead == old {
		t.Fatalf("%s (old build) leads again after its restart", old.ID)
	}
	var wg sync.WaitGroup
	errs := make(chan string, bigRolloutDevices)
	ids := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ids {
				body := map[string]any{"id": fmt.Sprintf("big-%04d", i), "labels": map[string]string{"fleet": "big"}}
				if code, b := c.do(lead, http.MethodPost, "/api/v1/devices", body); code != http.StatusCreated {
					errs <- fmt.Sprintf("device %d: %d %s", i, code, b)
				}
			}
		}()
	}
	for i := 0; i < bigRolloutDevices; i++ {
		ids <- i
	}
	close(ids)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	code, b := c.do(lead, http.MethodPost, "/api/v1/rollouts", map[string]any{"model": "m", "version": 1,
		"selector": "fleet=big", "waves": []int{100}, "bake_seconds": 0})
	var ro struct {
		ID    string `json:"id"`
		Total int    `json:"total"`
	}
	if code != http.StatusCreated || json.Unmarshal(b, &ro) != nil || ro.Total != bigRolloutDevices {
		t.Fatalf("rollout of %d devices in the mixed cluster: %d %s", bigRolloutDevices, code, b)
	}
	c.waitSame(c.hubs)
	if code, b := c.do(old, http.MethodGet, "/api/v1/rollouts/"+ro.ID, nil); code != http.StatusOK {
		t.Fatalf("the old node does not have the rollout: %d %s", code, b)
	}
	if code, b := c.do(lead, http.MethodPost, "/api/v1/datasets", map[string]string{"name": "after-big-rollout"}); code != http.StatusCreated {
		t.Fatalf("write after the rollout: %d %s", code, b)
	}
	c.waitSame(c.hubs) // the old node still applies
	if code, b := c.do(lead, http.MethodPost, "/api/v1/rollouts/"+ro.ID+"/abort", map[string]string{"reason": "test done"}); code != http.StatusOK {
		t.Fatalf("abort the rollout: %d %s", code, b)
	}
	c.waitSame(c.hubs)
	t.Logf("a rollout of %d devices applied on every node of the mixed cluster (leader %s, %s on the old build)", bigRolloutDevices, lead.ID, old.ID)
}

// uploadBytes registers a model version with the given content.
func (c *cluster) uploadBytes(h *hub, model string, data []byte) (int, []byte) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("artifact", "m.bin")
	fw.Write(data)
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
