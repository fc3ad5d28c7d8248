// Package fleet is `firmware-sim fleet`: N real agents (the agent package itself, each with
// its own identity, MQTT connection, agent/devicedb namespace and model directory) in one process,
// their namespaces spread over a few badger databases (one per ~500 agents), fed in-process by a
// scenario. It exists for scale tests of the
// hub: enrolment, rollouts to thousands of devices, telemetry load.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/agent/outputs"
	"github.com/driftline/driftline/agent/pipeline"
	"github.com/driftline/driftline/agent/reconcile"
	"github.com/driftline/driftline/agent/samples"
	"github.com/driftline/driftline/firmware-sim/creds"
	"github.com/driftline/driftline/firmware-sim/publish"
	"github.com/driftline/driftline/firmware-sim/sim"
)

var (
	// ErrHub is a hub API call that failed.
	ErrHub = errors.New("fleet: hub")
	// ErrIdentity is a device that exists on the hub but whose token fleet mode does not hold.
	ErrIdentity = errors.New("fleet: device identity")
	// ErrConfig is a bad Config.
	ErrConfig = errors.New("fleet: bad config")
)

// Config is one fleet run.
type Config struct {
	// Devices is the number of agents (at least 1).
	Devices int
	// Hub is the hub's HTTP API URL; Token an admin (or device-creating) API token.
	Hub, Token string
	// Brokers overrides the broker URLs the hub advertises (default: advertised, else
	// tcp://127.0.0.1:1883).
	Brokers []string
	// StateDir holds the agents' databases (db/, db-1/, ...; ShardsFile), the model directories
	// (models/ID/) and the credentials file.
	StateDir string
	// IDPattern names the devices (sim.DeviceID pattern; default "fleet-{n:05}").
	IDPattern string
	// Labels are set on devices fleet mode enrols (default fleet=firmware-sim).
	Labels map[string]string
	// Scenario, when set, feeds every agent's pipeline in-process.
	Scenario *sim.Scenario
	// Seed is the scenario's seed.
	Seed uint64
	// Window overrides the agents' reporting window (zero: the agent default).
	Window config.Window
	// Heartbeat is the agents' heartbeat interval (default 10 s).
	Heartbeat time.Duration
	// PullConcurrency bounds the model pulls the agents run at once (default 256; see
	// agent.Options.PullSlots): real devices each have their own memory, the fleet process
	// would otherwise hold every simultaneous pull's frames at once.
	PullConcurrency int
	// ListenBytes bounds the bytes the agents listening on shared chunk topics may hold at once
	// (default DefaultListenBytes; see agent.Options.ListenBudget): each listener is charged
	// twice its model's size, since it takes every publish of its wave and this process holds
	// them all. Many agents of a small model listen at once; of a large one, fewer.
	ListenBytes int64
	// DBShards is how many badger databases the agents' namespaces are spread over (default one
	// per 500 agents): each database serializes its commits and read transactions, which
	// thousands of agents queue behind. A state dir keeps the number it was first run with
	// (ShardsFile).
	DBShards int
	// Duration stops the run (0: until ctx ends).
	Duration time.Duration
	// SummaryEvery is the live summary interval (default 5 s); Out receives it (default
	// os.Stderr).
	SummaryEvery time.Duration
	Out          io.Writer
	// Logger receives the agents' logs (default: warnings and errors on stderr).
	Logger *slog.Logger
}

// DefaultListenBytes is Config.ListenBytes' default. A listener is charged twice its model's
// size (a publish queued, a publish waiting for its verify workers): 2,048 listeners of a 1 MiB
// model, twice the 1,024 listening slots before. 10 GiB (every agent of a 10,000-agent wave at
// once) drove the fleet process to 20.8 GB and its two cores into decoding the wave's repeated
// publishes for every listener (docs/benchmarks.md).
const DefaultListenBytes = 4 << 30

// Summary is a snapshot of the fleet.
type Summary struct {
	// Devices, Online count the agents and those connected to a broker.
	Devices, Online int
	// Versions counts agents by running model versions ("NAME@V", "none").
	Versions map[string]int
	// Rows counts rows the pipelines checked, Invalid those that broke a rule; Reports counts
	// reports the brokers acknowledged.
	Rows, Invalid, Reports int64
	// Refused counts the agents whose broker refuses their CONNECT now (wrong or revoked token).
	Refused int
	// Stages is the agents' pull stages since the start (StageLine), "" before any pull.
	Stages string
}

