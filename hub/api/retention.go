package api

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
)

// AuditPruneRequest is the body of POST /api/v1/audit/prune: prune the audit log through the
// last entry of an export, named by its seq and hash (the export's trailer).
type AuditPruneRequest struct {
	ThroughSeq  uint64 `json:"through_seq"`
	ThroughHash string `json:"through_hash"`
}

// maxPruneRounds bounds the RetentionPrune commands one request proposes (each deletes at most
// state.DefaultPruneLimit entries).
const maxPruneRounds = 10_000

// auditCheckpoint serves GET /api/v1/audit/checkpoint: where the kept audit log starts (seq 0
// and hash "" when nothing was pruned).
func (s *Server) auditCheckpoint(c echo.Context) error {
	cp, err := s.read.AuditCheckpoint()
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, cp)
}

// auditPrune serves POST /api/v1/audit/prune: it deletes the audit entries through the named
// one, in bounded commands, and answers the new checkpoint. The hash must be the entry's (409
// otherwise), so only what an export holds is pruned.
func (s *Server) auditPrune(c echo.Context) error {
	var req AuditPruneRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	if req.ThroughSeq == 0 || len(req.ThroughHash) != 64 {
		return badRequest("through_seq", "through_seq (> 0) and through_hash (64 hex digits) name the last entry of an export")
	}
	total := state.RetentionResult{}
	for i := 0; i < maxPruneRounds; i++ {
		// No request id: each round is a new command (a retried round is harmless: it deletes
		// only what is left).
		env, err := command.New(command.TypeRetentionPrune, "", 0, actor(c),
			state.RetentionPrune{AuditThrough: req.ThroughSeq, AuditHash: req.ThroughHash})
		if err != nil {
			return err
		}
		res, err := s.propose(c.Request().Context(), env) // on a follower: forwarded to the leader
		if err != nil {
			return err
		}
		var r state.RetentionResult
		if b, err := json.Marshal(res); err != nil || json.Unmarshal(b, &r) != nil {
			return fmt.Errorf("retention prune: unexpected result %T", res)
		}
		total.AuditEntries += r.AuditEntries
		total.Checkpoint = r.Checkpoint
		if !r.More {
			break
		}
	}
	return c.JSON(http.StatusOK, total)
}
