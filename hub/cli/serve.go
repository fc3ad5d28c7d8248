package cli

import (
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/driftline/driftline/hub/broker"
	"github.com/driftline/driftline/hub/node"
	"github.com/driftline/driftline/internal/gcpace"
	"github.com/driftline/driftline/shared/wire"
)

// serveEnv names the environment variable of each `hub serve` flag whose variable is not simply
// DRIFTLINE_ and the flag's name in upper case with '_' for '-'.
var serveEnv = map[string]string{"join-token": "DRIFTLINE_TOKEN"}

// envName is the environment variable that sets a `hub serve` flag.
func envName(flag string) string {
	if n, ok := serveEnv[flag]; ok {
		return n
	}
	return "DRIFTLINE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// serveOptions are the flags of `driftline hub serve`.
type serveOptions struct {
	data, nodeID, http, advertiseHTTP, raft, advertiseRaft, mqtt string
	raftDialVia                                                  []string
	broker, join, joinToken, tlsCert, tlsKey                     string
	tlsCA, tlsClientCA, mqttPlain                                string
	advertiseMQTT, signingKey, logLevel                          string
	topicPrefix                                                  string
	rootKey                                                      string
	desiredTTL                                                   time.Duration
	lastSeenInterval                                             time.Duration
	fourEyes                                                     bool
	maxUpload, diskReserve                                       int64
	backupDir, adminTokenFile                                    string
	backupEvery                                                  time.Duration
	backupKeep                                                   int
	sampleSettle                                                 time.Duration
	mqttConnectTimeout                                           time.Duration
	mqttMaxPending, mqttMaxRetained                              int
	mqttDeviceRate, mqttDeviceBurst                              float64
	runsRetention, auditRetention, retentionEvery                time.Duration
	auditArchiveDir, peers                                       string
	driftFine, driftCoarse, deadNodeTimeout                      time.Duration
	raftCommitTimeout                                            time.Duration
	gcInterval                                                   time.Duration
}

func (a *app) hubCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "hub", Short: "Run a hub node"}
	cmd.AddCommand(a.serveCmd())
	cmd.AddCommand(a.hubOpsCmds()...) // backup, restore, status (ops.go)
	return cmd
}

func (a *app) serveCmd() *cobra.Command { return a.serveCommand(&serveOptions{}) }