// String is the one-line summary.
func (s Summary) String() string {
	var vs []string
	for v, n := range s.Versions {
		vs = append(vs, fmt.Sprintf("%s=%d", v, n))
	}
	sort.Strings(vs)
	out := fmt.Sprintf("devices online %d/%d, versions %s, rows %d (invalid %d), reports %d", s.Online, s.Devices, strings.Join(vs, " "), s.Rows, s.Invalid, s.Reports)
	if s.Refused > 0 {
		out += fmt.Sprintf(", refused by the broker %d", s.Refused)
	}
	return out
}

// member is one agent of the fleet.
type member struct {
	id string
	a  *agent.Agent
	pl *pipeline.Pipeline
	// started is set once the agent has connected: its start-up (which loads its model
	// records without the agent's lock) is over, so its model state may be read.
	started atomic.Bool
	// warned says that a refusal fleet mode cannot mend was logged. It belongs to the agent's
	// connect loop (reenroller.refused).
	warned bool
}

// reenroller mends refused connects at run time: a device the hub no longer knows (deleted, or
// the hub was reset under a running fleet) is enrolled again and its agent given the new token.
// A device the hub knows but whose token it refuses cannot be mended without deleting it, which
// fleet mode does not do: that is logged once, with what to do.
type reenroller struct {
	ctx    context.Context
	h      *hubClient
	store  *credStore
	labels map[string]string
	log    *slog.Logger
	sem    chan struct{} // bounds the hub API calls in flight
}

// refused runs on m's agent's connect loop after each refused CONNECT.
func (r *reenroller) refused(m *member, ref agent.Refusal) {
	if ref.Reason != agent.RefusedBadCredentials && ref.Reason != agent.RefusedNotAuthorized {
		return
	}
	select {
	case r.sem <- struct{}{}:
	case <-r.ctx.Done():
		return
	}
	defer func() { <-r.sem }()
	exists, err := deviceExists(r.ctx, r.h, m.id)
	if err != nil {
		r.log.Warn("fleet: cannot ask the hub about a refused device", "device", m.id, "err", err)
		return
	}
	if exists {
		// A device enrolled moments ago may be refused until the broker's table has it: the
		// agent's backoff tries again, and only a refusal that lasts is reported.
		if !m.warned && ref.Attempts >= 3 {
			m.warned = true
			r.log.Error("fleet: the broker refuses the kept token of a device the hub knows; fleet mode does not delete devices: remove it (driftline device rm ID) and run again, or use another --id-pattern",
				"device", m.id, "reason", ref.Reason, "credentials", r.store.path)
		}
		return
	}
	tok, err := enrollOne(r.ctx, r.h, r.store.path, m.id, r.labels)
	if err != nil {
		r.log.Error("fleet: enrolling a refused device again failed", "device", m.id, "err", err)
		return
	}
	r.store.set(m.id, tok)
	m.warned = false
	m.a.SetToken(tok)
	r.log.Warn("fleet: the hub no longer knew the device; enrolled it again", "device", m.id)
}

// waitStarted waits until m's agent has connected once (see member.started); false when ctx
// ends first.
func waitStarted(ctx context.Context, m *member) bool {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for !m.a.Connected() {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	m.started.Store(true)
	return true
}

// Run enrols (or reuses) the devices, runs their agents until ctx ends or cfg.Duration
// passes, prints a live summary, and returns the final one.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	if cfg.Devices < 1 || cfg.Hub == "" || cfg.Token == "" || cfg.StateDir == "" {
		return Summary{}, fmt.Errorf("%w: --devices ≥ 1, --hub, --token and --state-dir are required", ErrConfig)
	}
	cfg.defaults()
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return Summary{}, err
	}
	f, err := joinHub(ctx, cfg)
	if err != nil {
		return Summary{}, err
	}
	dbs, err := openShards(cfg.StateDir, cfg.DBShards, cfg.Logger)
	if err != nil {
		return Summary{}, err
	}
	defer dbs.close()
	gcCtx, gcStop := context.WithCancel(ctx)
	defer gcStop()
	dbs.runGC(gcCtx, 5*time.Minute, cfg.Logger)
	stages := agent.NewPullStages()
	members, err := f.newMembers(ctx, dbs, stages)
	if err != nil {
		return Summary{}, err
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(members))
	if err := f.start(ctx, &wg, errs, members); err != nil {
		return Summary{}, err
	}
	final := printSummaries(ctx, cfg, members, stages)
	wg.Wait()
	close(errs)
	var all []error
	if err := f.store.flush(); err != nil {
		all = append(all, err)
	}
	for err := range errs {
		all = append(all, err)
	}
	if final.Stages != "" {
		fmt.Fprintf(cfg.Out, "final: %s; %s\n", final, final.Stages)
	} else {
		fmt.Fprintf(cfg.Out, "final: %s\n", final)
	}
	return final, errors.Join(all...)
}

