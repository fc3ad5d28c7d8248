package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/driftline/driftline/hub/broker"
	"github.com/driftline/driftline/internal/procstat"
	"github.com/driftline/driftline/shared/wire"
)

// BenchConfig is one hub-side load test (`make bench-load`): Mosquitto configured as
// docs/operations.md says (the hub's rendered ACL and passwords, plus the load users of
// WriteLoadACL), a one-node hub on it (`driftline hub serve --broker ... --mqtt ""`), Devices
// enrolled through the API, the load tool speaking for all of them, and a rollout in Waves.
type BenchConfig struct {
	// Hub is the driftline binary; Mosquitto the broker binary (default: from PATH).
	Hub, Mosquitto string
	// Dir is the working directory (emptied first).
	Dir string
	// Devices is the fleet size; Conns the load tool's MQTT connections (default 4).
	Devices, Conns int
	// ModelBytes is the model's size (default 1 MiB).
	ModelBytes int
	// Waves are the rollout's cumulative percentages (default 1, 10, 100); Bake its bake time
	// (default 5 s).
	Waves []float64
	Bake  time.Duration
	// Steady is how long the steady states before and after the rollout are measured (default
	// 60 s).
	Steady time.Duration
	// Rollouts splits the rollout into this many rollouts of equal shares of the devices (label
	// shard), run at once (default 1). One hub transaction holds the plan and every wave start
	// of a rollout, which caps one rollout at some 15,000 devices with waves [1, 10, 100] %
	// (docs/benchmarks.md).
	Rollouts int
	// EnrollWorkers is the number of concurrent enrolment requests (default 32).
	EnrollWorkers int
	// Timeout bounds each phase (default 15 min).
	Timeout time.Duration
	// Heartbeat and Window are the devices' intervals (loadgen defaults: the agent's).
	Heartbeat, Window time.Duration
	// Log receives progress lines (default os.Stderr).
	Log io.Writer
}

// WaveFigures is one wave of the rollout.
type WaveFigures struct {
	// Devices counts the wave's devices over every rollout; the times are the slowest
	// rollout's, DecisionMean the mean over the rollouts.
	Wave, Devices int
	// Duration runs from the wave's start to the start of the next (or to completion).
	Duration time.Duration
	// Settled is from the wave's start to its last device reporting active (the load tool's
	// clock, the same machine's).
	Settled time.Duration
	// Decision is from the wave's last active report to the next wave's start (or the
	// completion) minus the bake: what the hub took to notice and decide.
	Decision, DecisionMean time.Duration
	// Entries and RaftBytes are the Raft log entries and raft log bytes written during the wave
	// (telemetry batches included).
	Entries   uint64
	RaftBytes int64
}

// BenchResult is what one load test measured.
type BenchResult struct {
	Devices, Conns, ModelBytes, Rollouts int
	// Enroll is the time to enrol every device through the API.
	Enroll time.Duration
	// Online is from the load tool's start to every device online at the hub.
	Online time.Duration
	// IdleRSS is the hub's resident size before the devices connected.
	IdleRSS int64
	// Before and After are the steady states before and after the rollout.
	Before, After Steady
	// State, Counts and Rollout are the rollout's end, device counts and duration; HubCPU,
	// BrokerCPU, LoadCPU the processes' CPU time during it; HubPeakRSS the hub's largest
	// resident size over the whole run (sampled every 500 ms).
	State                      string
	Counts                     map[string]int
	Rollout                    time.Duration
	HubCPU, BrokerCPU, LoadCPU time.Duration
	HubPeakRSS, BrokerPeakRSS  int64
	Waves                      []WaveFigures
	// EgressShared and EgressDevice are the hub's chunk data bytes during the rollout;
	// Fetches its fetch requests by result (served, dropped, ...) and SharedChunks the chunks of
	// shared requests by what became of them (scheduled, joined, deduplicated, all_listening),
	// during the rollout: what explains a per-device path.
	EgressShared, EgressDevice int64
	Fetches, SharedChunks      map[string]int64
	// DBBytes and RaftLogBytes are the hub's data dir parts at the end.
	DBBytes, RaftLogBytes int64
	// Load is the load tool's counters at the end.
	Load Stats
}

