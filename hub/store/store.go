// Package store is the hub's replicated state: hashicorp/raft over TCP, with the Raft log, the
// stable store and the FSM's state in one badger database. Writes go through Apply (group commit
// into TypeBatch entries); reads go straight to DB(), strong reads after Barrier. See DESIGN.md.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/raftstore"
)

// FSMPrefix starts every key the replicated state machine writes. Everything under it is in
// snapshots; nothing else is.
var FSMPrefix = []byte("fsm/")

// Processor applies one decoded command to the replicated state inside txn.
//
// It must be deterministic: no clock, no randomness, no reads outside txn (use env.Time and the
// raft index). It writes only keys under FSMPrefix. If it returns an error (a domain error such as
// a conflict, which becomes that command's result) it must have written nothing. An error that
// wraps badger.ErrTxnTooBig is not a result: the store commits what came before and calls Apply
// again for the same command in a fresh transaction, so Apply may see a command more than once,
// each time on a transaction that was discarded. It is called from one goroutine at a time.
type Processor interface {
	Apply(txn *badger.Txn, index uint64, env command.Envelope) (any, error)
}

// Splitter is a Processor some of whose commands may write more than one badger transaction
// holds (a rollout of 100,000 devices). Split returns the parts env is cut into (none: apply it
// whole) and which part's result is the command's. Apply proposes the parts together as one
// TypeBatch entry of their own: nothing else is applied between them, every node applies them
// alike, and a node that stops mid-entry resumes at the next part (the applied position counts
// the envelopes of an entry). db is the leader's state, for reads only.
type Splitter interface {
	Split(db *badger.DB, env command.Envelope) (parts []command.Envelope, result int, err error)
}

