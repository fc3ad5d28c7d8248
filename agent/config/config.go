// Package config is the agent's one configuration struct: loaded from YAML, defaulted, validated
// with messages that name the key and its line, and documented in docs/agent-config.md from the
// same struct (Markdown; `go generate ./agent/config`).
//
// The keys written by `driftline device add --agent-config` (device_id, token, brokers,
// trusted_keys, hub) are read as they are: a file that command writes is a valid agent config.
package config

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/trust"
	"github.com/driftline/driftline/shared/wire"
)

//go:generate go run ./internal/gendoc -o ../../docs/agent-config.md

var (
	// ErrSyntax wraps YAML that does not parse, or an unknown key or a value of the wrong type.
	ErrSyntax = errors.New("config: syntax")
	// ErrInvalid wraps a value that parses but is refused (missing, out of range, malformed).
	ErrInvalid = errors.New("config: invalid")
	// ErrTooLarge is returned for a config file over MaxFileSize.
	ErrTooLarge = errors.New("config: file too large")
)

// MaxFileSize bounds the configuration file read.
const MaxFileSize = 1 << 20

// Config is everything driftline-agent reads from its YAML file. Every field has a `doc` tag: the
// reference in docs/agent-config.md is generated from it.
type Config struct {
	// DeviceID is the device's id: the MQTT client id and user name, and a topic level.
	DeviceID string `yaml:"device_id" doc:"The device id: MQTT client id and user name, one topic level. Required."`
	// Token is the device token (the MQTT password).
	Token string `yaml:"token" doc:"The device token the hub returned at enrolment: the MQTT password. Required."`
	// Brokers are MQTT broker URLs, tried in order (failover).
	Brokers []string `yaml:"brokers" doc:"MQTT broker URLs, tcp://HOST:PORT or ssl://HOST:PORT, tried in order. Required."`
	// TLS configures ssl:// brokers.
	TLS TLS `yaml:"tls" doc:"TLS for ssl:// brokers."`
	// TrustedRoot is the cluster's root of trust (TUF root.json) the agent is enrolled with.
	TrustedRoot string `yaml:"trusted_root" doc:"The hub cluster's root of trust: the JSON of a TUF root.json (GET /api/v1/keys/root; driftline device add writes it). Its online keys sign approvals and desired states; the agent learns rotated keys from newer roots signed by this one's root key. Required unless trusted_keys is set."`
	// TrustedKeys are fixed ed25519 public keys whose signatures the agent accepts (configs
	// written before trusted_root existed).
	TrustedKeys []string `yaml:"trusted_keys" doc:"Older form of trust: fixed public keys (standard base64 of the 32 raw bytes, or a PEM PUBLIC KEY block) whose signatures on approvals and desired states the agent accepts. Keys never rotate this way; prefer trusted_root. Unsigned models and desired states are never acted on."`
	// Hub is the hub's HTTP API URL (informational; the agent speaks MQTT only).
	Hub string `yaml:"hub" doc:"The hub's HTTP API URL, as the CLI writes it. Optional; the agent itself talks to the hub over MQTT only."`
	// StateDir holds the agent's badger database (outbox, chunk cache, journal).
	StateDir string `yaml:"state_dir" default:"driftline-agent/state" doc:"Directory of the agent's database: report buffer, chunk cache, activation journal, desired revision. --state-dir overrides it."`
	// ModelDir holds MODELDIR/NAME/VERSION and the current and previous links.
	ModelDir string `yaml:"model_dir" default:"driftline-agent/models" doc:"Model directory: MODELDIR/NAME/VERSION/model, the current and previous links, and downloads in progress (.partial-VERSION, resumed after a restart). During a pull a model takes up to three times its size here. --model-dir overrides it."`
	// Metrics is the listen address of GET /metrics (and the pipeline's POST /ingest).
	Metrics string `yaml:"metrics" default:"127.0.0.1:9100" doc:"Listen address of GET /metrics and POST /ingest. \"off\" disables the listener. --metrics overrides it."`
	// HealthCheck is the command run after each model switch.
	HealthCheck HealthCheck `yaml:"health_check" doc:"Command run after each switch of current; a non-zero exit switches back."`
	// ChunkCacheBytes caps the chunk cache: chunks of versions no longer on disk.
	ChunkCacheBytes int64 `yaml:"chunk_cache_bytes" default:"268435456" doc:"Cap on the stored size of the chunk cache: the verified chunks of model versions no longer on disk (pruned or removed), kept so that going back to them, or to a version sharing their content, costs little. Versions on disk and partial downloads are read directly and do not count. Chunks of the active and the downloading version are never evicted, so they may exceed it."`
	// Buffer bounds the store-and-forward report buffer.
	Buffer Buffer `yaml:"buffer" doc:"Bounds of the store-and-forward buffer of reports made while the broker is unreachable."`
	// Quarantine bounds the store of invalid rows.
	Quarantine Quarantine `yaml:"quarantine" doc:"Bounds of the quarantine, where every invalid row is kept with its field, rule and value (driftline-agent quarantine list and export read it). Past a bound the oldest rows go first, and are counted (driftline_agent_quarantine_evicted_total, _expired_total, and the validation report's quarantine_evicted)."`
	// Outputs bounds the join of predictions and labels.
	Outputs Outputs `yaml:"outputs" doc:"Bounds of the join of predictions and labels (POST /ingest?kind=predictions, ?kind=labels): each waits on disk for its other half; past a bound the oldest go first and are counted (the performance report's expired)."`
	// Samples bounds what the agent sends of drifted windows.
	Samples Samples `yaml:"samples" doc:"Samples of drifted windows, sent to the hub only when the training dataset's contract allows collection (x-driftline.collect)."`
	// Window is the pipeline's reporting window.
	Window Window `yaml:"window" doc:"Reporting window of validation, profile and drift: whichever of rows or seconds comes first. Each bound set here overrides the active contract's x-driftline.window; a bound left out comes from the contract, else from the default (10000 rows, 60 s). The agent logs, and /metrics shows (driftline_agent_window_limit_rows and _seconds, label source = config, contract or default), which one is in force."`
	// Contract is a data contract used while no model (with its own contract) is active.
	Contract string `yaml:"contract" doc:"Path of a Table Schema contract the pipeline uses while no active model brings one."`
	// WatchDir is a directory whose .csv and .jsonl files the pipeline reads once each.
	WatchDir string `yaml:"watch_dir" doc:"Directory of .csv and .jsonl files to ingest, each once: read files move to done/, unreadable ones to failed/ with a .error note. Empty: no watched directory."`
	// TopicPrefix is the MQTT topic prefix.
	TopicPrefix string `yaml:"topic_prefix" default:"dl/v1" doc:"MQTT topic prefix; must match the hub's."`
	// Heartbeat is the heartbeat interval.
	Heartbeat Duration `yaml:"heartbeat" default:"10s" doc:"Heartbeat interval."`
	// Fetch tunes model pulls.
	Fetch Fetch `yaml:"fetch" doc:"Model pull tuning."`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level" default:"info" doc:"debug, info, warn or error."`
}

