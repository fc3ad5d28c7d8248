package api

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/driftline/driftline/hub/cluster"
	"github.com/driftline/driftline/hub/store"
)

// TestCommandTooBigIsAClearError: a valid request whose change does not fit in one replicated
// transaction (a rollout to 100,000 devices, issue 18) gets a 413 that says what to do, not a
// 500 "internal error".
func TestCommandTooBigIsAClearError(t *testing.T) {
	p := toProblem(fmt.Errorf("store: apply: %w (index 12 position 0)", store.ErrCommandTooBig))
	if p.Status != http.StatusRequestEntityTooLarge || p.Type != ProblemTooLarge || p.Detail == "" {
		t.Fatalf("problem %+v, want a 413 %s with a detail", p, ProblemTooLarge)
	}
}

// TestCommandTooBigDuringUpgrade: a rollout command the leader proposed whole because a node of
// an older build does not know the parts (store.ErrNotSplit) gets a 413 that says to finish the
// upgrade, on the leader and on a follower that forwarded it (cluster.KindTooBig).
func TestCommandTooBigDuringUpgrade(t *testing.T) {
	err := fmt.Errorf("store: apply: %w (index 12 position 0) (%w: node hub3 behind)", store.ErrCommandTooBig, store.ErrNotSplit)
	p := toProblem(err)
	if p.Status != http.StatusRequestEntityTooLarge || !strings.Contains(p.Detail, "finish the upgrade") {
		t.Fatalf("problem %+v, want a 413 that says to finish the upgrade", p)
	}
	s := &Server{}
	kind, data := s.describeError(err)
	fwd := domainError(&cluster.RemoteError{Kind: kind, Detail: err.Error(), Data: data})
	if fp := toProblem(fwd); fp.Status != http.StatusRequestEntityTooLarge || fp.Detail != p.Detail {
		t.Fatalf("forwarded: kind %q, problem %+v; want the leader's %+v", kind, fp, p)
	}
	kind, data = s.describeError(fmt.Errorf("store: apply: %w", store.ErrCommandTooBig))
	fwd = domainError(&cluster.RemoteError{Kind: kind, Data: data})
	if fp := toProblem(fwd); fp.Status != http.StatusRequestEntityTooLarge || strings.Contains(fp.Detail, "upgrade") {
		t.Fatalf("forwarded too big, all nodes upgraded: kind %q, problem %+v", kind, fp)
	}
}
