// Package demo is `make demo`: it runs the whole system on this machine from the built
// binaries (a one-node hub with the embedded broker, five real driftline-agent processes and
// firmware-sim), drives it through the driftline CLI and the HTTP API the way an operator
// would, and narrates what happens: devices come online, model v1 rolls out, the sensors of
// two devices start drifting, v2 rolls out behind a drift gate, the gate fires and the rollout
// is rolled back. DESIGN.md has the timeline and why it has this shape.
package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/driftline/driftline/hub/state"
)

// Model and dataset names the demo registers.
const (
	ModelName   = "anomaly"
	DatasetName = "sensors"
)

var (
	// ErrNotReady is a hub that did not become ready, or a step that did not finish in time.
	ErrNotReady = errors.New("demo: not ready in time")
	// ErrExited is a child process that ended on its own.
	ErrExited = errors.New("demo: process exited")
	// ErrBusy is an address the demo needs that is already in use.
	ErrBusy = errors.New("demo: address in use")
)

// Config is one demo run. Zero values take the defaults.
type Config struct {
	// Bin is the directory holding driftline, driftline-agent and firmware-sim (default "bin").
	Bin string
	// DataDir is the demo's directory, emptied at start (default "driftline-data/demo").
	DataDir string
	// HTTPAddr, RaftAddr and MQTTAddr are the hub's listeners (defaults 127.0.0.1:8080, :7000,
	// :1883).
	HTTPAddr, RaftAddr, MQTTAddr string
	// Devices is the number of devices and agents (default 5; at least 2).
	Devices int
	// Seconds stops the demo after this long; 0 runs until ctx ends.
	Seconds int
	// ShiftAfter is when, after the firmware starts, the shifted devices' sensors drift and v2
	// starts rolling out (default 60 s).
	ShiftAfter time.Duration
	// Window is the agents' reporting window (default 10 s).
	Window time.Duration
	// Rate is readings per second per device (default 5).
	Rate float64
	// Out receives the narrative (default os.Stdout).
	Out io.Writer
	// Fleet runs the agents as one `firmware-sim fleet` process (real agents in one process,
	// fed in-process) instead of five driftline-agent processes and `firmware-sim run`.
	Fleet bool
}

// fleetLead is how long after the fleet starts its firmware clock starts in fleet mode: the
// fleet plays the scenario from its own start, before v1 has rolled out, so the shift is
// pushed back by about the time v1 takes.
const fleetLead = 15 * time.Second

func (c *Config) defaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Bin, "bin")
	def(&c.DataDir, filepath.Join("driftline-data", "demo"))
	def(&c.HTTPAddr, "127.0.0.1:8080")
	def(&c.RaftAddr, "127.0.0.1:7000")
	def(&c.MQTTAddr, "127.0.0.1:1883")
	if c.Devices < 2 {
		c.Devices = 5
	}
	if c.ShiftAfter == 0 {
		c.ShiftAfter = 60 * time.Second
	}
	if c.Window == 0 {
		c.Window = 10 * time.Second
	}
	if c.Rate == 0 {
		c.Rate = 5
	}
	if c.Out == nil {
		c.Out = os.Stdout
	}
}

// Summary is what the demo saw at its end; the last line of the narrative is its JSON.
type Summary struct {
	// Devices and DevicesOnline count the fleet and its online part.
	Devices       int `json:"devices"`
	DevicesOnline int `json:"devices_online"`
	// Versions counts devices by the model version they run ("v1", "none").
	Versions map[string]int `json:"versions"`
	// Rollouts are the rollouts in creation order.
	Rollouts []RolloutSummary `json:"rollouts"`
	// DriftSeen are the devices that reported dataset drift at some point.
	DriftSeen []string `json:"drift_seen"`
	// Shifted are the devices whose sensors the scenario shifted.
	Shifted []string `json:"shifted"`
	// RowsReported adds up the rows of the devices' latest validation summaries: 0 means no
	// agent has reported a data window yet.
	RowsReported int64 `json:"rows_reported"`
	// Candidates are the candidate dataset versions the shifted devices' samples became.
	Candidates []string `json:"candidates"`
	// Webhooks are the events the demo's webhook receiver got ("TYPE SUBJECT").
	Webhooks []string `json:"webhooks"`
}