// TLS holds the client TLS settings for ssl:// brokers.
type TLS struct {
	// CAFile is a PEM bundle of the CAs that sign the brokers' certificates.
	CAFile string `yaml:"ca_file" doc:"PEM bundle of the CAs that sign the brokers' certificates (default: the system pool)."`
	// CertFile and KeyFile are a client certificate for brokers that require one.
	CertFile string `yaml:"cert_file" doc:"Client certificate (PEM), for brokers that require one; needs key_file."`
	KeyFile  string `yaml:"key_file" doc:"Client certificate's private key (PEM); needs cert_file."`
	// InsecureSkipVerify turns off server certificate checks (tests only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify" doc:"Do not verify the broker's certificate. For tests only."`
}

// HealthCheck is the command run after a model switch.
type HealthCheck struct {
	// Command is argv, run without a shell; empty means every model is healthy.
	Command []string `yaml:"command" doc:"argv of the check, run without a shell, with DRIFTLINE_MODEL_PATH, _DIR, _NAME and _VERSION set. Empty: no check."`
	// Timeout bounds one run.
	Timeout Duration `yaml:"timeout" default:"30s" doc:"Time limit of one run; the command's process group is killed after it."`
}

// Buffer bounds the report buffer.
type Buffer struct {
	// MaxBytes bounds the buffer's stored size; the oldest reports are dropped first.
	MaxBytes int64 `yaml:"max_bytes" default:"67108864" doc:"Stored (compressed) size bound; the oldest reports are dropped first and counted."`
	// MaxAge drops reports older than this.
	MaxAge Duration `yaml:"max_age" default:"168h" doc:"Reports older than this are dropped instead of sent, and counted."`
}