// serveCommand is `hub serve`, parsing its flags into o.
func (a *app) serveCommand(o *serveOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a hub node (a first start with no --join bootstraps a one-node cluster)",
		Long: "serve runs one hub node: Raft store, HTTP API and embedded MQTT broker. Every flag can also be set by an\n" +
			"environment variable, DRIFTLINE_ and the flag's name in upper case (--node-id: DRIFTLINE_NODE_ID;\n" +
			"--join-token: DRIFTLINE_TOKEN); a flag on the command line wins. SIGINT or SIGTERM stops the node cleanly.",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.applyEnv(cmd.Flags()); err != nil {
				return err
			}
			cfg, level, err := o.config()
			if err != nil {
				return err
			}
			return a.serve(cfg, level, o.gcInterval)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.data, "data", DefaultDataDir, "data directory: database, Raft snapshots, signing key, admin.token")
	f.StringVar(&o.nodeID, "node-id", "", "this node's id in the cluster (default: derived from --raft)")
	f.StringVar(&o.http, "http", ":8080", "HTTP API listen address")
	f.StringVar(&o.advertiseHTTP, "advertise-http", "", "API address other nodes use (default: --http with the --raft host)")
	f.StringVar(&o.raft, "raft", "127.0.0.1:7000", "Raft listen and advertise address")
	f.StringVar(&o.advertiseRaft, "advertise-raft", "", "Raft address peers dial, when not --raft (NAT, proxy)")
	f.StringSliceVar(&o.raftDialVia, "raft-dial-via", nil, "PEER=VIA: dial the peer whose Raft address is PEER at VIA instead (a tunnel, or a test harness's per-link proxy); repeatable or comma-separated")
	f.StringVar(&o.mqtt, "mqtt", ":1883", `embedded MQTT broker listen address; "" disables it`)
	f.StringVar(&o.broker, "broker", "", "external broker URL(s), comma-separated (tcp:// or ssl://), instead of the embedded one")
	f.StringVar(&o.join, "join", "", "HTTP URL of a node of an existing cluster to join")
	f.StringVar(&o.joinToken, "join-token", "", "admin token of the cluster to join")
	f.StringVar(&o.adminTokenFile, "admin-token-file", "", "file with the admin token a new cluster is bootstrapped with (and the join token when --join-token is empty)")
	f.StringVar(&o.tlsCert, "tls-cert", "", "TLS certificate (PEM) for HTTPS and MQTTS")
	f.StringVar(&o.tlsKey, "tls-key", "", "TLS key (PEM) for HTTPS and MQTTS")
	f.StringVar(&o.tlsCA, "tls-ca", "", "cluster CA (PEM): Raft and node-to-node HTTP use mutual TLS with certificates it signs; without it Raft is unauthenticated")
	f.StringVar(&o.tlsClientCA, "tls-client-ca", "", "CA (PEM) that must sign device certificates on MQTTS (mutual TLS for devices, besides the token)")
	f.StringVar(&o.mqttPlain, "mqtt-plain", "", `with --tls-cert, a plain MQTT listener beside MQTTS (device tokens then travel in clear); "" (default) none`)
	f.StringVar(&o.advertiseMQTT, "advertise-mqtt", "", "broker URL(s) agents are told to connect to, comma-separated")
	f.DurationVar(&o.mqttConnectTimeout, "mqtt-connect-timeout", broker.DefaultConnectTimeout, "embedded broker: time a client has from accept to an authenticated CONNECT (TLS handshake included)")
	f.IntVar(&o.mqttMaxPending, "mqtt-max-pending", broker.DefaultMaxPendingSockets, "embedded broker: sockets accepted but not yet authenticated; more are closed at accept (0: no cap)")
	f.Float64Var(&o.mqttDeviceRate, "mqtt-device-rate", broker.DefaultMaxDeviceRate, "embedded broker: messages a second one device may publish on average; the excess is dropped (0: no limit)")
	f.Float64Var(&o.mqttDeviceBurst, "mqtt-device-burst", broker.DefaultDeviceBurst, "embedded broker: messages a device may publish at once above --mqtt-device-rate (at least 1)")
	f.IntVar(&o.mqttMaxRetained, "mqtt-max-retained", broker.DefaultMaxRetainedPerDevice, "embedded broker: retained topics one device may hold; a retained message on one more topic is refused (0: no cap)")
	f.StringVar(&o.topicPrefix, "topic-prefix", wire.DefaultPrefix, "MQTT topic prefix of the protocol; agents enrolled with device add --agent-config get it in their config")
	f.StringVar(&o.signingKey, "signing-key", "", "ed25519 signing key file (default DATA/signing.key, generated when absent)")
	f.StringVar(&o.rootKey, "root-key", "", "root-of-trust key file: signs key rotations (default DATA/root.key; the cluster's first leader generates it; may be kept offline)")
	f.DurationVar(&o.desiredTTL, "desired-ttl", 0, "how long a signed desired state stays valid; signed again at half of it (default 24h)")
	f.DurationVar(&o.lastSeenInterval, "last-seen-interval", 0, "how often at most a device's heartbeats move its replicated last_seen; between, only the node that heard them knows (default: the presence window, 30s)")
	f.BoolVar(&o.fourEyes, "four-eyes", false, "refuse an approval by the identity that registered the version")
	f.Int64Var(&o.maxUpload, "max-upload-bytes", 0, "largest upload accepted (0: 4 GiB)")
	f.Int64Var(&o.diskReserve, "disk-reserve-bytes", node.DefaultDiskReserve, "free space the data dir must keep; below it the node stops before a write fails (negative: no check)")
	f.DurationVar(&o.sampleSettle, "sample-settle", 0, "how long devices' samples of drifted windows wait for others before they become a candidate dataset version (0: 30s)")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.backupDir, "backup-dir", "", "write a checked backup here every --backup-every while this node leads")
	f.DurationVar(&o.backupEvery, "backup-every", time.Hour, "interval of scheduled backups (with --backup-dir)")
	f.IntVar(&o.backupKeep, "backup-keep", 24, "scheduled backups to keep in --backup-dir (0: all)")
	f.DurationVar(&o.runsRetention, "runs-retention", 0, "delete closed lineage runs edges (a device's past model versions, with their drift and validation totals) older than this, e.g. 2160h (0: keep forever)")
	f.DurationVar(&o.auditRetention, "audit-retention", 0, "export audit entries older than this into --audit-archive-dir, then prune them; the kept log verifies from the checkpoint (0: keep forever)")
	f.StringVar(&o.auditArchiveDir, "audit-archive-dir", "", "where --audit-retention writes audit exports (audit-FIRST-LAST.jsonl) before pruning; give every node the same shared directory")
	f.DurationVar(&o.retentionEvery, "retention-every", node.DefaultRetentionEvery, "how often the leader applies --runs-retention and --audit-retention")
	f.DurationVar(&o.driftFine, "drift-fine-retention", 0, "how long fleet drift keeps its per-window points in memory (0: 1h)")
	f.DurationVar(&o.driftCoarse, "drift-coarse-retention", 0, "how long fleet drift keeps its hourly points in memory (0: 168h)")
	f.StringVar(&o.peers, "peers", "", "HTTP URLs of the other nodes, comma-separated: a node with an empty data dir and no --join joins the one that is already in a cluster instead of bootstrapping a new one (StatefulSet pod 0)")
	f.DurationVar(&o.deadNodeTimeout, "dead-node-timeout", 0, "the leader removes a voter it has not reached for this long from the Raft configuration, while the rest keep a quorum (0: never; the StatefulSet sets it)")
	f.DurationVar(&o.raftCommitTimeout, "raft-commit-timeout", node.DefaultRaftCommitTimeout, "how soon a follower learns that a write committed (its forwarded writes wait for it: read-your-writes) against the leader's idle CPU, one empty append per follower per timeout; 1ms to 50ms")
	f.DurationVar(&o.gcInterval, "gc-interval", gcpace.DefaultInterval, "the longest the process goes without a garbage collection, which alone gives back the goroutine stacks that devices' publishes grew: 5s holds ~25 KiB less per connected device for ~0.005 core per 1,000 devices (0: the runtime's pacing only; 1s or more)")
	f.VisitAll(func(fl *pflag.Flag) { fl.Usage += " (env " + envName(fl.Name) + ")" })
	return cmd
}

