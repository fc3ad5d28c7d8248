package reconcile

import (
	"bytes"
	"context"
	"slices"
	"testing"

	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/shared/artifact"
)

// TestAssetsAskedWithChunks: the contract and profile a pull lacks are asked with its first
// chunks, not after the download (when a whole wave asks for them at once), and end in the
// asset store; ActiveModels serves them once the version runs.
func TestAssetsAskedWithChunks(t *testing.T) {
	r := newRig(t, config.Default().Fetch)
	m, man := r.conn.version(r.key, "m", 1, bytes.Repeat([]byte("version one "), 40000))
	contract, profile := []byte(`{"fields":[{"name":"t","type":"number"}]}`), bytes.Repeat([]byte("profile "), 3000)
	r.conn.mu.Lock()
	m.ContractDigest, m.ProfileDigest = artifact.DigestOf(contract), artifact.DigestOf(profile)
	r.conn.objects[m.ContractDigest], r.conn.objects[m.ProfileDigest] = contract, profile
	r.conn.mu.Unlock()
	m.ApprovalSignature = artifact.SignApproval(r.key, m.Approval())

	if _, err := r.rc.handleDesired(context.Background(), desired(t, 1, m)); err != nil {
		t.Fatal(err)
	}
	ms, err := r.rc.ActiveModels()
	if err != nil || len(ms) != 1 || !bytes.Equal(ms[0].Contract, contract) || !bytes.Equal(ms[0].Profile, profile) {
		t.Fatalf("ActiveModels = %+v, %v; want m@1 with its contract and profile", ms, err)
	}
	r.conn.mu.Lock()
	asked := r.conn.asked
	r.conn.mu.Unlock()
	last := man.Chunks[len(man.Chunks)-1].Digest
	lastChunkAt, assetsAt := -1, map[string]int{}
	for i, req := range asked {
		if slices.Contains(req, last) && lastChunkAt < 0 {
			lastChunkAt = i
		}
		for _, d := range []string{m.ContractDigest, m.ProfileDigest} {
			if _, ok := assetsAt[d]; !ok && slices.Contains(req, d) {
				assetsAt[d] = i
			}
		}
	}
	for _, d := range []string{m.ContractDigest, m.ProfileDigest} {
		i, ok := assetsAt[d]
		if !ok || i > lastChunkAt {
			t.Fatalf("requests %v: asset %s asked in request %d (%v), the last chunk in %d; want the asset asked no later than the chunks", asked, d, i, ok, lastChunkAt)
		}
	}
}