// Steady is one steady-state measurement.
type Steady struct {
	HubCores, BrokerCores, LoadCores float64
	HubRSS, BrokerRSS                int64
	// MessagesPerSec is the device messages the hub took per second; EntriesPerSec its Raft
	// entries per second.
	MessagesPerSec, EntriesPerSec float64
	// OfferedPerSec is the device messages the load tool published per second; RaftBytesPerSec
	// the growth of the hub's Raft log directory per second; HeartbeatsReplicated and
	// HeartbeatsLocal the heartbeats per second that entered a telemetry batch and that moved
	// only the hub's in-memory last-heard time (driftline_hub_heartbeats_total).
	OfferedPerSec, RaftBytesPerSec        float64
	HeartbeatsReplicated, HeartbeatsLocal float64
}

func (cfg *BenchConfig) defaults() {
	if cfg.Rollouts < 1 {
		cfg.Rollouts = 1
	}
	if cfg.Conns < 2 {
		cfg.Conns = 4
	}
	if cfg.ModelBytes == 0 {
		cfg.ModelBytes = 1 << 20
	}
	if len(cfg.Waves) == 0 {
		cfg.Waves = []float64{1, 10, 100}
	}
	if cfg.Bake == 0 {
		cfg.Bake = 5 * time.Second
	}
	if cfg.Steady == 0 {
		cfg.Steady = time.Minute
	}
	if cfg.EnrollWorkers <= 0 {
		cfg.EnrollWorkers = 32
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 15 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = os.Stderr
	}
}

// bench is one load test's processes and clients.
type bench struct {
	cfg      BenchConfig
	dir      string
	hub, mq  *exec.Cmd
	hubURL   string
	token    string
	client   *http.Client
	res      BenchResult
	mu       sync.Mutex
	sim      *Sim
	hubPid   int
	mqPid    int
	hubExit  chan error
	devPort  int
	devUsers []Conn
	// hubBroker is the hub's --broker URL.
	hubBroker string
}

// Bench runs one load test and stops everything it started.
func Bench(ctx context.Context, cfg BenchConfig) (BenchResult, error) {
	cfg.defaults()
	b := &bench{cfg: cfg, client: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}
	b.res.Devices, b.res.Conns, b.res.ModelBytes, b.res.Rollouts = cfg.Devices, cfg.Conns, cfg.ModelBytes, cfg.Rollouts
	if cfg.Devices < 1 || cfg.Hub == "" || cfg.Dir == "" {
		return b.res, fmt.Errorf("%w: devices, the hub binary and a directory are required", ErrConfig)
	}
	var err error
	if b.dir, err = filepath.Abs(cfg.Dir); err != nil {
		return b.res, err
	}
	if err := os.RemoveAll(b.dir); err != nil {
		return b.res, err
	}
	if err := os.MkdirAll(filepath.Join(b.dir, "hub"), 0o700); err != nil {
		return b.res, err
	}
	defer b.stop()
	if err := b.startBroker(); err != nil {
		return b.res, err
	}
	if err := b.startHub(ctx); err != nil {
		return b.res, err
	}
	sampleCtx, stopSample := context.WithCancel(ctx)
	defer stopSample()
	go b.samplePeaks(sampleCtx)
	b.res.IdleRSS, _ = procstat.Memory(b.hubPid)
	ids, err := b.enroll(ctx)
	if err != nil {
		return b.res, err
	}
	version, err := b.pushModel(ctx)
	if err != nil {
		return b.res, err
	}
	simCtx, stopSim := context.WithCancel(ctx)
	simDone := make(chan error, 1)
	defer func() { stopSim(); <-simDone }()
	if err := b.startSim(simCtx, ids, simDone); err != nil {
		return b.res, err
	}
	if b.res.Before, err = b.steady(ctx, "before the rollout"); err != nil {
		return b.res, err
	}
	if err := b.rollOut(ctx, version); err != nil {
		return b.res, err
	}
	if b.res.After, err = b.steady(ctx, "after the rollout"); err != nil {
		return b.res, err
	}
	var node nodeReport
	if err := b.api(ctx, http.MethodGet, "/api/v1/node", nil, &node); err == nil {
		b.res.DBBytes, b.res.RaftLogBytes = node.Disk.Bytes["db"], node.Disk.Bytes["raftlog"]
	}
	b.res.Load = b.sim.Stats()
	return b.result(), nil
}

