package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/node"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/enrol"
)

func TestDeviceCommands(t *testing.T) {
	h := startHub(t)
	cfgPath := filepath.Join(t.TempDir(), "agent.yaml")
	out := h.ok(t, "device", "add", "edge-1", "--label", "site=berlin", "--label", "tier=edge", "--agent-config", cfgPath)
	if !strings.Contains(out, "added device edge-1") || strings.Contains(out, "dl_") {
		t.Errorf("device add with --agent-config printed %q (the token belongs in the file only)", out)
	}
	st, err := os.Stat(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("agent config mode %v, want 0600", st.Mode().Perm())
	}
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var cfg enrol.Config
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("agent config is not YAML: %v\n%s", err, raw)
	}
	roots, err := h.n.Reader().TrustRoots()
	if err != nil || len(roots) == 0 {
		t.Fatalf("roots %d, %v", len(roots), err)
	}
	if cfg.DeviceID != "edge-1" || !strings.HasPrefix(cfg.Token, "dl_") || cfg.Hub != h.url ||
		len(cfg.Brokers) != 1 || cfg.Brokers[0] != DefaultBroker || len(cfg.TrustedKeys) != 0 || cfg.TrustedRoot != string(roots[len(roots)-1]) {
		t.Fatalf("agent config %+v", cfg)
	}

	// The file reads back as the enrolment file both binaries share (agent/config's tests load
	// such files as the agent's config).
	if ac, err := enrol.Read(cfgPath); err != nil {
		t.Errorf("the config the CLI wrote does not read back: %v", err)
	} else if ac.DeviceID != "edge-1" || ac.Token != cfg.Token {
		t.Errorf("the agent read %q/%q", ac.DeviceID, ac.Token)
	}

	// The token in the file works: the device reads its own record and nobody else's.
	asDevice := map[string]string{"DRIFTLINE_HUB": h.url, "DRIFTLINE_TOKEN": cfg.Token}
	if r := runCLI(t, asDevice, "device", "show", "edge-1"); r.code != 0 || !strings.Contains(r.stdout, "site=berlin,tier=edge") {
		t.Errorf("device token reading itself: exit %d\n%s", r.code, r.stdout)
	}
	h.ok(t, "device", "add", "edge-2", "--label", "site=paris")
	if r := runCLI(t, asDevice, "device", "show", "edge-2"); r.code != ExitRefused || !strings.Contains(r.stderr, "403") {
		t.Errorf("device token reading another device: exit %d, stderr %q", r.code, r.stderr)
	}

	// --broker wins over the default.
	cfg2 := filepath.Join(t.TempDir(), "agent2.yaml")
	h.ok(t, "device", "add", "edge-3", "--agent-config", cfg2, "--broker", "ssl://a:8883,ssl://b:8883")
	raw, _ = os.ReadFile(cfg2)
	cfg = enrol.Config{}
	if err := yaml.Unmarshal(raw, &cfg); err != nil || len(cfg.Brokers) != 2 || cfg.Brokers[1] != "ssl://b:8883" {
		t.Errorf("agent config with --broker: %+v (%v)", cfg, err)
	}

	// Without --agent-config the token is printed once.
	var created api.DeviceCreated
	h.okJSON(t, &created, "device", "add", "edge-4")
	if created.ID != "edge-4" || !strings.HasPrefix(created.Token, "dl_") {
		t.Errorf("device add -o json: %+v", created)
	}

	h.ok(t, "device", "label", "edge-1", "tier-", "rack=7")
	var d state.Device
	h.okJSON(t, &d, "device", "show", "edge-1")
	if d.Labels["rack"] != "7" || d.Labels["site"] != "berlin" || d.Labels["tier"] != "" || len(d.Labels) != 2 {
		t.Errorf("labels after label edge-1 tier- rack=7: %v", d.Labels)
	}
	var page state.Page[state.Device]
	h.okJSON(t, &page, "device", "list", "--selector", "site=berlin")
	if len(page.Items) != 1 || page.Items[0].ID != "edge-1" {
		t.Errorf("list --selector site=berlin: %+v", page.Items)
	}
	if table := h.ok(t, "device", "list"); strings.Count(table, "edge-") != 4 {
		t.Errorf("device list table:\n%s", table)
	}

	h.ok(t, "model", "create", "m")
	h.ok(t, "model", "push", "m", "--artifact", writeFile(t, t.TempDir(), "m.bin", []byte("weights")))
	if r := h.run(t, "device", "pin", "edge-2", "m", "1"); r.code != ExitRefused || !strings.Contains(r.stderr, "409") {
		t.Errorf("pin of a registered version: exit %d, stderr %q", r.code, r.stderr)
	}
	h.ok(t, "model", "approve", "m", "1")
	h.ok(t, "device", "pin", "edge-2", "m", "1")
	h.okJSON(t, &d, "device", "show", "edge-2")
	if d.Desired["m"].Version != 1 {
		t.Errorf("desired after pin: %+v", d.Desired)
	}

	h.ok(t, "device", "remove", "edge-1")
	if r := h.run(t, "device", "show", "edge-1"); r.code != ExitRefused || !strings.Contains(r.stderr, "404") {
		t.Errorf("show after remove: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runCLI(t, asDevice, "device", "show", "edge-1"); r.code != ExitRefused || !strings.Contains(r.stderr, "401") {
		t.Errorf("removed device's token: exit %d, stderr %q", r.code, r.stderr)
	}
	for _, args := range [][]string{
		{"device", "label", "edge-2"},
		{"device", "label", "edge-2", "novalue"},
		{"device", "label", "edge-2", "-"},
		{"device", "add", "x", "--label", "=v"},
		{"device", "pin", "edge-2", "m", "-1"},
	} {
		if r := h.run(t, args...); r.code != ExitUsage {
			t.Errorf("%v: exit %d, want %d", args, r.code, ExitUsage)
		}
	}
}