// applyEnv sets every flag not given on the command line from its environment variable.
func (a *app) applyEnv(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := envName(f.Name)
		v, ok := a.getenv(name)
		if !ok {
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			err = usagef("%s=%q: %v", name, v, serr)
		}
	})
	return err
}

// parseDialVia reads the --raft-dial-via PEER=VIA pairs (nil when none).
func parseDialVia(pairs []string) (map[string]string, error) {
	var out map[string]string
	for _, kv := range pairs {
		peer, via, ok := strings.Cut(kv, "=")
		if !ok || peer == "" || via == "" {
			return nil, usagef("--raft-dial-via wants PEER=VIA, got %q", kv)
		}
		if out == nil {
			out = map[string]string{}
		}
		out[peer] = via
	}
	return out, nil
}

// config validates the options and turns them into a node.Config.
func (o serveOptions) config() (node.Config, slog.Level, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return node.Config{}, 0, usagef("--log-level %q: want debug, info, warn or error", o.logLevel)
	}
	if o.data == "" {
		return node.Config{}, 0, usagef("--data must not be empty")
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return node.Config{}, 0, usagef("--tls-cert and --tls-key go together")
	}
	if o.tlsCA != "" && o.tlsCert == "" {
		return node.Config{}, 0, usagef("--tls-ca needs --tls-cert and --tls-key (a certificate the CA signed)")
	}
	if (o.tlsClientCA != "" || o.mqttPlain != "") && o.tlsCert == "" {
		return node.Config{}, 0, usagef("--tls-client-ca and --mqtt-plain go with --tls-cert")
	}
	if o.raft == "" || o.http == "" {
		return node.Config{}, 0, usagef("--raft and --http must not be empty")
	}
	brokers, err := brokerURLs("--broker", o.broker)
	if err != nil {
		return node.Config{}, 0, err
	}
	adv, err := brokerURLs("--advertise-mqtt", o.advertiseMQTT)
	if err != nil {
		return node.Config{}, 0, err
	}
	if o.join != "" {
		if u, err := url.Parse(o.join); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return node.Config{}, 0, usagef("--join %q: want the HTTP URL of a hub node", o.join)
		}
	}
	if o.maxUpload < 0 {
		return node.Config{}, 0, usagef("--max-upload-bytes must be >= 0")
	}
	if _, err := wire.NewTopics(o.topicPrefix); err != nil {
		return node.Config{}, 0, usagef("--topic-prefix %q: want topic levels of letters, digits, '.', '_' or '-', no wildcard, no leading '$' (%v)", o.topicPrefix, err)
	}
	if err := o.checkDurations(); err != nil {
		return node.Config{}, 0, err
	}
	var peers []string
	for _, p := range strings.Split(o.peers, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if u, err := url.Parse(p); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return node.Config{}, 0, usagef("--peers %q: want HTTP URLs of hub nodes, comma-separated", p)
		}
		peers = append(peers, p)
	}
	limits, err := o.brokerLimits()
	if err != nil {
		return node.Config{}, 0, err
	}
	dialVia, err := parseDialVia(o.raftDialVia)
	if err != nil {
		return node.Config{}, 0, err
	}
	return node.Config{
		RaftDialVia: dialVia,
		DataDir:     o.data, NodeID: o.nodeID, HTTPAddr: o.http, AdvertiseHTTP: o.advertiseHTTP, RaftAddr: o.raft, AdvertiseRaft: o.advertiseRaft,
		MQTTAddr: o.mqtt, Brokers: brokers, AdvertiseMQTT: adv, Join: o.join, JoinToken: o.joinToken,
		TLSCert: o.tlsCert, TLSKey: o.tlsKey, TLSCA: o.tlsCA, TLSClientCA: o.tlsClientCA, MQTTPlainAddr: o.mqttPlain,
		SigningKey: o.signingKey, RootKey: o.rootKey, DesiredTTL: o.desiredTTL, LastSeenInterval: o.lastSeenInterval, FourEyes: o.fourEyes, MaxUploadBytes: o.maxUpload,
		TopicPrefix: o.topicPrefix, DiskReserve: o.diskReserve,
		AdminTokenFile: o.adminTokenFile, BackupDir: o.backupDir, BackupEvery: o.backupEvery, BackupKeep: o.backupKeep,
		SampleSettle: o.sampleSettle, BrokerLimits: limits,
		RunsRetention: o.runsRetention, AuditRetention: o.auditRetention, AuditArchiveDir: o.auditArchiveDir, RetentionEvery: o.retentionEvery,
		DriftFineRetention: o.driftFine, DriftCoarseRetention: o.driftCoarse, Peers: peers, DeadNodeTimeout: o.deadNodeTimeout,
		RaftCommitTimeout: o.raftCommitTimeout,
	}, level, nil
}