// RolloutSummary is one rollout at the end of the demo.
type RolloutSummary struct {
	ID      string          `json:"id"`
	Version int             `json:"version"`
	State   string          `json:"state"`
	Reason  string          `json:"reason,omitempty"`
	Gates   map[string]gate `json:"gates,omitempty"`
	Devices map[string]int  `json:"devices,omitempty"`
}

// Run runs the demo until cfg.Seconds pass or ctx ends, stops everything it started, and
// returns the summary. An error means a step failed; the summary is then whatever was seen.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	cfg.defaults()
	start := time.Now()
	if cfg.Seconds > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(cfg.Seconds)*time.Second)
		defer cancel()
	}
	d := &run{cfg: cfg, start: start}
	defer d.procs.stopAll(5 * time.Second)
	err := d.steps(ctx)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		err = nil // the demo's time is up, or Ctrl-C: stop and summarise
	}
	sum := d.summary()
	if d.narr != nil {
		d.narr.say("stopping: firmware, agents, hub")
	}
	return sum, err
}

// run is one demo's state.
type run struct {
	cfg     Config
	start   time.Time
	procs   procs
	api     *hubAPI
	narr    *narrator
	bin     func(string) string
	shifted []string
	hubProc *proc
	hooks   *receiver
}

func (d *run) steps(ctx context.Context) error {
	cfg := d.cfg
	dirs, err := d.prepare()
	if err != nil {
		return err
	}
	url := "http://" + cfg.HTTPAddr
	mqttURL := "tcp://" + cfg.MQTTAddr
	token, err := d.startHub(ctx, dirs, url, mqttURL)
	if err != nil {
		return err
	}
	err = d.startWebhooks(ctx)
	if d.hooks != nil {
		defer d.hooks.close()
	}
	if err != nil {
		return err
	}
	ids, err := d.enrolDevices(ctx, dirs)
	if err != nil {
		return err
	}
	if err := d.pushDataset(ctx, dirs); err != nil {
		return err
	}
	if err := d.pushModels(ctx, dirs); err != nil {
		return err
	}
	fwStart, err := d.startAgents(ctx, dirs, url, token, mqttURL, ids)
	if err != nil {
		return err
	}
	if err := d.rollOutV1(ctx); err != nil {
		return err
	}
	if fwStart, err = d.startFirmware(ctx, dirs, mqttURL, ids, fwStart); err != nil {
		return err
	}
	if err := d.rollOutV2AtShift(ctx, fwStart); err != nil {
		return err
	}
	if cfg.Seconds == 0 {
		d.narr.say("the demo keeps running: open the dashboard; Ctrl-C stops everything")
	}
	<-ctx.Done()
	return ctx.Err()
}

// prepare checks that the binaries exist and the demo's addresses are free, and makes a fresh
// data dir with its hub, agents, assets and logs subdirectories (returned by those names).
func (d *run) prepare() (map[string]string, error) {
	cfg := d.cfg
	absBin, err := filepath.Abs(cfg.Bin)
	if err != nil {
		return nil, err
	}
	d.bin = func(name string) string { return filepath.Join(absBin, name) }
	for _, b := range []string{"driftline", "driftline-agent", "firmware-sim"} {
		if _, err := os.Stat(d.bin(b)); err != nil {
			return nil, fmt.Errorf("%s: %w (run `make build` first)", d.bin(b), err)
		}
	}
	for _, addr := range []string{cfg.HTTPAddr, cfg.RaftAddr, cfg.MQTTAddr} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%w: %v (is another demo or hub running?)", ErrBusy, err)
		}
		ln.Close()
	}
	data, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if err := os.RemoveAll(data); err != nil {
		return nil, err
	}
	dirs := map[string]string{"hub": "hub", "agents": "agents", "assets": "assets", "logs": "logs"}
	for k, v := range dirs {
		dirs[k] = filepath.Join(data, v)
		if err := os.MkdirAll(dirs[k], 0o700); err != nil {
			return nil, err
		}
	}
	d.procs.logDir = dirs["logs"]
	fmt.Fprintf(cfg.Out, "Driftline demo: data in %s, process logs in %s\n", data, dirs["logs"])
	return dirs, nil
}

