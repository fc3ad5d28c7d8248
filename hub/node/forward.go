package node

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"

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

// Chunks an aborted upload left are deleted by a sweep the leader proposes every
// chunkSweepInterval, for chunks stored more than chunkSweepGrace ago that no version lists:
// an upload in progress keeps its chunks (each batch it sends refreshes the time of chunks it
// shares with another pending upload).
const (
	chunkSweepInterval = 10 * time.Minute
	chunkSweepGrace    = time.Hour
)

// sweepChunks proposes a ChunksSweep of chunks stored more than grace ago that no version lists,
// and returns how many it deleted.
func (n *Node) sweepChunks(ctx context.Context, grace time.Duration) (int, error) {
	env, err := command.New(command.TypeChunksSweep, "", 0, "hub:"+n.cfg.NodeID,
		state.ChunksSweep{Before: time.Now().Add(-grace).UnixMilli()})
	if err != nil {
		return 0, err
	}
	res, err := n.store.Apply(ctx, env)
	if err != nil {
		return 0, err
	}
	swept, _ := res.(state.ChunksSwept)
	if swept.Deleted > 0 {
		n.log.Info("deleted chunks of aborted uploads", "chunks", swept.Deleted)
	}
	return swept.Deleted, nil
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
