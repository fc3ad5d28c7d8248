// Package examples holds the files the README's first session uses, and the test that runs it.
package examples

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/freeport"
	"github.com/driftline/driftline/internal/hubproc"
	"github.com/driftline/driftline/internal/testhelp"
)

// section is the README heading whose code blocks the test runs.
const section = "## A first session by hand"

// TestReadmeFirstSession runs the sh blocks of the README's first session as written, from a
// temporary copy of the repository's examples/ with `make build` putting the binaries in its
// bin/, against a real hub and agent. What it changes, and only this, so that it runs beside
// anything else on the machine:
//   - the hub's ports come from DRIFTLINE_HTTP, DRIFTLINE_RAFT and DRIFTLINE_MQTT (free ports;
//     `hub serve` reads them), the CLI's from DRIFTLINE_HUB;
//   - `make build` builds into the temporary bin/ (make BIN=...);
//   - /tmp/ paths are under the temporary directory;
//   - `driftline-agent run` gets --metrics on a free port, and 127.0.0.1:9100 (its default) in
//     later lines becomes that port;
//   - ROLLOUT_ID is the id `rollout create` printed;
//   - a command ending in & runs in the background, and a --watch runs in the background until
//     the end (as a user's Ctrl-C), each stopped when the test ends.
//
// Between the blocks it waits, as the README says, until the agent runs the model. A comment
// "# exits N" on a line is the exit code that line must have; every other line must exit 0.
// It ends with the model active on the device, its bytes those of examples/model.onnx, and the
// agent validating examples/data.csv against the contract that came with it.
func TestReadmeFirstSession(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and runs a hub and an agent")
	}
	for _, tool := range []string{"make", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP (loudly): %s is not installed; the README's commands need it", tool)
		}
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := shBlocks(t, string(readme))
	if len(blocks) != 2 {
		t.Fatalf("the README's %q has %d sh blocks; the test runs the session, then the data feed (2)", section, len(blocks))
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	copyExamples(t, work)
	r := &runner{
		t: t, repo: repo, work: work,
		http: freeport.Addr(t), raft: freeport.Addr(t), mqtt: freeport.Addr(t), metrics: freeport.Addr(t),
	}
	defer r.stopAll()
	for _, line := range blocks[0] {
		r.run(line)
	}

	// "Once edge-1 runs the model": the agent switched current to version 1, whose file is the
	// model pushed, and the hub sees it active.
	current := filepath.Join(work, "tmp", "m1", "anomaly", "current")
	testhelp.WaitFor(t, 3*time.Minute, "edge-1 runs anomaly v1", func() bool {
		out, code := r.cli("device", "show", "edge-1", "-o", "json")
		var d struct {
			Reported struct {
				Models map[string]struct {
					Active *int   `json:"active"`
					State  string `json:"state"`
				} `json:"models"`
			} `json:"reported"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &d) != nil {
			return false
		}
		m := d.Reported.Models["anomaly"]
		return m.Active != nil && *m.Active == 1 && m.State == "active"
	})
	got, err := os.ReadFile(filepath.Join(current, "model"))
	if err != nil {
		t.Fatalf("the agent's current model: %v", err)
	}
	want, err := os.ReadFile(filepath.Join(work, "examples", "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the active model's bytes (%d) are not examples/model.onnx (%d)", len(got), len(want))
	}

	// The second block feeds the agent the day of data; its answer is the ingest summary.
	for _, line := range blocks[1] {
		out := r.run(line)
		var sum struct {
			Rows    int64 `json:"rows"`
			Valid   int64 `json:"valid_rows"`
			Invalid int64 `json:"invalid_rows"`
		}
		if err := json.Unmarshal([]byte(out), &sum); err != nil {
			t.Fatalf("%s: the agent's answer is not an ingest summary: %v\n%s", line, err, out)
		}
		if sum.Rows != 100 || sum.Valid != 98 || sum.Invalid != 2 {
			t.Errorf("the agent validated %+v of examples/data.csv, want 100 rows with 2 invalid", sum)
		}
	}
}

// shBlocks returns the lines of each ```sh block of the README's first-session section,
// without comments and blank lines.
func shBlocks(t *testing.T, readme string) [][]string {
	t.Helper()
	i := strings.Index(readme, section)
	if i < 0 {
		t.Fatalf("the README has no %q section", section)
	}
	body := readme[i+len(section):]
	if j := strings.Index(body, "\n## "); j >= 0 {
		body = body[:j]
	}
	var blocks [][]string
	for {
		a := strings.Index(body, "```sh\n")
		if a < 0 {
			return blocks
		}
		body = body[a+len("```sh\n"):]
		b := strings.Index(body, "```")
		if b < 0 {
			t.Fatal("an sh block of the README is not closed")
		}
		var lines []string
		for _, l := range strings.Split(body[:b], "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				lines = append(lines, l)
			}
		}
		blocks = append(blocks, lines)
		body = body[b+3:]
	}
}

// copyExamples copies this folder's data files into dir/examples, as the README expects them
// relative to where it runs.
func copyExamples(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "examples"), 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() || strings.HasSuffix(e.Name(), ".go") {
			continue
		}
		b, err := os.ReadFile(e.Name())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "examples", e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// runner runs README lines in the work directory.
type runner struct {
	t                         *testing.T
	repo, work                string
	http, raft, mqtt, metrics string
	rolloutID                 string

	mu sync.Mutex
	bg []*bgProc
}

type bgProc struct {
	line string
	cmd  *exec.Cmd
	out  *hubproc.Output
	done chan error
}

var exitsRE = regexp.MustCompile(`#\s*exits (\d+)`)

// words splits a command line into words the way sh does for the forms the README uses: plain
// words and single- or double-quoted ones. Anything else of the shell's (variables, pipes,
// redirections, ;) fails the test: the runner would not run it as sh does.
func words(t *testing.T, line string) []string {
	t.Helper()
	var out []string
	var cur strings.Builder
	in, quote := false, byte(0)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '\'' || c == '"':
			quote, in = c, true
		case c == ' ' || c == '\t':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		case strings.IndexByte("$|;<>`\\(){}*?", c) >= 0:
			t.Fatalf("README line %q uses shell syntax (%q) the test does not run", line, c)
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if quote != 0 {
		t.Fatalf("README line %q has an unclosed quote", line)
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

// env is the environment of every command: the caller's without DRIFTLINE_* settings, and the
// hub's addresses.
func (r *runner) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DRIFTLINE_") {
			env = append(env, kv)
		}
	}
	return append(env, "DRIFTLINE_HTTP="+r.http, "DRIFTLINE_RAFT="+r.raft, "DRIFTLINE_MQTT="+r.mqtt,
		"DRIFTLINE_HUB=http://"+r.http)
}

// run runs one README line and returns its standard output.
func (r *runner) run(line string) string {
	t := r.t
	t.Helper()
	wantCode := 0
	if m := exitsRE.FindStringSubmatch(line); m != nil {
		wantCode, _ = strconv.Atoi(m[1])
	}
	if k := strings.Index(line, " #"); k >= 0 {
		line = strings.TrimSpace(line[:k])
	}
	background := strings.HasSuffix(line, "&")
	line = strings.TrimSpace(strings.TrimSuffix(line, "&"))
	args := words(t, line)
	if len(args) == 0 {
		return ""
	}
	for i, a := range args {
		a = strings.ReplaceAll(a, "127.0.0.1:9100", r.metrics)
		if strings.HasPrefix(a, "/tmp/") {
			a = filepath.Join(r.work, a)
		}
		if a == "ROLLOUT_ID" {
			if r.rolloutID == "" {
				t.Fatalf("%s: no rollout id printed before", line)
			}
			a = r.rolloutID
		}
		args[i] = a
	}
	switch {
	case len(args) == 2 && args[0] == "make" && args[1] == "build":
		args = []string{"make", "-C", r.repo, "build", "BIN=" + filepath.Join(r.work, "bin")}
	case strings.HasPrefix(args[0], "./bin/"):
		args[0] = filepath.Join(r.work, args[0])
	}
	if filepath.Base(args[0]) == "driftline-agent" && len(args) > 1 && args[1] == "run" {
		args = append(args, "--metrics", r.metrics)
	}
	if background || args[len(args)-1] == "--watch" {
		r.start(line, args)
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir, cmd.Env = r.work, r.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	t.Logf("$ %s -> %d\n%s%s", line, code, tail(stdout.String()), tail(stderr.String()))
	if code != wantCode {
		r.dumpBackground()
		t.Fatalf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", line, code, wantCode, stdout.String(), stderr.String())
	}
	if m := regexp.MustCompile(`(?m)^rollout (\S+): `).FindStringSubmatch(stdout.String()); m != nil && strings.Contains(line, "rollout create") {
		r.rolloutID = m[1]
	}
	return stdout.String()
}

// cli runs the built driftline client with the runner's environment.
func (r *runner) cli(args ...string) (string, int) {
	cmd := exec.Command(filepath.Join(r.work, "bin", "driftline"), args...)
	cmd.Dir, cmd.Env = r.work, r.env()
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		return "", -1
	}
	return string(out), 0
}

// start runs a command in the background until stopAll.
func (r *runner) start(line string, args []string) {
	t := r.t
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir, cmd.Env = r.work, r.env()
	out := &hubproc.Output{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	p := &bgProc{line: line, cmd: cmd, out: out, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	r.mu.Lock()
	r.bg = append(r.bg, p)
	r.mu.Unlock()
	t.Logf("$ %s &  (pid %d)", line, cmd.Process.Pid)
}

// stopAll stops the background commands, newest first (the agent before the hub), each with
// SIGTERM and, after 30 s, SIGKILL, and logs what each printed.
func (r *runner) stopAll() {
	r.mu.Lock()
	bg := r.bg
	r.bg = nil
	r.mu.Unlock()
	for i := len(bg) - 1; i >= 0; i-- {
		p := bg[i]
		select {
		case err := <-p.done:
			r.t.Logf("%s ended early (%v):\n%s", p.line, err, tail(p.out.String()))
			continue
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
			r.t.Errorf("%s did not stop on SIGTERM within 30 s", p.line)
		}
		r.t.Logf("%s printed:\n%s", p.line, tail(p.out.String()))
	}
}

// dumpBackground logs what the background commands printed so far.
func (r *runner) dumpBackground() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.bg {
		r.t.Logf("%s so far:\n%s", p.line, tail(p.out.String()))
	}
}

// tail keeps the last 4 KiB of s.
func tail(s string) string {
	const max = 4 << 10
	if len(s) > max {
		return fmt.Sprintf("...(%d bytes)...\n%s", len(s)-max, s[len(s)-max:])
	}
	return s
}