// startHub starts step 1, the hub: one node, embedded broker. It returns the admin token once
// the hub is ready, and sets up the API client and the narrator.
func (d *run) startHub(ctx context.Context, dirs map[string]string, url, mqttURL string) (string, error) {
	cfg := d.cfg
	var err error
	d.hubProc, err = d.procs.start("hub", d.bin("driftline"), "hub", "serve", "--data", dirs["hub"], "--node-id", "demo",
		"--http", cfg.HTTPAddr, "--raft", cfg.RaftAddr, "--mqtt", cfg.MQTTAddr, "--advertise-mqtt", mqttURL,
		"--sample-settle", "15s")
	if err != nil {
		return "", err
	}
	tokenPath := filepath.Join(dirs["hub"], "admin.token")
	token, err := d.waitHub(ctx, url, tokenPath)
	if err != nil {
		return "", err
	}
	d.procs.env = []string{"DRIFTLINE_HUB=" + url, "DRIFTLINE_TOKEN=" + token}
	d.api = &hubAPI{url: url, token: token, c: &http.Client{}}
	d.narr = newNarrator(d.api, cfg.Out, ModelName, d.start)
	fmt.Fprintf(cfg.Out, "Dashboard: %s/\nAdmin token: %s\n", url, tokenPath)
	d.narr.say("hub ready (one node, embedded MQTT broker on %s)", mqttURL)
	return token, nil
}

// startWebhooks is step 1b: a webhook receiver, as a CI system would run one, subscribed to
// drift, gate and candidate dataset events. d.hooks is set once the receiver runs, even when
// the subscription then fails.
func (d *run) startWebhooks(ctx context.Context) error {
	hooks, err := startReceiver()
	if err != nil {
		return err
	}
	d.hooks = hooks
	d.hooks.narr = d.narr
	if _, err := d.procs.run(ctx, d.bin("driftline"), "webhook", "add", d.hooks.URL(), "--id", "demo-ci", "--secret", d.hooks.secret,
		"--event", "drift", "--event", "gate", "--event", "candidate"); err != nil {
		return err
	}
	d.narr.say("webhook demo-ci: signed CloudEvents for drift, gate decisions and candidate datasets go to %s", d.hooks.URL())
	return nil
}

// enrolDevices is step 2: enrol the devices, with labels, writing each agent's config. It
// returns their ids.
func (d *run) enrolDevices(ctx context.Context, dirs map[string]string) ([]string, error) {
	cfg := d.cfg
	ids := make([]string, cfg.Devices)
	for i := range ids {
		ids[i] = fmt.Sprintf("edge-%d", i+1)
		site := []string{"berlin", "munich"}[i%2]
		args := []string{d.bin("driftline"), "device", "add", ids[i], "--label", "site=" + site}
		if i == 0 {
			args = append(args, "--label", "canary=true")
		}
		cfgPath := filepath.Join(dirs["agents"], ids[i]+".yaml")
		args = append(args, "--agent-config", cfgPath)
		if _, err := d.procs.run(ctx, args...); err != nil {
			return nil, err
		}
		extra := fmt.Sprintf("window:\n  rows: 10000\n  seconds: %d\nlog_level: debug\nheartbeat: 2s\n", int(cfg.Window.Seconds()))
		if err := appendFile(cfgPath, extra); err != nil {
			return nil, err
		}
	}
	d.narr.say("enrolled %s (site=berlin|munich, %s canary=true); agent configs in %s, each trusting the cluster's root of trust", strings.Join(ids, ", "), ids[0], dirs["agents"])
	return ids, nil
}