// defaults fills in what cfg leaves unset.
func (cfg *Config) defaults() {
	if cfg.IDPattern == "" {
		cfg.IDPattern = "fleet-{n:05}"
	}
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{"fleet": "firmware-sim"}
	}
	if cfg.Out == nil {
		cfg.Out = os.Stderr
	}
	if cfg.SummaryEvery == 0 {
		cfg.SummaryEvery = 5 * time.Second
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 10 * time.Second
	}
	if cfg.PullConcurrency <= 0 {
		cfg.PullConcurrency = 256
	}
	if cfg.ListenBytes <= 0 {
		cfg.ListenBytes = DefaultListenBytes
	}
	if cfg.DBShards <= 0 {
		cfg.DBShards = (cfg.Devices + agentsPerShard - 1) / agentsPerShard
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
}

// fleet is a run's devices as the hub knows them: their credentials (kept in store) and what
// the hub tells its agents (root of trust, brokers).
type fleet struct {
	cfg     Config
	h       *hubClient
	store   *credStore
	ids     []string
	creds   []creds.Credential
	root    string
	brokers []string
}

// joinHub enrols the devices cfg names (reusing the credentials saved in the state dir) and reads
// the hub's root of trust and brokers (cfg.Brokers, when set, win).
func joinHub(ctx context.Context, cfg Config) (*fleet, error) {
	f := &fleet{cfg: cfg, h: newHubClient(cfg.Hub, cfg.Token)}
	f.ids = make([]string, cfg.Devices)
	for i := range f.ids {
		f.ids[i] = sim.DeviceID(cfg.IDPattern, i+1)
	}
	var err error
	if f.store, err = openCredStore(filepath.Join(cfg.StateDir, CredentialsFile)); err != nil {
		return nil, err
	}
	if f.creds, err = enroll(ctx, f.h, f.store, f.ids, cfg.Labels, cfg.Logger); err != nil {
		return nil, err
	}
	if f.root, f.brokers, err = hubFacts(ctx, f.h); err != nil {
		return nil, err
	}
	if len(cfg.Brokers) > 0 {
		f.brokers = cfg.Brokers
	}
	if len(f.brokers) == 0 {
		f.brokers = []string{"tcp://127.0.0.1:1883"}
	}
	return f, nil
}

// newMembers makes every device's agent on its shard of dbs, wired as `driftline-agent
// run` wires it (pipeline, samples, outputs), on the hub's topics; a refused agent is enrolled
// again.
func (f *fleet) newMembers(ctx context.Context, dbs shards, stages *prometheus.HistogramVec) ([]*member, error) {
	cfg := f.cfg
	prefix := hubTopicPrefix(ctx, f.h) // the agents talk on the hub's topics
	reg := prometheus.NewRegistry()
	slots := make(chan struct{}, cfg.PullConcurrency)
	listen := reconcile.NewBudget(cfg.ListenBytes)
	members := make([]*member, len(f.creds))
	re := &reenroller{ctx: ctx, h: f.h, store: f.store, labels: cfg.Labels, log: cfg.Logger, sem: make(chan struct{}, 8)}
	for i, c := range f.creds {
		m := &member{id: c.ID}
		ac := config.Default()
		ac.DeviceID, ac.Token, ac.Brokers, ac.TrustedRoot, ac.Hub = c.ID, c.Token, f.brokers, f.root, cfg.Hub
		db, dir := dbs.forDevice(cfg.StateDir, c.ID)
		ac.StateDir = dir
		ac.ModelDir = filepath.Join(cfg.StateDir, "models", c.ID)
		ac.Metrics = config.MetricsOff
		ac.Heartbeat = config.Duration(cfg.Heartbeat)
		if prefix != "" {
			ac.TopicPrefix = prefix
		}
		if cfg.Window.Rows > 0 {
			ac.Window.Rows = cfg.Window.Rows
		}
		if cfg.Window.Seconds > 0 {
			ac.Window.Seconds = cfg.Window.Seconds
		}
		a, err := agent.New(ac, db.Namespace(c.ID), agent.Options{
			Logger:           cfg.Logger,
			Registerer:       prometheus.WrapRegistererWith(prometheus.Labels{"device": c.ID}, reg),
			Gatherer:         reg,
			NoRSSGauge:       true,
			PullSlots:        slots,
			ListenBudget:     listen,
			PullStages:       stages,
			OnConnectRefused: func(r agent.Refusal) { re.refused(m, r) },
		})
		if err != nil {
			return nil, fmt.Errorf("agent %s: %w", c.ID, err)
		}
		if m.pl, err = attach(a); err != nil {
			return nil, fmt.Errorf("agent %s %w", c.ID, err) // err names the part: "pipeline: ..."
		}
		m.a = a
		members[i] = m
	}
	return members, nil
}

