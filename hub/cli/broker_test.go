package cli

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestBrokerACL(t *testing.T) {
	h := startHub(t)
	h.ok(t, "device", "add", "edge-1", "--label", "site=a")
	h.ok(t, "device", "add", "edge-2")
	out := h.ok(t, "broker", "acl", "--viewer", "grafana")
	for _, want := range []string{"user driftline-hub", "user grafana", "topic read dl/v1/#",
		"user edge-1", "topic write dl/v1/dev/edge-1/reported", "user edge-2", "topic read dl/v1/dev/edge-2/#"} {
		if !strings.Contains(out, want) {
			t.Fatalf("ACL lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "topic write dl/v1/dev/edge-1/desired") || strings.Contains(out, "topic write dl/v1/dev/edge-1/chunk") {
		t.Fatalf("a device may write desired or chunk:\n%s", out)
	}
	dir := t.TempDir()
	creds := writeFile(t, dir, "creds", []byte("# enrolled\nedge-1:tok1\ndriftline-hub:secret\n"))
	pw := filepath.Join(dir, "passwd")
	h.ok(t, "broker", "acl", "--acl-out", filepath.Join(dir, "acl"), "--credentials", creds, "--passwd-out", pw)
	b, err := os.ReadFile(pw)
	if err != nil || !strings.HasPrefix(string(b), "edge-1:$7$") || strings.Count(string(b), "\n") != 2 {
		t.Fatalf("password file: %q %v", b, err)
	}
	if st, _ := os.Stat(pw); st.Mode().Perm() != 0o600 {
		t.Fatalf("password file mode %v", st.Mode())
	}
	bad := writeFile(t, dir, "bad", []byte("nocolon\n"))
	if r := h.run(t, "broker", "acl", "--credentials", bad); r.code != ExitUsage {
		t.Fatalf("bad credentials file: exit %d", r.code)
	}
}

// TestBrokerACLKeepsOwner: Mosquitto drops to its own user before it reads password_file and
// acl_file, so the operator hands the files to that user once (docs/operations.md). Rendering
// them again must keep that owner, or the next SIGHUP leaves Mosquitto unable to read a file it
// could read before ("Unable to open pwfile") and every client is refused.
func TestBrokerACLKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP: handing a file to another user needs root")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "driftline.passwd")
	if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const uid, gid = 4242, 4343 // any user but root
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := writeOut(nil, path, []byte("new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if sys.Uid != uid || sys.Gid != gid || st.Mode().Perm() != 0o600 {
		t.Fatalf("re-rendered file: uid %d gid %d mode %v, want %d %d 0600", sys.Uid, sys.Gid, st.Mode().Perm(), uid, gid)
	}
	if b, _ := os.ReadFile(path); string(b) != "new\n" {
		t.Fatalf("content %q", b)
	}
	// A file that did not exist is created as before, owned by whoever renders it.
	fresh := filepath.Join(dir, "driftline.acl")
	if err := writeOut(nil, fresh, []byte("acl\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(fresh); err != nil || st.Sys().(*syscall.Stat_t).Uid != uint32(os.Geteuid()) {
		t.Fatalf("fresh file: %v", err)
	}
}