// checkDurations refuses the intervals and retentions serve cannot run with.
func (o serveOptions) checkDurations() error {
	if o.backupDir != "" && o.backupEvery < time.Second {
		return usagef("--backup-every %s: want at least 1s", o.backupEvery)
	}
	if o.backupKeep < 0 {
		return usagef("--backup-keep must be >= 0")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--runs-retention", o.runsRetention}, {"--audit-retention", o.auditRetention}, {"--drift-fine-retention", o.driftFine},
		{"--drift-coarse-retention", o.driftCoarse}, {"--dead-node-timeout", o.deadNodeTimeout},
		{"--last-seen-interval", o.lastSeenInterval}} {
		if d.v < 0 {
			return usagef("%s %s: want a duration >= 0 (0: the default)", d.name, d.v)
		}
	}
	if o.auditRetention > 0 && o.auditArchiveDir == "" {
		return usagef("--audit-retention needs --audit-archive-dir: audit entries are exported there before they are pruned")
	}
	if o.retentionEvery < time.Second {
		return usagef("--retention-every %s: want at least 1s", o.retentionEvery)
	}
	if o.deadNodeTimeout > 0 && o.deadNodeTimeout < 10*time.Second {
		return usagef("--dead-node-timeout %s: want at least 10s (a restart or a leader election must not remove a node)", o.deadNodeTimeout)
	}
	if o.gcInterval != 0 && o.gcInterval < time.Second {
		return usagef("--gc-interval %s: want 0 (off) or at least 1s (each collection marks the whole heap)", o.gcInterval)
	}
	if o.raftCommitTimeout < time.Millisecond || o.raftCommitTimeout > 50*time.Millisecond {
		return usagef("--raft-commit-timeout %s: want 1ms to 50ms (raft's own default; more delays every follower's forwarded writes)", o.raftCommitTimeout)
	}
	return nil
}