// Quarantine bounds the quarantine of invalid rows (agent/quarantine).
type Quarantine struct {
	// MaxRows bounds the rows kept.
	MaxRows int `yaml:"max_rows" default:"10000" doc:"Most rows kept (1 to 1000000; each costs 24 bytes of memory besides its stored entry)."`
	// MaxBytes bounds the stored size.
	MaxBytes int64 `yaml:"max_bytes" default:"16777216" doc:"Stored size bound (at least 64 KiB; one row's entry is at most 16 KiB)."`
	// MaxAge expires older rows.
	MaxAge Duration `yaml:"max_age" default:"720h" doc:"Rows older than this are dropped, oldest first, and counted as expired."`
}

// Outputs bounds the join state of agent/outputs.
type Outputs struct {
	// MaxPending bounds the entries waiting on disk.
	MaxPending int `yaml:"max_pending" default:"200000" doc:"Most entries kept: predictions waiting for a label, labels waiting for a prediction, and joined ids (to recognise repeats)."`
	// MaxAge expires older entries.
	MaxAge Duration `yaml:"max_age" default:"168h" doc:"Entries older than this are dropped, oldest first: a label later than this never joins."`
}

// Samples bounds agent/samples.
type Samples struct {
	// MaxRows is the reservoir's size.
	MaxRows int `yaml:"max_rows" default:"200" doc:"Rows of a drifted window sent at most (a uniform reservoir sample of its valid rows)."`
	// MaxBytesPerDay is the per-device budget.
	MaxBytesPerDay int64 `yaml:"max_bytes_per_day" default:"1048576" doc:"Bytes of samples sent per UTC day at most; past it drifted windows are not sampled, and counted."`
}

// Quarantine limits enforced by Validate.
const (
	MaxQuarantineRows     = 1_000_000
	MinQuarantineBytes    = 64 << 10
	DefaultQuarantineRows = 10000
)

// Window is the pipeline's reporting window. A zero bound is unset: the contract's
// x-driftline.window, else the pipeline's default, applies (pipeline.ResolveWindow).
type Window struct {
	// Rows closes a window after this many rows.
	Rows int `yaml:"rows,omitempty" doc:"Rows per window. Unset: the contract's, else 10000."`
	// Seconds closes a window after this many seconds.
	Seconds int `yaml:"seconds,omitempty" doc:"Seconds per window. Unset: the contract's, else 60."`
}

// Fetch tunes model pulls over MQTT.
type Fetch struct {
	// Requests is the number of fetch requests in flight.
	Requests int `yaml:"requests" default:"6" doc:"Fetch requests in flight (the hub queues at most 8 per device)."`
	// Digests is the number of chunk digests per fetch request.
	Digests int `yaml:"digests" default:"16" doc:"Chunk digests per fetch request (at most 256)."`
	// Timeout is how long one request waits for its frames before it is sent again.
	Timeout Duration `yaml:"timeout" default:"10s" doc:"How long a request waits for its frames before the missing ones are asked again."`
	// Stall fails a pull that verified nothing for this long.
	Stall Duration `yaml:"stall" default:"2m" doc:"A pull that verifies no object for this long fails (and is tried again on the next desired revision or restart)."`
	// Attempts bounds how many times one digest is requested.
	Attempts int `yaml:"attempts" default:"8" doc:"How many times one digest is requested before the pull fails."`
	// Retry is the first wait before a pull that failed for a passing reason is tried again.
	Retry Duration `yaml:"retry" default:"30s" doc:"First wait before a pull that failed for a reason that may pass (stall, attempts, disk) is tried again; it doubles up to 10m. Refused signatures, unknown digests and failed health checks are not retried until the desired state changes."`
}

