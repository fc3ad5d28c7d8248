package cli

import (
	"os"
	"path/filepath"
	"strings"
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
