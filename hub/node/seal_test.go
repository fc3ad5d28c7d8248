package node

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/seal"
	"github.com/driftline/driftline/hub/webhook"
	"github.com/driftline/driftline/internal/testhelp"
)

// TestWebhookSecretSealed: a webhook secret enters the replicated state (and so the Raft log,
// the snapshots and backups) only sealed under the cluster's seal key, which lives in each
// node's data dir; deliveries are still signed with the secret itself; a node that joins gets
// the key with its promotion and can open the secret when it leads.
func TestWebhookSecretSealed(t *testing.T) {
	n1, tok := testNode(t)
	const secret = "whsec_sealed-test-0123456789"
	var mu sync.Mutex
	var verified []error
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		verified = append(verified, webhook.Verify(secret, r.Header.Get(webhook.HeaderSignature), b, time.Now(), time.Minute))
		mu.Unlock()
	}))
	defer rcv.Close()
	call(t, n1, tok, http.MethodPost, "/api/v1/webhooks", map[string]any{"id": "ci", "url": rcv.URL, "secret": secret}, http.StatusCreated, nil)

	stored, err := n1.Reader().WebhookSecret("ci")
	if err != nil {
		t.Fatal(err)
	}
	if !seal.IsSealed(stored) || strings.Contains(stored, secret) {
		t.Fatalf("the replicated state holds the secret as %q, want it sealed", stored)
	}
	// A backup holds what the replicated state holds: no clear secret.
	req, _ := http.NewRequest(http.MethodGet, n1.URL()+"/api/v1/cluster/backup", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	backup, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !bytes.Contains(backup, []byte(`"ci"`)) && !bytes.Contains(backup, []byte("sealed:v1:")) {
		t.Logf("backup: %d, %d bytes (compressed or not naming the webhook: checked by the sealed state above)", res.StatusCode, len(backup))
	}
	if bytes.Contains(backup, []byte(secret)) {
		t.Fatal("the backup holds the webhook secret in clear")
	}

	call(t, n1, tok, http.MethodPost, "/api/v1/webhooks/ci/test", nil, http.StatusAccepted, nil)
	testhelp.WaitFor(t, 20*time.Second, "the test delivery", func() bool { mu.Lock(); defer mu.Unlock(); return len(verified) > 0 })
	mu.Lock()
	if verified[0] != nil {
		t.Fatalf("delivery signature: %v", verified[0])
	}
	mu.Unlock()

	// A node that joins gets the same key and opens the secret.
	var jt api.TokenCreated
	call(t, n1, tok, http.MethodPost, "/api/v1/cluster/join-tokens", api.JoinTokenRequest{TTLSeconds: 600}, http.StatusCreated, &jt)
	dir := t.TempDir()
	n2, err := Start(context.Background(), Config{DataDir: dir, NodeID: "n2", HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		Join: n1.URL(), JoinToken: jt.Token, Logger: testhelp.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n2.Close() })
	k1, err := seal.Load(filepath.Join(n1.cfg.DataDir, seal.FileName))
	if err != nil {
		t.Fatal(err)
	}
	k2, err := seal.Load(filepath.Join(dir, seal.FileName))
	if err != nil || k2.ID() != k1.ID() {
		t.Fatalf("joined node's seal key: %v %v", k2, err)
	}
	if st, err := os.Stat(filepath.Join(dir, seal.FileName)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("seal key file: %v %v", st, err)
	}
	if got, err := n2.openSecret(stored); err != nil || got != secret {
		t.Fatalf("the joined node opens %q, %v", got, err)
	}
}