// pushDataset is step 3: the dataset version the models are trained on, contract and a
// generated sample.
func (d *run) pushDataset(ctx context.Context, dirs map[string]string) error {
	contract, sample := filepath.Join(dirs["assets"], "contract.json"), filepath.Join(dirs["assets"], "sample.csv")
	// Compact JSON: the hub stores the contract re-encoded (compacted), and serves those bytes
	// to agents under the digest of the upload; the two agree only for compact input.
	var cbuf bytes.Buffer
	if err := json.Compact(&cbuf, []byte(contractJSON)); err != nil {
		return err
	}
	if err := os.WriteFile(contract, cbuf.Bytes(), 0o644); err != nil {
		return err
	}
	if err := writeSample(sample, 1000); err != nil {
		return err
	}
	dl := d.bin("driftline")
	for _, args := range [][]string{
		{dl, "dataset", "create", DatasetName, "--description", "demo line sensors"},
		{dl, "dataset", "push", DatasetName, "--contract", contract, "--sample", sample, "--source-uri", "file://" + sample},
	} {
		if _, err := d.procs.run(ctx, args...); err != nil {
			return err
		}
	}
	d.narr.say("dataset %s@1 pushed: contract (temperature, humidity, vibration, mode) and a 1,000-row sample; the hub computed its reference profile", DatasetName)
	return nil
}

// pushModels is step 4: two model versions trained on the dataset, v2 sharing most of v1's
// bytes, both approved.
func (d *run) pushModels(ctx context.Context, dirs map[string]string) error {
	dl := d.bin("driftline")
	v1, v2, err := writeArtifacts(dirs["assets"], 1<<20)
	if err != nil {
		return err
	}
	for _, args := range [][]string{
		{dl, "model", "create", ModelName, "--description", "demo anomaly detector"},
		{dl, "model", "push", ModelName, "--artifact", v1, "--trained-on", DatasetName + "@1", "--format", "demo", "--metric", "f1=0.91"},
		{dl, "model", "push", ModelName, "--artifact", v2, "--trained-on", DatasetName + "@1", "--format", "demo", "--metric", "f1=0.93"},
		{dl, "model", "approve", ModelName, "1", "--comment", "demo"},
		{dl, "model", "approve", ModelName, "2", "--comment", "demo"},
	} {
		if _, err := d.procs.run(ctx, args...); err != nil {
			return err
		}
	}
	d.narr.say("model %s v1 and v2 (1 MiB each, 95%% shared) registered, trained_on %s@1, approved and signed", ModelName, DatasetName)
	return nil
}

// startAgents is step 5: the agents, real driftline-agent processes or one firmware-sim fleet
// process (which also plays the firmware, in-process); it waits until every device is online.
// It returns when the fleet's firmware clock starts (zero without a fleet: the firmware starts
// in step 7).
func (d *run) startAgents(ctx context.Context, dirs map[string]string, url, token, mqttURL string, ids []string) (time.Time, error) {
	cfg := d.cfg
	d.shifted = []string{ids[1], ids[3]}
	scen := filepath.Join(dirs["assets"], "scenario.yaml")
	lead := time.Duration(0) // how long before the firmware's clock starts the scenario does
	var fwStart time.Time
	if cfg.Fleet {
		lead = fleetLead
		if err := d.startFleet(dirs, url, token, mqttURL, scen, lead, ids); err != nil {
			return time.Time{}, err
		}
		fwStart = time.Now().Add(lead)
	} else {
		for _, id := range ids {
			if _, err := d.procs.start(id, d.bin("driftline-agent"), "run", "--config", filepath.Join(dirs["agents"], id+".yaml"),
				"--state-dir", filepath.Join(dirs["agents"], id, "state"), "--model-dir", filepath.Join(dirs["agents"], id, "models"), "--metrics", "off"); err != nil {
				return time.Time{}, err
			}
		}
	}
	go d.narr.run(ctx, time.Second)
	if err := d.waitOnline(ctx, len(ids)); err != nil {
		return time.Time{}, err
	}
	return fwStart, nil
}