// PartsResult is the result of a command applied as parts (Splitter): the result part's when it
// succeeded, otherwise the first error of the parts in order.
func PartsResult(vals []any, errs []error, result int) (any, error) {
	if result >= 0 && result < len(errs) && errs[result] == nil {
		return vals[result], nil
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%w: no result part %d of %d", ErrBadCommand, result, len(errs))
}

// Config configures Open.
type Config struct {
	// DB holds the FSM state (keys under FSMPrefix) and, when LogDB is nil, the Raft log and
	// stable store too, in which case it must be opened with SyncWrites (shared/kv Server
	// profile). The store does not close it.
	DB *badger.DB
	// LogDB, when set, holds the Raft log and stable store instead of DB. It must sync every
	// write (kv.Server); DB may then skip the sync (kv.State): every applied command is
	// durable in the log, the applied position commits with the state it describes, and a node
	// whose state lost its last writes in a power cut replays them from the log (or restores
	// the newest snapshot when its state is older than that). One fsync per batch instead of
	// two: the hub's write throughput depends on it.
	LogDB *badger.DB
	// Dir holds raft snapshots (a FileSnapshotStore).
	Dir string
	// NodeID is this node's raft server id; stable across restarts.
	NodeID string
	// RaftBind is the TCP address the raft transport listens on ("127.0.0.1:0" picks a port).
	RaftBind string
	// RaftAdvertise is the address peers dial; empty means the bound address.
	RaftAdvertise string
	// StreamLayer, when set, carries Raft instead of a plain TCP listener on RaftBind (which is
	// then ignored): the hub passes cluster.StreamLayer, mutual TLS with the cluster CA. Without
	// it Raft is unauthenticated: anyone who reaches RaftBind can append entries.
	StreamLayer raft.StreamLayer
	// RaftDialVia maps a peer's Raft address (as the Raft configuration holds it) to the address
	// this node dials instead: a per-link proxy of a fault-injection harness, or a tunnel.
	// Peers not named are dialled directly.
	RaftDialVia map[string]string
	// HTTPAddr is this node's API address, recorded in the replicated node records so followers
	// can forward writes to the leader.
	HTTPAddr string
	// Bootstrap bootstraps a one-node cluster when no raft state exists yet.
	Bootstrap bool
	// DeadNodeTimeout, when positive, makes the leader remove members it has not reached for
	// this long while a quorum remains (autopilot.go).
	DeadNodeTimeout time.Duration
	// Processor applies the hub's commands. A ChangeProcessor's changes go to the Feed.
	Processor Processor
	// PeerInfo asks the node whose API is at addr for the highest command type its build
	// knows (cluster.PathInfo). The leader proposes a Splitter's parts, and ClusterKnows
	// admits a type, only once every member has said it knows them (buildgate.go). nil: every
	// node is taken to run this build.
	PeerInfo func(ctx context.Context, addr string) (maxCommand uint16, err error)
	// Changes is the node's change feed; nil makes a new one (Store.Changes). Giving it lets a
	// consumer subscribe before Open, so it sees the changes of the entries replayed at start.
	Changes *Feed
	// Logger receives the store's and raft's logs; nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the store's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Tune, when set, may change raft's configuration before the node starts (timeouts and
	// snapshot thresholds in tests). LocalID, Logger and NotifyCh are the store's.
	Tune func(*raft.Config)
}

// Group-commit bounds: envelopes and bytes per TypeBatch entry, and raft entries in flight.
const (
	maxBatchCommands = 512
	maxBatchBytes    = 1 << 20
	bigCommand       = 256 << 10 // an envelope this big goes in an entry of its own
	maxInflight      = 4
	queueLen         = 4096
	enqueueTimeout   = 10 * time.Second
	opTimeout        = 10 * time.Second
)

// Store is one hub node's view of the replicated state. Its methods are safe for concurrent use.
type Store struct {
	cfg     Config
	log     *slog.Logger
	raft    *raft.Raft
	trans   *raft.NetworkTransport
	guard   *guardedTransport
	snaps   raft.SnapshotStore
	logs    raft.LogStore // the log cache raft reads through (appliedIndex)
	stable  raft.StableStore
	ap      *applier
	metrics *metrics

	queue     chan *request
	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	caughtUp    atomic.Bool
	readyTarget atomic.Uint64

	builds buildGate // what the members' builds know (ClusterKnows)
}

// logCacheEntries bounds raft's in-memory cache of recent log entries (at most ~1 MiB each).
const logCacheEntries = 32

// Open starts a node. With cfg.Bootstrap and no existing raft state it bootstraps a one-node
// cluster; a node with state rejoins its cluster from disk.
func Open(cfg Config) (*Store, error) {
	if cfg.DB == nil || cfg.Dir == "" || cfg.NodeID == "" || (cfg.RaftBind == "" && cfg.StreamLayer == nil) || cfg.Processor == nil {
		return nil, fmt.Errorf("%w: DB, Dir, NodeID, RaftBind and Processor are required", ErrConfig)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger.With("node", cfg.NodeID)
	hlog := newRaftLogger(log)
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create raft dir: %w", err)
	}
	s := &Store{cfg: cfg, log: log, metrics: newMetrics(),
		queue: make(chan *request, queueLen), stop: make(chan struct{})}
	if cfg.Changes == nil {
		cfg.Changes = NewFeed()
	}
	s.cfg.Changes = cfg.Changes
	s.ap = &applier{db: cfg.DB, proc: cfg.Processor, log: log, feed: cfg.Changes,
		batches: func(n int) { s.metrics.batchCmds.Observe(float64(n)) }}
	if err := s.ap.loadApplied(); err != nil {
		return nil, err
	}

	logDB := cfg.LogDB
	if logDB == nil {
		logDB = cfg.DB
	}
	logs := raftstore.New(logDB)
	// The cache counts entries, not bytes, and chunk uploads travel in ~1 MiB entries: 1,024 of
	// them pinned over a gigabyte of heap during a big upload. GetLog from badger costs about a
	// microsecond, so a short cache for followers just behind is all that pays.
	cache, err := raft.NewLogCache(logCacheEntries, logs)
	if err != nil {
		return nil, fmt.Errorf("raft log cache: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, hlog)
	if err != nil {
		return nil, fmt.Errorf("raft snapshot store: %w", err)
	}
	if err := checkSnapshots(filepath.Join(cfg.Dir, "snapshots"), snaps); err != nil {
		return nil, err
	}
	s.snaps = snaps
	var adv net.Addr
	if cfg.RaftAdvertise != "" {
		if adv, err = net.ResolveTCPAddr("tcp", cfg.RaftAdvertise); err != nil {
			return nil, fmt.Errorf("%w: raft advertise address %q: %w", ErrConfig, cfg.RaftAdvertise, err)
		}
	}
	if s.trans, err = newTransport(cfg, adv, hlog); err != nil {
		return nil, err
	}

	notify := make(chan bool, 16)
	rc := raft.DefaultConfig()
	if cfg.Tune != nil {
		cfg.Tune(rc)
	}
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hlog
	rc.NotifyCh = notify
	// The FSM's state is in badger, synced with every apply, so it is never behind the newest
	// snapshot: restoring that snapshot at start would only rewrite what is there. If it is
	// behind (the database was lost but not the snapshots), restore.
	applied := s.ap.pos.index // the FSM goroutine owns pos once raft runs
	rc.NoSnapshotRestoreOnStart = applied >= newestSnapshot(snaps)

	f := &fsm{db: cfg.DB, ap: s.ap, log: log, dir: cfg.Dir}
	s.guard = &guardedTransport{NetworkTransport: s.trans}
	s.logs = cache
	s.stable = logs
	s.raft, err = raft.NewRaft(rc, f, cache, logs, snaps, s.guard)
	if err != nil {
		_ = s.trans.Close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	if err := s.metrics.register(cfg.Registerer, s.raft); err != nil {
		s.shutdown(false)
		return nil, err
	}
	if cfg.Bootstrap {
		if err := s.bootstrap(cache, logs, snaps); err != nil {
			s.shutdown(false)
			return nil, err
		}
	}
	if cfg.DeadNodeTimeout > 0 {
		s.wg.Add(1)
		go s.reapDeadNodes(cfg.DeadNodeTimeout)
	}
	s.wg.Add(2)
	go s.commitLoop()
	go s.watchLeadership(notify)
	log.Info("raft node started", "raft", s.RaftAddr(), "http", cfg.HTTPAddr, "applied", applied)
	return s, nil
}

// checkSnapshots verifies every snapshot kept in dir before raft starts: its meta.json parses
// and its state.bin has the CRC the meta records. hashicorp/raft skips a snapshot whose meta it
// cannot read (an older one, or none, then looks newest) and checks a state file only when it
// restores or sends it, so a damaged snapshot would surface later, on a follower that needs it.
// Snapshots still being written (".tmp") are raft's to discard.
func checkSnapshots(dir string, snaps *raft.FileSnapshotStore) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrCorruptSnapshot, dir, err)
	}
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		meta := filepath.Join(dir, e.Name(), "meta.json")
		b, err := os.ReadFile(meta)
		if err == nil {
			var m raft.SnapshotMeta
			err = json.Unmarshal(b, &m)
		}
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrCorruptSnapshot, meta, err)
		}
		_, rc, err := snaps.Open(e.Name())
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrCorruptSnapshot, filepath.Join(dir, e.Name(), "state.bin"), err)
		}
		_ = rc.Close()
	}
	return nil
}