// Duration is a time.Duration read from YAML as Go duration text ("10s", "1h30m") or as a
// number of seconds.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d as Go duration text.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML writes d as duration text.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// ParseDuration reads duration text ("10s") or a plain number of seconds.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if v, err := time.ParseDuration(s); err == nil {
		return Duration(v), nil
	}
	if secs, err := strconv.ParseFloat(s, 64); err == nil && strings.Trim(s, "0123456789.") == "" {
		if secs > float64(1<<62)/float64(time.Second) {
			return 0, fmt.Errorf("duration %q out of range", s)
		}
		return Duration(secs * float64(time.Second)), nil
	}
	return 0, fmt.Errorf("duration %q: want text like 10s, 1m30s or a number of seconds", s)
}

// Default returns the configuration with every default filled in and no identity.
func Default() Config {
	return Config{
		StateDir:        "driftline-agent/state",
		ModelDir:        "driftline-agent/models",
		Metrics:         "127.0.0.1:9100",
		HealthCheck:     HealthCheck{Timeout: Duration(30 * time.Second)},
		ChunkCacheBytes: 256 << 20,
		Buffer:          Buffer{MaxBytes: 64 << 20, MaxAge: Duration(7 * 24 * time.Hour)},
		Quarantine:      Quarantine{MaxRows: DefaultQuarantineRows, MaxBytes: 16 << 20, MaxAge: Duration(30 * 24 * time.Hour)},
		Outputs:         Outputs{MaxPending: 200000, MaxAge: Duration(7 * 24 * time.Hour)},
		Samples:         Samples{MaxRows: 200, MaxBytesPerDay: 1 << 20},
		TopicPrefix:     wire.DefaultPrefix,
		Heartbeat:       Duration(10 * time.Second),
		Fetch: Fetch{
			Requests: 6, Digests: 16, Timeout: Duration(wire.DefaultFetchTimeout),
			Stall: Duration(2 * time.Minute), Attempts: 8, Retry: Duration(30 * time.Second),
		},
		LogLevel: "info",
	}
}

// MetricsOff is the Metrics value that disables the HTTP listener.
const MetricsOff = "off"

// problem is one validation failure: the YAML path of the key and what is wrong.
type problem struct {
	path string
	msg  string
}

// Validate checks c and returns every problem at once, each naming its key. Load adds line
// numbers; a Config built in code gets the key names only.
func (c Config) Validate() error { return c.validate(nil) }

func (c Config) validate(lines map[string]int) error {
	var ps problems
	c.checkIdentity(&ps)
	c.checkStores(&ps)
	c.checkPipeline(&ps, lines)
	c.checkProtocol(&ps)
	return ps.err(lines)
}

// problems collects what is wrong with a Config, by path.
type problems []problem

func (ps *problems) add(path, format string, args ...any) {
	*ps = append(*ps, problem{path, fmt.Sprintf(format, args...)})
}

func (ps *problems) positive(path string, d Duration) {
	if d <= 0 {
		ps.add(path, "must be positive")
	}
}

// err is nil without problems, else ErrInvalid with each problem and its line in the file.
func (ps problems) err(lines map[string]int) error {
	if len(ps) == 0 {
		return nil
	}
	msgs := make([]string, len(ps))
	for i, p := range ps {
		at := ""
		if line := lineFor(lines, p.path); line > 0 {
			at = fmt.Sprintf("line %d: ", line)
		}
		msgs[i] = fmt.Sprintf("%s%s: %s", at, p.path, p.msg)
	}
	return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(msgs, "; "))
}