// rollOutV1 is step 6: roll v1 out to every device and wait for it to complete.
func (d *run) rollOutV1(ctx context.Context) error {
	r1, err := d.createRollout(ctx, map[string]any{"model": ModelName, "version": 1, "selector": "", "waves": []float64{100},
		"bake_seconds": 3, "device_timeout_seconds": 60})
	if err != nil {
		return err
	}
	d.narr.say("rollout %s: %s v1 to every device, one wave, bake 3 s; each device's desired state is signed for it (rev, expiry) and verified by its agent", short(r1), ModelName)
	return d.waitRollout(ctx, r1, 90*time.Second, "completed")
}

// startFirmware is step 7: readings on every device's data topic; two devices drift later.
// Without a fleet it starts firmware-sim and returns when its clock started; with one, fwStart.
func (d *run) startFirmware(ctx context.Context, dirs map[string]string, mqttURL string, ids []string, fwStart time.Time) (time.Time, error) {
	cfg := d.cfg
	scen := filepath.Join(dirs["assets"], "scenario.yaml")
	if !cfg.Fleet {
		if err := os.WriteFile(scen, []byte(scenarioYAML(cfg.Rate, cfg.ShiftAfter, d.shifted)), 0o644); err != nil {
			return fwStart, err
		}
		if _, err := d.procs.start("firmware-sim", d.bin("firmware-sim"), "run", "--scenario", scen, "--broker", mqttURL,
			"--credentials", dirs["agents"], "--seed", "7", "--log-level", "info"); err != nil {
			return fwStart, err
		}
		fwStart = time.Now()
	}
	d.narr.say("firmware: %d devices send %.0f readings/s each; %s will run hot in %s", len(ids), cfg.Rate, strings.Join(d.shifted, " and "), time.Until(fwStart.Add(cfg.ShiftAfter)).Round(time.Second))
	return fwStart, nil
}

// rollOutV2AtShift is step 8: at the shift, roll v2 out behind a drift gate and wait for the
// rollout to end (the gate rolls it back once it sees the drift).
func (d *run) rollOutV2AtShift(ctx context.Context, fwStart time.Time) error {
	cfg := d.cfg
	if err := sleepCtx(ctx, time.Until(fwStart.Add(cfg.ShiftAfter))); err != nil {
		return err
	}
	d.narr.say("sensors of %s shift now (temperature +9, humidity +25, vibration x4)", strings.Join(d.shifted, ", "))
	r2, err := d.createRollout(ctx, map[string]any{"model": ModelName, "version": 2, "selector": "", "waves": []float64{100},
		"bake_seconds": 600, "device_timeout_seconds": 60, "gates": map[string]any{"max_drift_share": 0.2}, "on_gate_failure": "rollback"})
	if err != nil {
		return err
	}
	d.narr.say("rollout %s: %s v2 to every device, gate max_drift_share 0.2, on_gate_failure rollback", short(r2), ModelName)
	return d.waitRollout(ctx, r2, 0, "rolled_back", "paused", "aborted", "completed")
}

// waitHub waits for /readyz and the admin token file.
func (d *run) waitHub(ctx context.Context, url, tokenPath string) (string, error) {
	deadline := time.Now().Add(60 * time.Second)
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		if done, err := d.hubProc.exited(); done {
			return "", fmt.Errorf("%w: hub: %v (see its log)", ErrExited, err)
		}
		b, ferr := os.ReadFile(tokenPath)
		if resp, err := c.Get(url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && ferr == nil && len(strings.TrimSpace(string(b))) > 0 {
				return strings.TrimSpace(string(b)), nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%w: hub at %s", ErrNotReady, url)
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return "", err
		}
	}
}