// brokerLimits validates the embedded broker's limit flags. On the command line 0 means no
// cap (broker.Limits takes a negative number for that, 0 for its default).
func (o serveOptions) brokerLimits() (broker.Limits, error) {
	var l broker.Limits
	if o.mqttConnectTimeout <= 0 {
		return l, usagef("--mqtt-connect-timeout %s: want a positive duration such as 10s", o.mqttConnectTimeout)
	}
	if o.mqttMaxPending < 0 {
		return l, usagef("--mqtt-max-pending %d: want a number of sockets >= 0 (0: no cap)", o.mqttMaxPending)
	}
	if o.mqttDeviceRate < 0 || math.IsNaN(o.mqttDeviceRate) || math.IsInf(o.mqttDeviceRate, 0) {
		return l, usagef("--mqtt-device-rate %v: want messages a second >= 0 (0: no limit)", o.mqttDeviceRate)
	}
	if o.mqttDeviceBurst < 1 || math.IsNaN(o.mqttDeviceBurst) || math.IsInf(o.mqttDeviceBurst, 0) {
		return l, usagef("--mqtt-device-burst %v: want a number of messages >= 1", o.mqttDeviceBurst)
	}
	if o.mqttMaxRetained < 0 {
		return l, usagef("--mqtt-max-retained %d: want a number of topics >= 0 (0: no cap)", o.mqttMaxRetained)
	}
	noCap := func(n int) int {
		if n == 0 {
			return -1
		}
		return n
	}
	l = broker.Limits{ConnectTimeout: o.mqttConnectTimeout, MaxPendingSockets: noCap(o.mqttMaxPending),
		MaxDeviceRate: o.mqttDeviceRate, DeviceBurst: o.mqttDeviceBurst, MaxRetainedPerDevice: noCap(o.mqttMaxRetained)}
	if l.MaxDeviceRate == 0 {
		l.MaxDeviceRate = -1
	}
	return l, nil
}

// brokerURLs parses a comma-separated list of MQTT broker URLs.
func brokerURLs(flag, s string) ([]string, error) {
	urls := splitURLs(s)
	for _, u := range urls {
		p, err := url.Parse(u)
		if err != nil || p.Host == "" {
			return nil, usagef("%s %q: want tcp://HOST:PORT or ssl://HOST:PORT", flag, u)
		}
		switch p.Scheme {
		case "tcp", "ssl", "tls", "mqtt", "mqtts", "ws", "wss":
		default:
			return nil, usagef("%s %q: scheme must be tcp:// or ssl:// (or mqtt, mqtts, tls, ws, wss)", flag, u)
		}
	}
	return urls, nil
}

// hubGCPercent is the garbage collector's target of a hub process whose environment sets no GOGC:
// the heap may grow to 1.5 times what is live between two collections instead of Go's 2 times.
// A hub's live heap is mostly long-lived: each connected device's broker state (client, session,
// subscriptions, retained messages) and the state machine's memtable arenas, which the default
// would double with garbage; the collector's CPU grows with how often it runs, and the hub
// allocates little per device at steady state. Measured at 1,000 agents (make bench-fleet,
// docs/benchmarks.md, issue 18; two alternated pairs): RSS 304-312 -> 236-238 MiB for
// 0.040-0.046 -> 0.045-0.050 core. GOGC and
// GOMEMLIMIT in the environment win.
const hubGCPercent = 50

// setGCPercent applies hubGCPercent unless the environment sets GOGC; it returns the percent in
// force and whether it set it.
func (a *app) setGCPercent() (int, bool) {
	if v, ok := a.getenv("GOGC"); ok {
		pct, err := strconv.Atoi(v)
		if err != nil {
			pct = -1 // "off"
		}
		return pct, false
	}
	debug.SetGCPercent(hubGCPercent)
	return hubGCPercent, true
}

// serve runs the node until the context ends or SIGINT/SIGTERM arrives, then closes it. It
// collects garbage at least every gcInterval (gcpace; 0: only as the runtime paces it).
func (a *app) serve(cfg node.Config, level slog.Level, gcInterval time.Duration) error {
	log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
	cfg.Logger = log
	if pct, set := a.setGCPercent(); set {
		log.Info("garbage collector target", "gogc", pct, "note", "hub default; set GOGC to change it")
	}
	ctx, stop := signal.NotifyContext(a.ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go gcpace.Run(ctx, gcInterval)
	n, err := node.Start(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%w: start hub: %w", ErrUnavailable, err)
	}
	log.Info("admin token file", "path", n.AdminTokenPath(), "note", "written on the cluster's first start, mode 0600")
	fmt.Fprintf(a.stdout, "driftline hub %s serving %s (raft %s)\nadmin token: %s\n", n.ID(), n.URL(), cfg.RaftAddr, n.AdminTokenPath())
	select {
	case <-ctx.Done():
	case <-n.Failed():
		return fmt.Errorf("%w: hub node stopped: %w", ErrUnavailable, n.FailErr())
	}
	log.Info("stopping hub node", "id", n.ID())
	if err := n.Close(); err != nil {
		return fmt.Errorf("%w: close hub: %w", ErrUnavailable, err)
	}
	log.Info("hub node stopped", "id", n.ID())
	return nil
}
