package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestInstallDebOnLiveSystem installs the hub and agent packages of this tree with dpkg into the
// running system (CI machines are throwaway; the test refuses to run where Driftline is already
// installed), checks what they put there (binaries, the unit files with systemd-analyze verify,
// the config file, the driftline user and its directories), starts the installed hub binary the
// way its unit does (user, environment file, ExecStart) until it serves /readyz and wrote its
// admin token, stops it with SIGTERM, then removes and purges both packages and checks they are
// gone. Needs DRIFTLINE_INTEGRATION=1, root and dpkg; skipped loudly otherwise.
func TestInstallDebOnLiveSystem(t *testing.T) {
	switch {
	case os.Getenv("DRIFTLINE_INTEGRATION") == "":
		t.Skip("SKIPPED: set DRIFTLINE_INTEGRATION=1 to install the .deb packages into this system (make ci does)")
	case os.Getuid() != 0:
		t.Skip("SKIPPED: installing packages needs root")
	}
	for _, tool := range []string{"dpkg", "dpkg-query", "systemd-analyze", "userdel", "groupdel"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPED: %s is not installed", tool)
		}
	}
	var target *struct {
		suffix, arch string
	}
	for _, tg := range targets {
		if tg.suffix == runtime.GOARCH {
			target = &struct{ suffix, arch string }{tg.suffix, tg.arch}
		}
	}
	if target == nil {
		t.Skipf("SKIPPED: no release target for this machine (%s)", runtime.GOARCH)
	}
	for _, p := range []string{"/usr/bin/driftline", "/usr/bin/driftline-agent", "/var/lib/driftline", "/etc/driftline"} {
		if _, err := os.Lstat(p); err == nil {
			t.Skipf("SKIPPED: %s exists: Driftline is installed on this machine, the test installs only on a clean one", p)
		}
	}
	if _, err := user.Lookup("driftline"); err == nil {
		t.Skip("SKIPPED: a driftline user exists already")
	}

	// The packages, from this tree's binaries, as make release builds them.
	dist, tmp := t.TempDir(), t.TempDir()
	for pkgPath, out := range map[string]string{
		"./hub/cmd/driftline":         "driftline-linux-" + target.suffix,
		"./agent/cmd/driftline-agent": "driftline-agent-linux-" + target.suffix,
	} {
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dist, out), pkgPath)
		cmd.Dir = filepath.Join("..", "..")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", pkgPath, err, b)
		}
	}
	var debs []string
	for _, p := range packages(filepath.Join("..", ".."), dist, target.suffix) {
		path, err := build(p, "1.0.0~installtest", target.arch, dist, tmp)
		if err != nil {
			t.Fatal(err)
		}
		debs = append(debs, path)
	}

	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	t.Cleanup(func() {
		// Whatever happened: no package, no user, no directories left behind.
		exec.Command("dpkg", "--purge", "driftline-hub", "driftline-agent").Run()
		exec.Command("userdel", "driftline").Run()
		exec.Command("groupdel", "driftline").Run()
		for _, p := range []string{"/var/lib/driftline", "/var/lib/driftline-agent", "/etc/driftline"} {
			os.RemoveAll(p)
		}
	})
	run("dpkg", "-i", debs[0], debs[1])

	// Files, modes, owners.
	drift, err := user.Lookup("driftline")
	if err != nil {
		t.Fatalf("the packages did not create the driftline user: %v", err)
	}
	uid, _ := strconv.Atoi(drift.Uid)
	gid, _ := strconv.Atoi(drift.Gid)
	if shell := run("getent", "passwd", "driftline"); !strings.HasSuffix(strings.TrimSpace(shell), "nologin") {
		t.Errorf("the driftline user has a login shell: %s", shell)
	}
	for _, c := range []struct {
		path     string
		mode     os.FileMode
		uid, gid int
	}{
		{"/usr/bin/driftline", 0o755, 0, 0},
		{"/usr/bin/driftline-agent", 0o755, 0, 0},
		{"/lib/systemd/system/driftline-hub.service", 0o644, 0, 0},
		{"/lib/systemd/system/driftline-agent.service", 0o644, 0, 0},
		{"/etc/driftline", os.ModeDir | 0o750, 0, gid},
		{"/etc/driftline/hub.env", 0o640, 0, gid},
		{"/var/lib/driftline", os.ModeDir | 0o700, uid, gid},
		{"/var/lib/driftline-agent", os.ModeDir | 0o700, uid, gid},
	} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Errorf("%s: %v", c.path, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode()&(os.ModeDir|os.ModePerm) != c.mode || int(st.Uid) != c.uid || int(st.Gid) != c.gid {
			t.Errorf("%s: mode %v owner %d:%d, want %v %d:%d", c.path, fi.Mode(), st.Uid, st.Gid, c.mode, c.uid, c.gid)
		}
	}
	if out, err := exec.Command("systemd-analyze", "verify", "/lib/systemd/system/driftline-hub.service",
		"/lib/systemd/system/driftline-agent.service").CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze verify of the installed units: %v\n%s", err, out)
	}
	if v := run("/usr/bin/driftline-agent", "version"); v == "" {
		t.Error("driftline-agent version printed nothing")
	}

	// Start the hub the way its unit does.
	unit := readUnit(t, "/lib/systemd/system/driftline-hub.service")
	if unit["User"] != "driftline" || !strings.HasPrefix(unit["ExecStart"], "/usr/bin/driftline ") {
		t.Fatalf("installed unit: %v", unit)
	}
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/var/lib/driftline"}
	env = append(env, envFile(t, strings.TrimPrefix(unit["EnvironmentFile"], "-"))...)
	env = append(env, strings.Fields(unit["Environment"])...)
	httpAddr, raftAddr := freeAddr(t), freeAddr(t)
	env = append(env, "DRIFTLINE_HTTP="+httpAddr, "DRIFTLINE_RAFT="+raftAddr, "DRIFTLINE_MQTT=", "DRIFTLINE_NODE_ID=installtest")
	argv := strings.Fields(unit["ExecStart"])
	hub := exec.Command(argv[0], argv[1:]...)
	hub.Env, hub.Dir = env, "/"
	hub.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	var log strings.Builder
	pr, pw := io.Pipe()
	hub.Stdout, hub.Stderr = pw, pw
	go func() {
		s := bufio.NewScanner(pr)
		for s.Scan() {
			log.WriteString(s.Text() + "\n")
		}
	}()
	if err := hub.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- hub.Wait(); pw.Close() }()
	defer func() {
		if hub.ProcessState == nil {
			hub.Process.Kill()
			<-exited
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				if _, err := os.Stat("/var/lib/driftline/admin.token"); err == nil {
					break
				}
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("the installed hub exited: %v\n%s", err, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the installed hub did not become ready\n%s", log.String())
		}
		time.Sleep(200 * time.Millisecond) // polling another process
	}
	fi, err := os.Stat("/var/lib/driftline/admin.token")
	if err != nil || fi.Sys().(*syscall.Stat_t).Uid != uint32(uid) || fi.Mode().Perm() != 0o600 {
		t.Errorf("admin token as the installed hub wrote it: %v %v", fi, err)
	}
	hub.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("the installed hub exited with %v on SIGTERM\n%s", err, log.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the installed hub did not stop within 30 s of SIGTERM (TimeoutStopSec)")
	}

	// Remove keeps the config file (a conffile), purge removes it; the data dir and the user stay
	// (a hub's state is the operator's to delete).
	run("dpkg", "-r", "driftline-hub", "driftline-agent")
	for _, p := range []string{"/usr/bin/driftline", "/usr/bin/driftline-agent", "/lib/systemd/system/driftline-hub.service"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after dpkg -r: %v", p, err)
		}
	}
	if _, err := os.Stat("/etc/driftline/hub.env"); err != nil {
		t.Errorf("dpkg -r removed the config file: %v", err)
	}
	run("dpkg", "--purge", "driftline-hub", "driftline-agent")
	if _, err := os.Stat("/etc/driftline/hub.env"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("hub.env after purge: %v", err)
	}
	for _, p := range []string{"driftline-hub", "driftline-agent"} {
		out, _ := exec.Command("dpkg-query", "-W", "-f", "${Status}", p).CombinedOutput()
		if strings.Contains(string(out), "installed") && !strings.Contains(string(out), "not-installed") {
			t.Errorf("%s after purge: %s", p, out)
		}
	}
	if _, err := os.Stat("/var/lib/driftline/admin.token"); err != nil {
		t.Errorf("purge deleted the hub's data dir: %v", err)
	}
}

// readUnit returns the [Service] keys of a unit file that the test needs (last value wins).
func readUnit(t *testing.T, path string) map[string]string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && !strings.HasPrefix(k, "#") {
			out[k] = v
		}
	}
	return out
}

// envFile reads KEY=VALUE lines of an EnvironmentFile (comments and blank lines skipped).
func envFile(t *testing.T, path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}

func freeAddr(t *testing.T) string {
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr())
}
