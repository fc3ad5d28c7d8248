package api

import (
	"fmt"
	"net/http"
	"testing"

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