func (b *bench) result() BenchResult {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.res
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.cfg.Log, "bench-load: "+format+"\n", args...)
}

// freePort returns a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func secret() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startBroker writes Mosquitto's files as docs/operations.md and deploy/mosquitto describe them
// (a devices' listener with use_username_as_clientid, a hubs' listener; the hub user's
// password and ACL rendered by hub/broker, the load users' rules by WriteLoadACL) and starts it.
func (b *bench) startBroker() error {
	bin := b.cfg.Mosquitto
	var err error
	if bin == "" {
		if bin, err = exec.LookPath("mosquitto"); err != nil {
			for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
				if _, serr := os.Stat(p); serr == nil {
					bin, err = p, nil
				}
			}
			if err != nil {
				return fmt.Errorf("mosquitto not found (apt-get install mosquitto): %w", err)
			}
		}
	}
	dir := filepath.Join(b.dir, "mosquitto")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	user, pass := "driftline-hub", secret()
	creds := []broker.Cred{{User: user, Password: pass}}
	var users []string
	for i := 0; i < b.cfg.Conns; i++ {
		c := Conn{User: fmt.Sprintf("loadgen-%d", i), Password: secret()}
		b.devUsers = append(b.devUsers, c)
		creds = append(creds, broker.Cred{User: c.User, Password: c.Password})
		users = append(users, c.User)
	}
	var pw, acl bytes.Buffer
	if err := broker.WriteMosquittoPasswd(&pw, creds); err != nil {
		return err
	}
	if err := broker.WriteMosquittoACL(&acl, wire.DefaultPrefix, nil, nil, user); err != nil {
		return err
	}
	if err := WriteLoadACL(&acl, wire.Default(), users); err != nil {
		return err
	}
	if b.devPort, err = freePort(); err != nil {
		return err
	}
	hubPort, err := freePort()
	if err != nil {
		return err
	}
	// deploy/mosquitto/mosquitto.conf with the ports, paths and no persistence (a fresh broker
	// per run); max_queued_messages raised from 4096: the hub's one session takes every
	// device's messages, and a burst of a wave's reports must not be dropped.
	conf := fmt.Sprintf(`listener %d 127.0.0.1
use_username_as_clientid true
listener %d 127.0.0.1
allow_anonymous false
password_file %s
acl_file %s
max_packet_size 2097152
persistence false
max_inflight_messages 64
max_queued_messages 1000000
log_dest file %s
log_type error
log_type warning
log_type notice
`, b.devPort, hubPort, filepath.Join(dir, "passwd"), filepath.Join(dir, "acl"), filepath.Join(dir, "mosquitto.log"))
	if os.Geteuid() == 0 {
		conf += "user root\n"
	}
	for name, data := range map[string][]byte{"passwd": pw.Bytes(), "acl": acl.Bytes(), "mosquitto.conf": []byte(conf)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	b.mq = exec.Command(bin, "-c", filepath.Join(dir, "mosquitto.conf"))
	out, err := os.Create(filepath.Join(dir, "stdout.log"))
	if err != nil {
		return err
	}
	b.mq.Stdout, b.mq.Stderr = out, out
	if err := b.mq.Start(); err != nil {
		return fmt.Errorf("start mosquitto: %w", err)
	}
	b.mqPid = b.mq.Process.Pid
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", hubPort), time.Second)
		if err == nil {
			c.Close()
			break
		}
		if i > 100 {
			return fmt.Errorf("mosquitto does not listen on %d (see %s)", hubPort, dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.logf("mosquitto on 127.0.0.1:%d (devices) and :%d (hub), %d load users", b.devPort, hubPort, len(users))
	b.hubBroker = fmt.Sprintf("tcp://%s:%s@127.0.0.1:%d", user, pass, hubPort)
	return nil
}