func newestSnapshot(snaps raft.SnapshotStore) uint64 {
	list, err := snaps.List()
	if err != nil || len(list) == 0 {
		return 0
	}
	return list[0].Index
}

func (s *Store) bootstrap(logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore) error {
	has, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return fmt.Errorf("check raft state: %w", err)
	}
	if has {
		return nil
	}
	conf := raft.Configuration{Servers: []raft.Server{{
		ID: raft.ServerID(s.cfg.NodeID), Address: s.trans.LocalAddr(), Suffrage: raft.Voter,
	}}}
	if err := s.raft.BootstrapCluster(conf).Error(); err != nil && err != raft.ErrCantBootstrap { //nolint:errorlint
		return fmt.Errorf("bootstrap: %w", err)
	}
	s.log.Info("bootstrapped a one-node cluster")
	return nil
}

// DB returns the shared badger database. Readers may read anything under FSMPrefix; writing
// there outside the FSM breaks replication.
func (s *Store) DB() *badger.DB { return s.cfg.DB }

// Changes is the node's change feed: what every committed command changed, on every node, in
// commit order (feed.go).
func (s *Store) Changes() *Feed { return s.cfg.Changes }

// NodeID returns this node's raft id.
func (s *Store) NodeID() string { return s.cfg.NodeID }

// RaftAddr returns the address peers use to reach this node's raft transport.
func (s *Store) RaftAddr() string { return string(s.trans.LocalAddr()) }

// HTTPAddr returns the API address given in Config.
func (s *Store) HTTPAddr() string { return s.cfg.HTTPAddr }

// IsLeader reports whether this node is the leader now.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// Close stops the node. A leader with other voters first hands leadership over, so the cluster
// does not wait out an election timeout. Pending writes fail with ErrShutdown (or ErrLeadershipLost
// when already proposed). Close does not close the database.
func (s *Store) Close() error {
	return s.shutdown(true)
}

// Abort stops the node the way a crash would as far as the cluster sees it: no leadership
// transfer. Its disk state is whatever was committed, as after a process kill. For tests and for
// fatal errors.
func (s *Store) Abort() error {
	return s.shutdown(false)
}

func (s *Store) shutdown(transfer bool) error {
	s.closeOnce.Do(func() {
		if transfer && s.IsLeader() && s.otherVoters() {
			if err := s.raft.LeadershipTransfer().Error(); err != nil {
				s.log.Warn("leadership transfer before shutdown", "err", err)
			}
		}
		close(s.stop)
		fut := s.raft.Shutdown()
		// Raft's replication may be stuck in a pipeline whose reader stopped: closing the
		// pipelines lets it see the shutdown (guardedTransport.closePipelines).
		s.guard.closePipelines()
		if err := fut.Error(); err != nil {
			s.closeErr = fmt.Errorf("raft shutdown: %w", err)
		}
		s.guard.closeHeartbeats()
		if err := s.trans.Close(); err != nil && s.closeErr == nil {
			s.closeErr = fmt.Errorf("close raft transport: %w", err)
		}
		s.wg.Wait()
		s.log.Info("raft node stopped")
	})
	return s.closeErr
}

func (s *Store) otherVoters() bool {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage == raft.Voter && string(srv.ID) != s.cfg.NodeID {
			return true
		}
	}
	return false
}

// timeoutFrom returns the time left before ctx's deadline, or def without one.
func timeoutFrom(ctx context.Context, def time.Duration) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		if left := time.Until(d); left > 0 {
			return left
		}
		return time.Millisecond
	}
	return def
}