// checkIdentity checks who the device is, where it connects and what it trusts.
func (c Config) checkIdentity(ps *problems) {
	add := ps.add
	if c.DeviceID == "" {
		add("device_id", "required")
	} else if err := wire.ValidateName("device_id", c.DeviceID); err != nil {
		add("device_id", "%v", err)
	}
	if c.Token == "" {
		add("token", "required")
	}
	if len(c.Brokers) == 0 {
		add("brokers", "at least one broker URL is required")
	}
	for i, b := range c.Brokers {
		if err := checkBroker(b); err != nil {
			add(fmt.Sprintf("brokers[%d]", i), "%v", err)
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		add("tls", "cert_file and key_file go together")
	}
	if len(c.TrustedKeys) == 0 && strings.TrimSpace(c.TrustedRoot) == "" {
		add("trusted_root", "a root of trust is required (driftline device add writes the hub's; or list trusted_keys)")
	}
	if strings.TrimSpace(c.TrustedRoot) != "" {
		if _, err := trust.Parse([]byte(c.TrustedRoot)); err != nil {
			add("trusted_root", "%v", err)
		}
	}
	for i, k := range c.TrustedKeys {
		if _, err := artifact.ParsePublicKey([]byte(k)); err != nil {
			add(fmt.Sprintf("trusted_keys[%d]", i), "%v", err)
		}
	}
	if c.Hub != "" {
		if u, err := url.Parse(c.Hub); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("hub", "%q is not an http:// or https:// URL", c.Hub)
		}
	}
}

// checkStores checks the directories, the local listener, the health check and the bounds of
// what the agent keeps.
func (c Config) checkStores(ps *problems) {
	add, positive := ps.add, ps.positive
	if c.StateDir == "" {
		add("state_dir", "required")
	}
	if c.ModelDir == "" {
		add("model_dir", "required")
	}
	if c.Metrics != MetricsOff {
		if _, _, err := net.SplitHostPort(c.Metrics); err != nil {
			add("metrics", "%q is not HOST:PORT or %q", c.Metrics, MetricsOff)
		}
	}
	for i, a := range c.HealthCheck.Command {
		if a == "" && i == 0 {
			add("health_check.command", "the program name is empty")
		}
	}
	positive("health_check.timeout", c.HealthCheck.Timeout)
	if c.ChunkCacheBytes < 1<<20 {
		add("chunk_cache_bytes", "%d is below the 1 MiB minimum", c.ChunkCacheBytes)
	}
	if c.Buffer.MaxBytes < 64<<10 {
		add("buffer.max_bytes", "%d is below the 64 KiB minimum", c.Buffer.MaxBytes)
	}
	positive("buffer.max_age", c.Buffer.MaxAge)
	if c.Quarantine.MaxRows < 1 || c.Quarantine.MaxRows > MaxQuarantineRows {
		add("quarantine.max_rows", "must be within 1..%d, got %d", MaxQuarantineRows, c.Quarantine.MaxRows)
	}
	if c.Quarantine.MaxBytes < MinQuarantineBytes {
		add("quarantine.max_bytes", "%d is below the 64 KiB minimum (one row's entry takes up to 16 KiB)", c.Quarantine.MaxBytes)
	}
	positive("quarantine.max_age", c.Quarantine.MaxAge)
	if c.Outputs.MaxPending < 1 {
		add("outputs.max_pending", "must be at least 1, got %d", c.Outputs.MaxPending)
	}
	positive("outputs.max_age", c.Outputs.MaxAge)
}

