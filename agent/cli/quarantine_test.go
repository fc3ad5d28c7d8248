package cli

import (
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/agent/pipeline"
	"github.com/driftline/driftline/shared/artifact"
)

// TestQuarantineOfAnAgent: `quarantine list` shows the rows an agent's pipeline quarantined,
// in the namespace the agent keeps them in (its extensions' part of the database).
func TestQuarantineOfAnAgent(t *testing.T) {
	dir := t.TempDir()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.DeviceID, cfg.Token, cfg.Brokers = "dev-q", "token", []string{"tcp://127.0.0.1:1"}
	cfg.TrustedKeys = []string{artifact.PublicKeyBase64(pub)}
	cfg.StateDir, cfg.ModelDir, cfg.Metrics = dir, filepath.Join(t.TempDir(), "models"), config.MetricsOff
	cfg.Contract = offlineData + "contract.json"
	db, err := devicedb.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(cfg, db.Root(), agent.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	pl, err := pipeline.Attach(a, pipeline.AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := pl.IngestData("mqtt", []byte(`{"ts":"2026-01-01T00:00:00Z","temp":900,"mode":"auto","label":0}`)); err != nil || s.InvalidRows != 1 {
		t.Logf("summary %+v", s)
		t.Fatal(err)
	}
	pl.Flush() // as the extension's Run does when the agent stops
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	code, out, _ := offlineMain(t, "quarantine", "list", "--state-dir", dir)
	if code != 0 || !strings.Contains(out, "900") || !strings.Contains(out, "1 rows held") {
		t.Fatalf("list exit %d:\n%s", code, out)
	}
}
