package api

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
)

// Operator is what the operations endpoints (backup, leadership transfer, node status) need from
// the store besides Store. The hub node's store implements it; a Store without it answers those
// endpoints with 501.
type Operator interface {
	// Backup streams a consistent backup of the replicated state to w (leader only). start is
	// called with the backup's header before the first byte is written.
	Backup(ctx context.Context, w io.Writer, start func(BackupHeader)) error
	// TransferLeadership hands leadership to the voter id ("" lets raft pick the most
	// up-to-date one) and returns the new leader's id (leader only). An unknown id is an error
	// wrapping state.ErrNotFound.
	TransferLeadership(ctx context.Context, id string) (string, error)
	// NodeReport describes this node: raft position, snapshot, disk.
	NodeReport() NodeReport
}

// BackupHeader is what the leader says about a backup before streaming it.
type BackupHeader struct {
	Node           string
	Index, Term    uint64
	EstimatedBytes int64
}

// Response headers of GET /api/v1/cluster/backup.
const (
	HeaderBackupIndex    = "X-Driftline-Backup-Index"
	HeaderBackupTerm     = "X-Driftline-Backup-Term"
	HeaderBackupNode     = "X-Driftline-Backup-Node"
	HeaderBackupEstimate = "X-Driftline-Backup-Estimated-Bytes"
)

// NodeReport is the answer of GET /api/v1/node: this node as an operator's script sees it.
type NodeReport struct {
	ID           string   `json:"id"`
	State        string   `json:"state"`
	Leader       *NodeRef `json:"leader"`
	Term         uint64   `json:"term"`
	CommitIndex  uint64   `json:"commit_index"`
	AppliedIndex uint64   `json:"applied_index"`
	LastLogIndex uint64   `json:"last_log_index"`
	// LastSnapshot is the newest raft snapshot on this node's disk (null: none yet).
	LastSnapshot *SnapshotRef `json:"last_snapshot"`
	Disk         DiskUse      `json:"disk"`
}

// SnapshotRef names a raft snapshot.
type SnapshotRef struct {
	Index uint64    `json:"index"`
	Term  uint64    `json:"term"`
	Time  time.Time `json:"time"`
	Bytes int64     `json:"bytes"`
}

// DiskUse is what the node's data dir holds and what its file system has left.
type DiskUse struct {
	DataDir string `json:"data_dir"`
	// Bytes per part of the data dir: "db" (state), "raftlog", "raft" (snapshots), "other".
	Bytes      map[string]int64 `json:"bytes"`
	TotalBytes int64            `json:"total_bytes"`
	// FreeBytes and SizeBytes describe the file system holding the data dir (0 when unknown).
	FreeBytes uint64 `json:"free_bytes"`
	SizeBytes uint64 `json:"size_bytes"`
}

// LeadershipRequest asks the leader to hand over leadership.
type LeadershipRequest struct {
	// To is the voter to hand over to; empty lets raft choose.
	To string `json:"to,omitempty"`
}

// LeadershipResponse names the leader after a transfer.
type LeadershipResponse struct {
	Leader string `json:"leader"`
}

// opsRoutes registers the operations endpoints; routes() calls it.
func (s *Server) opsRoutes(v1 *echo.Group) {
	admin := []echo.MiddlewareFunc{s.allow(adminOnly...), s.leaderBound}
	v1.GET("/cluster/backup", s.clusterBackup, admin...)
	v1.POST("/cluster/leadership", s.clusterLeadership, admin...)
	v1.GET("/node", s.nodeReport, s.allow(adminOnly...))
}

func (s *Server) operator() (Operator, error) {
	op, ok := s.store.(Operator)
	if !ok {
		return nil, problem(http.StatusNotImplemented, ProblemInternal, "not implemented", "this hub's store has no operations support")
	}
	return op, nil
}

// clusterBackup streams a backup. Errors before the first byte are problems; after it, the
// stream is cut and the client's check of the file fails.
func (s *Server) clusterBackup(c echo.Context) error {
	op, err := s.operator()
	if err != nil {
		return err
	}
	res := c.Response()
	err = op.Backup(c.Request().Context(), res, func(h BackupHeader) {
		hd := res.Header()
		hd.Set(echo.HeaderContentType, "application/octet-stream")
		hd.Set(echo.HeaderContentDisposition, `attachment; filename="driftline-`+strconv.FormatUint(h.Index, 10)+`.backup"`)
		hd.Set(HeaderBackupIndex, strconv.FormatUint(h.Index, 10))
		hd.Set(HeaderBackupTerm, strconv.FormatUint(h.Term, 10))
		hd.Set(HeaderBackupNode, h.Node)
		hd.Set(HeaderBackupEstimate, strconv.FormatInt(h.EstimatedBytes, 10))
		res.WriteHeader(http.StatusOK)
	})
	if err != nil {
		return err
	}
	return nil
}

func (s *Server) clusterLeadership(c echo.Context) error {
	op, err := s.operator()
	if err != nil {
		return err
	}
	var req LeadershipRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	id, err := op.TransferLeadership(c.Request().Context(), req.To)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, LeadershipResponse{Leader: id})
}

func (s *Server) nodeReport(c echo.Context) error {
	op, err := s.operator()
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, op.NodeReport())
}
