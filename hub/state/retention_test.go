package state

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/command"
)

// runVersions reports, for device d1, active versions of model m one after another (rev by rev),
// so every version but the last leaves a closed runs edge.
func runVersions(h *harness, dev string, versions ...int) {
	for i, v := range versions {
		v := v
		h.must(command.TypeDeviceTelemetry, "hub", DeviceTelemetry{Devices: []DeviceObservation{
			{ID: dev, Reported: &Reported{Rev: int64(i + 1), Models: map[string]ReportedModel{"m": {Active: &v, State: "active"}}}},
		}})
	}
}

func keyExists(t *testing.T, db *badger.DB, k []byte) bool {
	t.Helper()
	var ok bool
	if err := db.View(func(txn *badger.Txn) error {
		var err error
		ok, err = exists(txn, k)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestRetentionPrunesClosedRunsEdges: closed runs edges older than the cutoff go, with their
// reverse index; newer closed edges and open ones (what a device runs now) stay.
func TestRetentionPrunesClosedRunsEdges(t *testing.T) {
	h := newHarness(t)
	for _, d := range []string{"d1", "d2"} {
		h.must(command.TypeDeviceCreate, "a", DeviceCreate{ID: d, TokenHash: "h" + d})
	}
	runVersions(h, "d1", 1, 2, 3) // closes 1 then 2
	cutoff := h.now + 500         // after d1's edges to 1 and 2 closed
	runVersions(h, "d2", 1, 2)    // closes d2's edge to 1 after the cutoff
	r := Reader{DB: h.db}
	if n, err := r.ClosedRunsEdges(cutoff, 100); err != nil || n != 2 {
		t.Fatalf("closed runs edges before the cutoff: %d %v", n, err)
	}
	res := h.must(command.TypeRetentionPrune, "hub", RetentionPrune{RunsBefore: cutoff, Limit: 1}).(RetentionResult)
	if res.RunsEdges != 1 || !res.More {
		t.Fatalf("limit 1: %+v", res)
	}
	res = h.must(command.TypeRetentionPrune, "hub", RetentionPrune{RunsBefore: cutoff}).(RetentionResult)
	if res.RunsEdges != 1 || res.More {
		t.Fatalf("second prune: %+v", res)
	}
	for _, v := range []int{1, 2} {
		if _, err := r.RunsEdge("d1", "m", v); !errors.Is(err, ErrNotFound) {
			t.Fatalf("d1 -> m@%d survived retention: %v", v, err)
		}
		if keyExists(t, h.db, edgeKey(pLineageIn, ModelNode("m", v), EdgeRuns, DeviceNode("d1"))) {
			t.Fatalf("reverse index of d1 -> m@%d survived", v)
		}
	}
	if e, err := r.RunsEdge("d1", "m", 3); err != nil || e.Until != 0 {
		t.Fatalf("the open edge must stay: %+v %v", e, err)
	}
	if e, err := r.RunsEdge("d2", "m", 1); err != nil || e.Until == 0 {
		t.Fatalf("a closed edge newer than the cutoff must stay: %+v %v", e, err)
	}
	// Nothing left: no audit entry for an empty prune.
	head := auditCount(t, r)
	res = h.must(command.TypeRetentionPrune, "hub", RetentionPrune{RunsBefore: cutoff}).(RetentionResult)
	if res.RunsEdges != 0 || auditCount(t, r) != head {
		t.Fatalf("empty prune: %+v, audit %d -> %d", res, head, auditCount(t, r))
	}
}

func auditCount(t *testing.T, r Reader) int {
	n := 0
	if err := r.AuditRange(0, 0, func(AuditEntry) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// exportAudit writes entries from..through of r's log into an export.
func exportAudit(t *testing.T, r Reader, through uint64) (*bytes.Buffer, AuditExportTrailer) {
	t.Helper()
	cp, err := r.AuditCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	x, err := NewAuditExportWriter(&buf, cp.Seq+1, cp.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AuditRange(cp.Seq+1, through, x.Add); err != nil {
		t.Fatal(err)
	}
	tr, err := x.Close()
	if err != nil {
		t.Fatal(err)
	}
	return &buf, tr
}

// TestAuditCheckpointedPrune: entries exported and pruned leave a checkpoint from which the kept
// log verifies, the exports verify and chain into it, and a prune that does not match an export
// (wrong hash) is refused without deleting anything.
func TestAuditCheckpointedPrune(t *testing.T) {
	h := newHarness(t)
	for i := 0; i < 10; i++ {
		h.must(command.TypeDatasetCreate, "alice", DatasetCreate{Name: fmt.Sprintf("ds%d", i)})
	}
	r := Reader{DB: h.db}
	exp1, tr1 := exportAudit(t, r, 4)
	if tr1.LastSeq != 4 || tr1.Entries != 4 {
		t.Fatalf("trailer %+v", tr1)
	}
	if _, err := h.apply(command.TypeRetentionPrune, "admin", RetentionPrune{AuditThrough: 4, AuditHash: strings.Repeat("0", 64)}); !errors.Is(err, ErrConflict) {
		t.Fatalf("prune with a hash that is not entry 4's: %v", err)
	}
	if auditCount(t, r) != 10 {
		t.Fatal("a refused prune deleted entries")
	}
	res := h.must(command.TypeRetentionPrune, "admin", RetentionPrune{AuditThrough: tr1.LastSeq, AuditHash: tr1.LastHash, Limit: 3}).(RetentionResult)
	if res.AuditEntries != 3 || !res.More || res.Checkpoint.Seq != 3 {
		t.Fatalf("limited prune: %+v", res)
	}
	res = h.must(command.TypeRetentionPrune, "admin", RetentionPrune{AuditThrough: tr1.LastSeq, AuditHash: tr1.LastHash}).(RetentionResult)
	if res.AuditEntries != 1 || res.More || res.Checkpoint.Seq != 4 || res.Checkpoint.Hash != tr1.LastHash {
		t.Fatalf("rest of the prune: %+v", res)
	}
	// The same prune again changes nothing.
	if res := h.must(command.TypeRetentionPrune, "admin", RetentionPrune{AuditThrough: tr1.LastSeq, AuditHash: tr1.LastHash}).(RetentionResult); res.AuditEntries != 0 {
		t.Fatalf("repeated prune: %+v", res)
	}
	h.must(command.TypeDatasetCreate, "alice", DatasetCreate{Name: "after"})
	exp2, tr2 := exportAudit(t, r, 8)

	cp, _ := r.AuditCheckpoint()
	var kept []AuditEntry
	r.AuditRange(0, 0, func(e AuditEntry) error { kept = append(kept, e); return nil })
	if kept[0].Seq != 5 || cp.Seq != 4 {
		t.Fatalf("kept log starts at %d, checkpoint %+v", kept[0].Seq, cp)
	}
	if i, err := VerifyChain(cp.Hash, kept); err != nil {
		t.Fatalf("kept log from the checkpoint: entry %d: %v", i, err)
	}
	if _, err := VerifyChain("", kept); err == nil {
		t.Fatal("the kept log must not verify from the start of the chain")
	}
	h1, t1, err := ReadAuditExport(bytes.NewReader(exp1.Bytes()), nil)
	if err != nil || h1.FirstSeq != 1 || h1.PrevHash != "" || t1.LastHash != cp.Hash {
		t.Fatalf("first export: %+v %+v %v", h1, t1, err)
	}
	h2, _, err := ReadAuditExport(bytes.NewReader(exp2.Bytes()), nil)
	if err != nil || h2.FirstSeq != 5 || h2.PrevHash != cp.Hash || tr2.LastSeq != 8 {
		t.Fatalf("second export: %+v %v", h2, err)
	}

	// Damaged exports are refused, naming the damage.
	b := exp1.Bytes()
	lines := bytes.SplitAfter(b, []byte("\n"))
	for name, bad := range map[string][]byte{
		"cut short":  b[:len(b)-len(lines[len(lines)-2])],
		"edited":     bytes.Replace(b, []byte("ds1"), []byte("dsX"), 1),
		"reordered":  bytes.Join([][]byte{lines[0], lines[2], lines[1], lines[3], lines[4], lines[5]}, nil),
		"not export": []byte("{}\n"),
		"empty":      nil,
	} {
		if _, _, err := ReadAuditExport(bytes.NewReader(bad), nil); !errors.Is(err, ErrBadExport) {
			t.Errorf("%s export: %v", name, err)
		}
	}
	// Pruning through an entry that does not exist is refused.
	if _, err := h.apply(command.TypeRetentionPrune, "admin", RetentionPrune{AuditThrough: 999, AuditHash: "x"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("prune past the head: %v", err)
	}
}
