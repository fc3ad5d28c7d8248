package store

import (
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// Errors returned by Store. Raft's own errors never cross the package boundary: they are
// translated into these.
var (
	// ErrNotLeader means this node is not the leader; the caller should send the write to the
	// leader (see LeaderHTTP). Nothing was applied.
	ErrNotLeader = errors.New("store: not the leader")
	// ErrLeadershipLost means leadership was lost after the command was proposed: it may or may not
	// have been committed. Commands must be idempotent (request ids) so a retry is safe.
	ErrLeadershipLost = errors.New("store: leadership lost, outcome unknown")
	// ErrShutdown means the store is closed or closing.
	ErrShutdown = errors.New("store: shut down")
	// ErrTimeout means the operation did not finish in time; for a write the outcome is unknown.
	ErrTimeout = errors.New("store: timed out")
	// ErrCommandTooBig means one command alone does not fit in a badger transaction; it was not
	// applied (its raft entry is skipped on every node alike).
	ErrCommandTooBig = errors.New("store: command too big for one transaction")
	// ErrBadCommand means a committed entry could not be decoded. It is a bug in the proposer.
	ErrBadCommand = errors.New("store: undecodable command")
	// ErrConfig means Config is incomplete or inconsistent.
	ErrConfig = errors.New("store: bad config")
	// ErrCorruptSnapshot means a snapshot stream could not be parsed.
	ErrCorruptSnapshot = errors.New("store: corrupt snapshot")
	// ErrClusterBehind means a node of the cluster does not know (or could not say whether it
	// knows) a command type this build proposes: a rolling upgrade in progress (ClusterKnows).
	ErrClusterBehind = errors.New("store: a node of the cluster does not know the command type")
	// ErrNotSplit is joined to the error of a command that the processor would have split into
	// parts (Splitter) but that went out whole because a node of the cluster does not know the
	// parts' types (ErrClusterBehind): with ErrCommandTooBig, it says the command is too big only
	// until every node is upgraded.
	ErrNotSplit = errors.New("store: proposed whole, not in parts, while a node of the cluster does not know the parts")
)

// translate maps raft's errors to the sentinels above, wrapping with what was being done.
func translate(what string, err error) error {
	if err == nil {
		return nil
	}
	var s error
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrNotVoter),
		errors.Is(err, raft.ErrLeadershipTransferInProgress): // refused before it was proposed
		s = ErrNotLeader
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrAbortedByRestore):
		s = ErrLeadershipLost
	case errors.Is(err, raft.ErrRaftShutdown):
		s = ErrShutdown
	case errors.Is(err, raft.ErrEnqueueTimeout):
		s = ErrTimeout
	default:
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w (%v)", what, s, err)
}