// checkPipeline checks the data pipeline's settings; lines says which keys the file wrote.
func (c Config) checkPipeline(ps *problems, lines map[string]int) {
	add := ps.add
	if c.Samples.MaxRows < 1 || c.Samples.MaxRows > 10000 {
		add("samples.max_rows", "must be within 1..10000, got %d", c.Samples.MaxRows)
	}
	if c.Samples.MaxBytesPerDay < 1 {
		add("samples.max_bytes_per_day", "must be at least 1, got %d (a dataset's contract decides whether anything is collected)", c.Samples.MaxBytesPerDay)
	}
	// Zero is "not set" (the contract's window applies); a negative bound, or a zero written
	// in the file, is a mistake.
	for _, b := range []struct {
		path string
		v    int
	}{{"window.rows", c.Window.Rows}, {"window.seconds", c.Window.Seconds}} {
		if _, written := lines[b.path]; b.v < 0 || (b.v == 0 && written) {
			add(b.path, "must be at least 1, got %d (leave it out to use the contract's window)", b.v)
		}
	}
}

// checkProtocol checks the MQTT protocol's settings and the log level.
func (c Config) checkProtocol(ps *problems) {
	add, positive := ps.add, ps.positive
	if _, err := wire.NewTopics(c.TopicPrefix); err != nil {
		add("topic_prefix", "%v", err)
	}
	if c.Heartbeat < Duration(100*time.Millisecond) {
		add("heartbeat", "%v is below 100ms", c.Heartbeat)
	}
	if c.Fetch.Requests < 1 || c.Fetch.Requests > 64 {
		add("fetch.requests", "must be within 1..64, got %d", c.Fetch.Requests)
	}
	if c.Fetch.Digests < 1 || c.Fetch.Digests > wire.MaxFetchDigests {
		add("fetch.digests", "must be within 1..%d, got %d", wire.MaxFetchDigests, c.Fetch.Digests)
	}
	positive("fetch.timeout", c.Fetch.Timeout)
	positive("fetch.stall", c.Fetch.Stall)
	positive("fetch.retry", c.Fetch.Retry)
	if c.Fetch.Attempts < 1 {
		add("fetch.attempts", "must be at least 1")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add("log_level", "%q is not debug, info, warn or error", c.LogLevel)
	}
}

// lineFor returns the line of path's key, or of its closest parent present in the file.
func lineFor(lines map[string]int, path string) int {
	for p := path; p != ""; {
		if l, ok := lines[p]; ok {
			return l
		}
		switch i := strings.LastIndexAny(p, ".["); i {
		case -1:
			p = ""
		default:
			p = p[:i]
		}
	}
	return 0
}

// checkBroker accepts tcp://HOST:PORT and ssl://HOST:PORT (also mqtt:// and mqtts://, tls://).
func checkBroker(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q: %v", raw, err)
	}
	switch u.Scheme {
	case "tcp", "ssl", "tls", "mqtt", "mqtts":
	default:
		return fmt.Errorf("%q: scheme %q, want tcp:// or ssl://", raw, u.Scheme)
	}
	if u.Hostname() == "" || u.Port() == "" {
		return fmt.Errorf("%q: want SCHEME://HOST:PORT", raw)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return fmt.Errorf("%q: no user, path or query allowed (the token is the password)", raw)
	}
	return nil
}

// Root parses TrustedRoot (the zero Root when unset); call it on a validated Config.
func (c Config) Root() (trust.Root, error) {
	if strings.TrimSpace(c.TrustedRoot) == "" {
		return trust.Root{}, nil
	}
	r, err := trust.Parse([]byte(c.TrustedRoot))
	if err != nil {
		return trust.Root{}, fmt.Errorf("trusted_root: %w", err)
	}
	return r, nil
}

// Keys parses TrustedKeys; call it on a validated Config.
func (c Config) Keys() (artifact.KeyRing, error) {
	var keys []ed25519.PublicKey
	for i, k := range c.TrustedKeys {
		pub, err := artifact.ParsePublicKey([]byte(k))
		if err != nil {
			return artifact.KeyRing{}, fmt.Errorf("trusted_keys[%d]: %w", i, err)
		}
		keys = append(keys, pub)
	}
	return artifact.NewKeyRing(keys...), nil
}