func TestTokenCommands(t *testing.T) {
	h := startHub(t)
	var tok api.TokenCreated
	h.okJSON(t, &tok, "token", "create", "ci", "--role", "viewer")
	if tok.Role != "viewer" || !strings.HasPrefix(tok.Token, "dl_") {
		t.Fatalf("token create: %+v", tok)
	}
	list := h.ok(t, "token", "list")
	if !strings.Contains(list, tok.ID) || !strings.Contains(list, "viewer") || strings.Contains(list, tok.Token) {
		t.Errorf("token list:\n%s", list)
	}
	viewer := map[string]string{"DRIFTLINE_HUB": h.url, "DRIFTLINE_TOKEN": tok.Token}
	if r := runCLI(t, viewer, "dataset", "list"); r.code != 0 {
		t.Errorf("viewer reads datasets: exit %d", r.code)
	}
	if r := runCLI(t, viewer, "dataset", "create", "x"); r.code != ExitRefused || !strings.Contains(r.stderr, "403") {
		t.Errorf("viewer creates a dataset: exit %d, stderr %q", r.code, r.stderr)
	}
	h.ok(t, "token", "revoke", tok.ID)
	if r := runCLI(t, viewer, "dataset", "list"); r.code != ExitRefused || !strings.Contains(r.stderr, "401") {
		t.Errorf("revoked token: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := h.run(t, "token", "create", "x"); r.code != ExitUsage {
		t.Errorf("token create without --role: exit %d", r.code)
	}
	if r := h.run(t, "token", "create", "x", "--role", "wizard"); r.code != ExitRefused || !strings.Contains(r.stderr, "field: role") {
		t.Errorf("token create --role wizard: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestKeyCommands(t *testing.T) {
	h := startHub(t)
	list := h.ok(t, "key", "list")
	if !strings.Contains(list, "root of trust: version 1") || strings.Count(list, "active") != 1 {
		t.Fatalf("key list:\n%s", list)
	}
	var page keyPage
	h.okJSON(t, &page, "key", "rotate")
	if page.RootVersion != 2 || len(page.Items) != 2 {
		t.Fatalf("key rotate: %+v", page)
	}
	old := page.Items[0]
	if old.Signer {
		old = page.Items[1]
	}
	if r := h.run(t, "key", "retire", "ed25519:0000000000000000"); r.code != ExitRefused || !strings.Contains(r.stderr, "404") {
		t.Errorf("retire an unknown key: exit %d, stderr %q", r.code, r.stderr)
	}
	out := h.ok(t, "key", "retire", old.KeyID)
	if !strings.Contains(out, "root version 3") || !strings.Contains(out, "retired") {
		t.Fatalf("key retire:\n%s", out)
	}

	// Offline: the new root is signed by the CLI with a root key file; a stranger's root key is
	// refused before anything is sent.
	stranger := filepath.Join(t.TempDir(), "stranger.key")
	if _, err := artifact.LoadOrGenerateKey(stranger); err != nil {
		t.Fatal(err)
	}
	if r := h.run(t, "key", "rotate", "--root-key", stranger); r.code != ExitUsage || !strings.Contains(r.stderr, "not this cluster's root key") {
		t.Fatalf("rotate with a stranger's root key: exit %d, stderr %q", r.code, r.stderr)
	}
	rootKey := filepath.Join(h.dir, node.RootKeyFile)
	h.okJSON(t, &page, "key", "rotate", "--root-key", rootKey)
	if page.RootVersion != 4 || len(page.Items) != 3 {
		t.Fatalf("offline rotate: %+v", page)
	}
	var prev string
	for _, k := range page.Items {
		if k.Status == "active" && !k.Signer {
			prev = k.KeyID
		}
	}
	out = h.ok(t, "key", "retire", prev, "--root-key", rootKey)
	if !strings.Contains(out, "root version 5") {
		t.Fatalf("offline retire:\n%s", out)
	}

	// Root key rotation: version 6 is signed by the old and the new root key (generated here).
	newRoot := filepath.Join(t.TempDir(), "new-root.key")
	out = h.ok(t, "key", "rotate-root", "--root-key", rootKey, "--new-root-key", newRoot)
	if !strings.Contains(out, "root key rotated: root version 6") {
		t.Fatalf("key rotate-root:\n%s", out)
	}
	if st, err := os.Stat(newRoot); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("new root key file: %v %v", st, err)
	}
	// The old root key signs nothing any more: not through the leader, not offline.
	if r := h.run(t, "key", "rotate"); r.code == 0 || !strings.Contains(r.stderr, "409") {
		t.Fatalf("rotate with the leader's old root key: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := h.run(t, "key", "rotate", "--root-key", rootKey); r.code != ExitUsage || !strings.Contains(r.stderr, "not this cluster's root key") {
		t.Fatalf("rotate with the old root key: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := h.run(t, "key", "rotate-root", "--root-key", rootKey, "--new-root-key", stranger); r.code != ExitUsage {
		t.Fatalf("rotate-root with the old root key: exit %d, stderr %q", r.code, r.stderr)
	}
	h.okJSON(t, &page, "key", "rotate", "--root-key", newRoot)
	if page.RootVersion != 7 {
		t.Fatalf("rotate with the new root key: %+v", page)
	}
}

// TestDeviceRotateToken: `device rotate-token` prints a new token once (or writes it into an agent
// config); the old token is refused from then on and the new one works.
func TestDeviceRotateToken(t *testing.T) {
	h := startHub(t)
	out := h.ok(t, "device", "add", "edge-1")
	old := tokenIn(t, out)
	out = h.ok(t, "device", "rotate-token", "edge-1")
	if !strings.Contains(out, "rotated the token of device edge-1") {
		t.Fatalf("rotate-token printed %q", out)
	}
	fresh := tokenIn(t, out)
	if fresh == old {
		t.Fatal("the token did not change")
	}
	if r := runCLI(t, map[string]string{"DRIFTLINE_HUB": h.url, "DRIFTLINE_TOKEN": old}, "device", "show", "edge-1"); r.code == 0 {
		t.Fatal("the old token still works")
	}
	if r := runCLI(t, map[string]string{"DRIFTLINE_HUB": h.url, "DRIFTLINE_TOKEN": fresh}, "device", "show", "edge-1"); r.code != 0 {
		t.Fatalf("the new token does not work: %d %s", r.code, r.stderr)
	}
	cfgPath := filepath.Join(t.TempDir(), "agent.yaml")
	h.ok(t, "device", "rotate-token", "edge-1", "--agent-config", cfgPath)
	ac, err := enrol.Read(cfgPath)
	if err != nil || ac.Token == fresh || !strings.HasPrefix(ac.Token, "dl_") {
		t.Fatalf("agent config after a second rotation: %+v %v", ac, err)
	}
	if r := h.run(t, "device", "rotate-token", "ghost"); r.code == 0 {
		t.Fatal("rotating an unknown device succeeded")
	}
}

// tokenIn returns the token of a "token: ..." line.
func tokenIn(t *testing.T, out string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if tok, ok := strings.CutPrefix(l, "token: "); ok {
			return strings.TrimSpace(tok)
		}
	}
	t.Fatalf("no token in %q", out)
	return ""
}
