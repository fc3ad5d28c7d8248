package node

import (
	"encoding/json"
	"fmt"

	"github.com/driftline/driftline/hub/api"
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
