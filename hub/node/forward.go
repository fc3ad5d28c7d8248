package node

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
)

// forwardLimit is the largest telemetry body a follower sends the leader: the leader's JSON body
// limit, less room for the envelope.
func (n *Node) forwardLimit() int {
	if n.cfg.forwardLimit > 0 {
		return n.cfg.forwardLimit
	}
	return api.DefaultMaxBodyBytes - 4<<10
}

// splitTelemetry splits a telemetry batch (state.DeviceTelemetry JSON) into batches whose JSON is
// at most limit bytes each, in the original order, so a follower's forward never exceeds the
// leader's body limit: one oversized batch was refused whole, for ever. An observation that alone
// exceeds the limit cannot be forwarded: it is left out and its device id returned in dropped,
// and the rest goes on.
func splitTelemetry(payload []byte, limit int) (parts [][]byte, dropped []string, err error) {
	if len(payload) <= limit {
		return [][]byte{payload}, nil, nil
	}
	var batch state.DeviceTelemetry
	if err := json.Unmarshal(payload, &batch); err != nil {
		return nil, nil, fmt.Errorf("node: telemetry batch: %w", err)
	}
	const overhead = len(`{"devices":[]}`)
	var out [][]byte
	var cur []json.RawMessage
	size := overhead
	flush := func() error {
		if len(cur) == 0 {
			return nil
		}
		b, err := json.Marshal(struct {
			Devices []json.RawMessage `json:"devices"`
		}{cur})
		if err != nil {
			return err
		}
		out = append(out, b)
		cur, size = nil, overhead
		return nil
	}
	for _, o := range batch.Devices {
		b, err := json.Marshal(o)
		if err != nil {
			return nil, nil, err
		}
		if overhead+len(b) > limit {
			dropped = append(dropped, o.ID)
			continue
		}
		if size+len(b)+1 > limit {
			if err := flush(); err != nil {
				return nil, nil, err
			}
		}
		cur = append(cur, b)
		size += len(b) + 1
	}
	if err := flush(); err != nil {
		return nil, nil, err
	}
	return out, dropped, nil
}

// Chunks an aborted upload left are deleted by a sweep the leader proposes when it starts leading
// and every chunkSweepInterval, for chunks stored more than chunkSweepGrace ago that no version
// lists: an upload in progress keeps its chunks (each batch it sends refreshes the time of chunks
// it shares with another pending upload). Chunks left by builds that did not mark them pending
// are marked first (markOrphanChunks), so they go one grace period later.
const (
	chunkSweepInterval = 10 * time.Minute
	chunkSweepGrace    = time.Hour
)

// sweepChunks proposes a ChunksSweep of chunks stored more than grace ago that no version lists,
// and returns how many it deleted.
func (n *Node) sweepChunks(ctx context.Context, grace time.Duration) (int, error) {
	return n.sweepChunksBefore(ctx, time.Now().Add(-grace))
}

// sweepChunksBefore proposes ChunksSweeps of the pending chunks marked before t, at most
// state.SweepChunksPerCommand chunks each (the oldest first: one command is one transaction of
// the state machine, which an aborted upload of gigabytes would not fit), counts what they
// deleted in the metrics and returns how many chunks that was. It proposes nothing while a node
// of the cluster does not know the command (a rolling upgrade from a build before the sweep: the
// node would stop at it; the leader sweeps when it starts leading, i.e. in the middle of an
// upgrade).
func (n *Node) sweepChunksBefore(ctx context.Context, t time.Time) (int, error) {
	if err := n.store.ClusterKnows(ctx, command.TypeChunksSweep); err != nil {
		return 0, fmt.Errorf("chunk sweep not proposed: %w", err)
	}
	total := 0
	for {
		cutoff, all, err := n.Reader().ChunkSweepCutoff(t.UnixMilli(), state.SweepChunksPerCommand)
		if err != nil {
			return total, err
		}
		env, err := command.New(command.TypeChunksSweep, "", 0, "hub:"+n.cfg.NodeID, state.ChunksSweep{Before: cutoff})
		if err != nil {
			return total, err
		}
		res, err := n.store.Apply(ctx, env)
		if err != nil {
			return total, err
		}
		swept, _ := res.(state.ChunksSwept)
		if swept.Deleted > 0 {
			total += swept.Deleted
			n.sweep.swept.Add(float64(swept.Deleted))
			n.sweep.bytes.Add(float64(swept.Bytes))
			n.log.Info("deleted chunks of aborted uploads", "chunks", swept.Deleted, "bytes", swept.Bytes)
		}
		if all || swept.Deleted == 0 {
			return total, nil
		}
	}
}

