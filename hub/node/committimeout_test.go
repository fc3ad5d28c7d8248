package node

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestTuneRaftCommitTimeout: the node gives raft Config.RaftCommitTimeout, or
// DefaultRaftCommitTimeout when it is zero (raft's own 50 ms would delay every forwarded write).
func TestTuneRaftCommitTimeout(t *testing.T) {
	for _, tc := range []struct{ set, want time.Duration }{{0, DefaultRaftCommitTimeout}, {20 * time.Millisecond, 20 * time.Millisecond}} {
		rc := raft.DefaultConfig()
		(&Node{cfg: Config{RaftCommitTimeout: tc.set}}).tuneRaft(rc)
		if rc.CommitTimeout != tc.want {
			t.Errorf("RaftCommitTimeout %s: raft CommitTimeout %s, want %s", tc.set, rc.CommitTimeout, tc.want)
		}
	}
}
