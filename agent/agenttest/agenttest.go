// Package agenttest runs real agents (agent.New and Run) in the test's process, each on its own
// state database, with configs whose timings suit tests, and reads their metrics. It is shared by
// the agent's own tests (where the test plays the hub) and the system tests in systemtest/
// (where a real hub does). Test code only; it imports nothing under hub/.
package agenttest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/agent/modelstore"
	"github.com/driftline/driftline/agent/outbox"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/kv"
)

// Config returns a config for device id with fast test timings, its state and model dirs in a
// temp dir, and metrics off.
func Config(t testing.TB, id, token string, brokers, keys []string) config.Config {
	dir := t.TempDir()
	c := config.Default()
	c.DeviceID, c.Token, c.Brokers, c.TrustedKeys = id, token, brokers, keys
	c.StateDir, c.ModelDir, c.Metrics = filepath.Join(dir, "state"), filepath.Join(dir, "models"), config.MetricsOff
	c.Heartbeat = config.Duration(time.Second)
	c.Fetch.Timeout = config.Duration(2 * time.Second)
	c.Fetch.Stall = config.Duration(20 * time.Second)
	return c
}

// Agent is an agent run in this process on its own database.
type Agent struct {
	*agent.Agent
	// Reg holds the agent's metrics.
	Reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
	db     *devicedb.DB
}

// Start starts an agent with cfg and opts (a fresh metrics registry; the log on t at info level
// unless opts has a logger) and stops it when the test ends.
func Start(t testing.TB, cfg config.Config, opts agent.Options) *Agent {
	t.Helper()
	return StartHook(t, cfg, opts, nil)
}

// StartHook is Start calling hook (if set) between New and Run.
func StartHook(t testing.TB, cfg config.Config, opts agent.Options, hook func(a *agent.Agent)) *Agent {
	t.Helper()
	db, err := devicedb.Open(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	opts.Registerer, opts.Gatherer = reg, reg
	if opts.Logger == nil {
		opts.Logger = testhelp.Logger(t, slog.LevelInfo)
	}
	a, err := agent.New(cfg, db.Root(), opts)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	if hook != nil {
		hook(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &Agent{Agent: a, Reg: reg, cancel: cancel, done: make(chan error, 1), db: db}
	go func() { ra.done <- a.Run(ctx) }()
	t.Cleanup(ra.Stop)
	return ra
}

// Cancel asks the agent to stop without waiting for it: for a test holding one of the agent's
// hooks, which Stop would wait for. Stop still closes the database.
func (ra *Agent) Cancel() {
	if ra.cancel != nil {
		ra.cancel()
	}
}

// Stop ends the agent and closes its database (idempotent).
func (ra *Agent) Stop() {
	if ra.cancel == nil {
		return
	}
	ra.cancel()
	<-ra.done
	ra.db.Close()
	ra.cancel = nil
}

// Metric returns the value of the counter or gauge sample of name whose labels include labels
// (name, value pairs); 0 if there is none.
func Metric(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m, labels) {
				switch {
				case m.Counter != nil:
					return m.Counter.GetValue()
				case m.Gauge != nil:
					return m.Gauge.GetValue()
				}
			}
		}
	}
	return 0
}

func hasLabels(m *dto.Metric, kv []string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == kv[i] && l.GetValue() == kv[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Key returns a fresh public key in config form (for agents that never see a manifest).
func Key(t testing.TB) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return artifact.PublicKeyBase64(pub)
}

// RandomBytes returns n incompressible bytes from a generator seeded with seed: the same bytes
// on every run, so content-defined chunk boundaries (and the bytes a delta moves) are the same.
func RandomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := mathrand.NewChaCha8([32]byte{0: byte(seed), 1: byte(seed >> 8), 2: byte(seed >> 16), 31: 0x5a})
	_, _ = r.Read(b)
	return b
}