// ensureNodeToken gives this node (the leader of a cluster of two nodes or more; a lone node
// calls no one) a node token of its own when DATA/node.token
// holds none (the bootstrap node, which never joined; a node that joined before node tokens
// were node credentials): without a cluster CA it is the credential this node forwards writes
// with once it is a follower.
func (n *Node) ensureNodeToken(ctx context.Context) error {
	if len(n.store.Status().Nodes) < 2 { // alone, it calls no one
		return nil
	}
	if tok := n.peerToken(); tok != "" {
		p, err := n.Reader().PrincipalByTokenHash(api.HashToken(tok))
		if err == nil && api.IsNodeCredential(p) {
			return nil
		}
	}
	tok := api.NewToken()
	id := api.NodeTokenIDPrefix + uuid.NewString()[:8]
	name := "node-" + strings.NewReplacer(":", "-", "/", "-").Replace(n.cfg.NodeID)
	if !state.ValidName(name) {
		name = "node-" + id[len(api.NodeTokenIDPrefix):]
	}
	env, err := command.New(command.TypeTokenCreate, "", 0, "hub:"+n.cfg.NodeID,
		state.TokenCreate{ID: id, Name: name, Role: state.RoleAdmin, Hash: api.HashToken(tok)})
	if err != nil {
		return err
	}
	if _, err := n.store.Apply(ctx, env); err != nil {
		return err
	}
	return writeSecret(filepath.Join(n.cfg.DataDir, NodeTokenFile), tok)
}

// Metric names of the chunk sweep.
const (
	// MetricChunksSwept counts chunks the leader's sweep deleted (aborted uploads).
	MetricChunksSwept = "driftline_hub_chunks_swept_total"
	// MetricChunksSweptBytes counts their stored (compressed) bytes.
	MetricChunksSweptBytes = "driftline_hub_chunks_swept_bytes_total"
	// MetricChunksOrphaned counts chunks found unlisted and unmarked (left by builds before
	// uploads marked their chunks) and marked for the sweep.
	MetricChunksOrphaned = "driftline_hub_chunks_orphaned_total"
)

type sweepMetrics struct {
	swept, bytes, orphaned prometheus.Counter
}

func newSweepMetrics(reg prometheus.Registerer) *sweepMetrics {
	m := &sweepMetrics{
		swept: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricChunksSwept,
			Help: "Chunks of aborted uploads the leader's sweep deleted."}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricChunksSweptBytes,
			Help: "Stored (compressed) bytes of the chunks the leader's sweep deleted."}),
		orphaned: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricChunksOrphaned,
			Help: "Chunks no version lists and no pending mark covered (left by older builds), marked for the sweep."}),
	}
	reg.MustRegister(m.swept, m.bytes, m.orphaned)
	return m
}

// markOrphanChunks proposes a ChunksOrphanMark: chunks no version lists that carry no pending
// mark (what aborted uploads left before uploads marked their chunks) are marked pending now, so
// the sweep deletes them once older than its grace period. It proposes nothing while a node of
// the cluster does not know the command (a rolling upgrade): that node would stop at it.
func (n *Node) markOrphanChunks(ctx context.Context) (int, error) {
	if err := n.store.ClusterKnows(ctx, command.TypeChunksOrphanMark); err != nil {
		return 0, fmt.Errorf("orphan mark not proposed: %w", err)
	}
	env, err := command.New(command.TypeChunksOrphanMark, "", 0, "hub:"+n.cfg.NodeID, state.ChunksOrphanMark{})
	if err != nil {
		return 0, err
	}
	res, err := n.store.Apply(ctx, env)
	if err != nil {
		return 0, err
	}
	marked, _ := res.(state.ChunksMarked)
	if marked.Marked > 0 {
		n.sweep.orphaned.Add(float64(marked.Marked))
		n.log.Info("marked orphan chunks of older aborted uploads for the sweep", "chunks", marked.Marked)
	}
	return marked.Marked, nil
}

// peerMaxCommand asks the node whose API is at addr for the highest command type its build
// knows (store.Config.PeerInfo). A node of a build before cluster.PathInfo cannot say: it
// knows none of the types added since.
func (n *Node) peerMaxCommand(ctx context.Context, addr string) (uint16, error) {
	info, err := n.peers.Info(ctx, addr, n.peerToken())
	return info.MaxCommand, err
}

// DefaultRaftCommitTimeout is raft's CommitTimeout on every node unless Config.RaftCommitTimeout
// says otherwise: how long the leader's replication to a follower waits without new entries
// before it sends an (empty) append, which is how a follower learns that entries it holds were
// committed. hashicorp/raft does not send one when the commit index advances (etcd's raft does),
// so with its 50 ms default a follower applied a write it forwarded 50-100 ms after the leader
// answered, and forwarded writes, which wait for that apply (read-your-writes), fell to 16
// writes/s for one client (BenchmarkAPIWrites, docs/benchmarks.md: 208/s at 1 ms, 154/s at 3 ms).
// The price is idle CPU on the leader, an empty append per follower per timeout: three idle hubs
// use 2.7 s of CPU in 20 s against 1.1 s at 50 ms (docs/benchmarks.md). A one-node cluster
// replicates to no one and pays nothing; a cluster whose writes come through the leader, or
// whose clients tolerate the latency, can trade it back with --raft-commit-timeout.
const DefaultRaftCommitTimeout = 1 * time.Millisecond

// tuneRaft is the node's adjustment of the store's raft config.
func (n *Node) tuneRaft(rc *raft.Config) {
	rc.CommitTimeout = DefaultRaftCommitTimeout
	if n.cfg.RaftCommitTimeout > 0 {
		rc.CommitTimeout = n.cfg.RaftCommitTimeout
	}
}