// waitOnline waits until n devices are online (bounded).
func (d *run) waitOnline(ctx context.Context, n int) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		devs, err := d.api.devices(ctx)
		online := 0
		for _, dv := range devs {
			if dv.Online {
				online++
			}
		}
		if err == nil && online >= n {
			d.narr.say("all %d agents online", n)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %d of %d devices online (see the agent logs)", ErrNotReady, online, n)
		}
		if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
}

func (d *run) createRollout(ctx context.Context, body map[string]any) (string, error) {
	var r rollout
	if err := d.api.do(ctx, http.MethodPost, "/api/v1/rollouts", body, &r); err != nil {
		return "", err
	}
	return r.ID, nil
}

// waitRollout waits until rollout id reaches one of states; limit 0 waits until ctx ends.
func (d *run) waitRollout(ctx context.Context, id string, limit time.Duration, states ...string) error {
	var deadline time.Time
	if limit > 0 {
		deadline = time.Now().Add(limit)
	}
	for {
		r, err := d.api.rollout(ctx, id)
		if err == nil {
			for _, s := range states {
				if r.State == s {
					return nil
				}
			}
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			return fmt.Errorf("%w: rollout %s is %q", ErrNotReady, id, r.State)
		}
		if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
}

// summary reads the final state from the hub (with a fresh context: the run's may be over).
func (d *run) summary() Summary {
	s := Summary{Versions: map[string]int{}, Shifted: d.shifted}
	if d.api == nil {
		return s
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if devs, err := d.api.devices(ctx); err == nil {
		for _, dv := range devs {
			s.Devices++
			if dv.Online {
				s.DevicesOnline++
			}
			v := "none"
			if m, ok := dv.Reported.Models[ModelName]; ok && m.Active != nil {
				v = fmt.Sprintf("v%d", *m.Active)
			}
			s.Versions[v]++
			if dv.Health != nil {
				s.RowsReported += dv.Health.Rows
			}
		}
	}
	if rs, err := d.api.rollouts(ctx); err == nil {
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].Version < rs[j].Version })
		for _, r := range rs {
			s.Rollouts = append(s.Rollouts, RolloutSummary{ID: r.ID, Version: r.Version, State: r.State, Reason: r.Reason, Gates: r.Gates, Devices: r.Devices})
		}
	}
	if d.narr != nil {
		s.DriftSeen = d.narr.driftSeen()
	}
	if vs, err := d.api.datasetVersions(ctx, DatasetName); err == nil {
		for _, v := range vs {
			if state.IsCandidate(v) {
				s.Candidates = append(s.Candidates, state.DatasetNode(v.Dataset, v.Version))
			}
		}
	}
	if d.hooks != nil {
		s.Webhooks = d.hooks.received()
	}
	return s
}

// Print writes the summary for people, then one line "SUMMARY {json}" for scripts.
func (s Summary) Print(w io.Writer) {
	fmt.Fprintf(w, "\nSummary\n  devices online: %d of %d\n", s.DevicesOnline, s.Devices)
	var vs []string
	for v, n := range s.Versions {
		vs = append(vs, fmt.Sprintf("%s on %d", v, n))
	}
	sort.Strings(vs)
	fmt.Fprintf(w, "  versions running: %s\n", strings.Join(vs, ", "))
	for _, r := range s.Rollouts {
		line := fmt.Sprintf("  rollout %s: v%d %s", short(r.ID), r.Version, r.State)
		if r.Reason != "" {
			line += " (" + r.Reason + ")"
		}
		if g := gatesText(r.Gates); g != "" {
			line += "; gates: " + g
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "  drift seen on: %s (sensors shifted on: %s)\n", orNone(s.DriftSeen), orNone(s.Shifted))
	fmt.Fprintf(w, "  candidate datasets from drifted windows: %s\n", orNone(s.Candidates))
	fmt.Fprintf(w, "  webhook events received: %d\n", len(s.Webhooks))
	b, _ := json.Marshal(s)
	fmt.Fprintf(w, "SUMMARY %s\n", b)
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