// attach wires the pipeline, sample collection and output checks to a as `driftline-agent run`
// does, and returns the pipeline.
func attach(a *agent.Agent) (*pipeline.Pipeline, error) {
	pl, err := pipeline.Attach(a, pipeline.AttachOptions{})
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	sm, err := samples.Attach(a, pl, nil)
	if err != nil {
		return nil, fmt.Errorf("samples: %w", err)
	}
	if _, err := outputs.AttachWith(a, pl, nil, sm.PredictionDrift); err != nil {
		return nil, fmt.Errorf("outputs: %w", err)
	}
	return pl, nil
}

// start runs, under wg until ctx ends: the credential saver (tokens enrolled again at run time
// are saved every 2 s), every member's agent (an agent's error goes to errs) and, with a
// scenario, every member's firmware, which starts once its agent has connected.
func (f *fleet) start(ctx context.Context, wg *sync.WaitGroup, errs chan<- error, members []*member) error {
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := f.store.flush(); err != nil {
					f.cfg.Logger.Error("fleet: saving credentials", "err", err)
				}
			}
		}
	}()
	for _, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.a.Run(ctx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				errs <- fmt.Errorf("agent %s: %w", m.id, err)
			}
		}()
	}
	if f.cfg.Scenario == nil {
		return nil
	}
	fw, err := sim.NewFleet(f.cfg.Scenario, sim.Options{Seed: f.cfg.Seed, Devices: len(members), IDs: f.ids, Start: time.Now()})
	if err != nil {
		return err
	}
	var stats publish.Stats
	start := time.Now()
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if waitStarted(ctx, m) {
				_ = publish.Play(ctx, fw.Stream(i), start, inproc{m.pl}, &stats)
			}
		}()
	}
	return nil
}

// printSummaries prints a summary line (with rows and reports per second since the last) every
// cfg.SummaryEvery until ctx ends, and returns the final summary.
func printSummaries(ctx context.Context, cfg Config, members []*member, stages *prometheus.HistogramVec) Summary {
	tick := time.NewTicker(cfg.SummaryEvery)
	defer tick.Stop()
	last, lastAt := snapshot(members), time.Now()
	for {
		select {
		case <-ctx.Done():
			s := snapshot(members)
			s.Stages = StageLine(stages)
			return s
		case <-tick.C:
			s := snapshot(members)
			s.Stages = StageLine(stages)
			dt := time.Since(lastAt).Seconds()
			line := fmt.Sprintf("%s, %.0f rows/s, %.1f reports/s", s, float64(s.Rows-last.Rows)/dt, float64(s.Reports-last.Reports)/dt)
			if s.Stages != "" {
				line += "; " + s.Stages
			}
			fmt.Fprintln(cfg.Out, line)
			last, lastAt = s, time.Now()
		}
	}
}

// snapshot reads every agent's counters.
func snapshot(ms []*member) Summary {
	s := Summary{Devices: len(ms), Versions: map[string]int{}}
	for _, m := range ms {
		if m.a.Connected() {
			s.Online++
			m.started.Store(true)
		} else if m.a.Connection().Refused != "" {
			s.Refused++
		}
		if !m.started.Load() {
			s.Versions["none"]++
			continue
		}
		act, err := m.a.ActiveModels()
		if err != nil || len(act) == 0 {
			s.Versions["none"]++
		}
		for _, am := range act {
			s.Versions[fmt.Sprintf("%s@%d", am.Name, am.Version)]++
		}
		ps := m.pl.Stats()
		s.Rows += ps.RecordsSeen
		s.Invalid += ps.RecordsInvalid
		s.Reports += int64(m.a.BufferStats().Sent)
	}
	return s
}

// inproc is the in-process link from a simulated firmware to its agent's pipeline.
type inproc struct{ pl *pipeline.Pipeline }

// Send hands the payload to the pipeline as the data topic would; invalid rows are the
// pipeline's business (quarantine), not a failed send.
func (d inproc) Send(_ context.Context, m sim.Message) error {
	_, err := d.pl.IngestPayload("mqtt", m.Payload)
	if err != nil && !errors.Is(err, pipeline.ErrInput) {
		return err
	}
	return nil
}

// Disconnect does nothing: the firmware-to-agent link is in-process; the readings due during a
// disconnect are skipped by the stream.
func (inproc) Disconnect() {}

// Connect does nothing (see Disconnect).
func (inproc) Connect(context.Context) error { return nil }