// Mutate returns a copy of base with share of its bytes replaced, in a few contiguous runs (an
// edit of a real model file: some layers change, most do not).
func Mutate(base []byte, share float64, runs int) []byte {
	out := bytes.Clone(base)
	per := int(float64(len(base))*share) / runs
	for i := 0; i < runs; i++ {
		off := (len(base) / runs) * i
		copy(out[off:off+per], RandomBytes(uint64(1000+i), per))
	}
	return out
}

// FileDigest is "sha256:HEX" of the file at path.
func FileDigest(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("sha256:%x", sha256.Sum256(b))
}

// ModelFile is MODELDIR/NAME/current/model.
func ModelFile(dir, name string) string {
	return filepath.Join(dir, name, modelstore.CurrentLink, modelstore.ModelFile)
}

// DistinctChunks is the number of distinct chunk digests of data as the hub cuts it: what a pull
// of data into an empty chunk cache fetches.
func DistinctChunks(t testing.TB, data []byte) int {
	t.Helper()
	man, err := artifact.Split(bytes.NewReader(data), func(artifact.Chunk) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, c := range man.Chunks {
		seen[c.Digest] = true
	}
	return len(seen)
}

// Outbox reads, without changing it, the outbox of a stopped agent whose state database is in
// stateDir: a driftline-agent's (device "") or one fleet-mode agent's (firmware-sim fleet keeps
// every device's namespace in one database).
func Outbox(stateDir, device string) (outbox.Held, error) {
	profile := kv.Edge
	if device != "" {
		profile = kv.Fleet
	}
	db, err := devicedb.OpenProfile(stateDir, profile)
	if err != nil {
		return outbox.Held{}, err
	}
	defer db.Close()
	ns := db.Root()
	if device != "" {
		ns = db.Namespace(device)
	}
	return outbox.Inspect(ns.Sub("outbox"))
}

// HubReports is what the hub holds of a device's numbered reports: its report cursor
// (hub/state.ReportCursor, shown by GET /api/v1/devices/{id} as "reports").
type HubReports struct {
	Epoch   uint64 `json:"epoch"`
	Through uint64 `json:"through"`
	Pending int    `json:"pending"`
}

// CheckHeld checks what a stopped agent's outbox holds against what the hub holds: the outbox
// waits for the hub's acknowledgements, the numbers it holds follow each other, and every
// number of its epoch below them is at the hub (the outbox forgets a numbered report only once
// the hub acknowledged it), so the hub's reports held after a hole (Pending) wait for reports
// the agent still holds. ended says the agent holds no numbered report: its epoch is over (the
// next start numbers a new one) and the hub holds all of it. An error names what was lost.
func CheckHeld(held outbox.Held, hub HubReports) (ended bool, err error) {
	if !held.AwaitHub {
		return false, errors.New("the outbox does not wait for the hub's acknowledgements")
	}
	for i := 1; i < len(held.Numbers); i++ {
		if held.Numbers[i] != held.Numbers[i-1]+1 {
			return false, fmt.Errorf("the outbox holds reports %v of epoch %d: a hole", held.Numbers, held.Epoch)
		}
	}
	if hub.Epoch > held.Epoch {
		return false, fmt.Errorf("the hub holds reports of epoch %d, the agent numbers epoch %d", hub.Epoch, held.Epoch)
	}
	if len(held.Numbers) == 0 {
		if hub.Pending > 0 && hub.Epoch == held.Epoch {
			return true, fmt.Errorf("the hub holds %d reports of epoch %d after a missing one (through %d) that the agent no longer holds", hub.Pending, hub.Epoch, hub.Through)
		}
		return true, nil
	}
	first := held.Numbers[0]
	switch {
	case hub.Epoch == held.Epoch && hub.Through+1 < first:
		return false, fmt.Errorf("the agent forgot reports %d to %d of epoch %d that the hub does not hold (through %d)", hub.Through+1, first-1, held.Epoch, hub.Through)
	case hub.Epoch < held.Epoch && first != 1:
		return false, fmt.Errorf("the agent forgot reports 1 to %d of epoch %d that the hub does not hold (the hub is at epoch %d)", first-1, held.Epoch, hub.Epoch)
	}
	return false, nil
}
