package state

import (
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/command"
)

// Lineage node kinds (the part of a node id before ':').
const (
	KindDataset = "dataset"
	KindModel   = "model"
	KindRollout = "rollout"
	KindDevice  = "device"
	KindJob     = "job"
)

// Lineage edge kinds. Each is written by the command that makes it true.
const (
	EdgeDerivedFrom = "derived_from" // dataset version -> parent dataset version
	EdgeTrainedOn   = "trained_on"   // model version -> dataset version
	EdgeDeploys     = "deploys"      // rollout -> model version
	EdgeRuns        = "runs"         // device -> model version, with since/until
	EdgeProduced    = "produced"     // job -> dataset or model it wrote
	EdgeConsumed    = "consumed"     // job -> dataset or model it read
)

// DatasetNode names a dataset version node.
func DatasetNode(name string, v int) string { return fmt.Sprintf("dataset:%s@%d", name, v) }

// ModelNode names a model version node.
func ModelNode(name string, v int) string { return fmt.Sprintf("model:%s@%d", name, v) }

// DeviceNode names a device node.
func DeviceNode(id string) string { return "device:" + id }

// RolloutNode names a rollout node.
func RolloutNode(id string) string { return "rollout:" + id }

// Upstream returns, for an edge, which end is downstream and which upstream: walking "up" from a
// node goes from the downstream end to the upstream end. Every kind points from downstream to
// upstream except produced, where the job (From) is upstream of what it wrote (To).
func Upstream(e LineageEdge) (down, up string) {
	if e.Kind == EdgeProduced {
		return e.To, e.From
	}
	return e.From, e.To
}

func edgeKey(prefix, a, kind, b string) []byte {
	return []byte(prefix + a + "\x00" + kind + "\x00" + b)
}

func putNode(txn *badger.Txn, n LineageNode) error {
	return putJSON(txn, nameKey(pLineageNode, n.ID), n)
}

func putEdge(txn *badger.Txn, e LineageEdge) error {
	if err := putJSON(txn, edgeKey(pLineageOut, e.From, e.Kind, e.To), e); err != nil {
		return err
	}
	return txn.Set(edgeKey(pLineageIn, e.To, e.Kind, e.From), nil)
}

// closeRunsEdges sets Until on the device's open runs edges (to one model node, or all when
// model is empty).
func closeRunsEdges(txn *badger.Txn, id, model string, ts int64) error {
	prefix := []byte(pLineageOut + DeviceNode(id) + "\x00" + EdgeRuns + "\x00")
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	var open []LineageEdge
	for it.Rewind(); it.Valid(); it.Next() {
		var e LineageEdge
		if err := it.Item().Value(func(b []byte) error { return jsonUnmarshal(b, &e) }); err != nil {
			it.Close()
			return err
		}
		if e.Until == 0 && (model == "" || e.To == model) {
			open = append(open, e)
		}
	}
	it.Close()
	for _, e := range open {
		e.Until = ts
		if err := putEdge(txn, e); err != nil {
			return err
		}
	}
	return nil
}

// PutRolloutDeploys writes the rollout -deploys-> model version edge. Exported for the rollout
// processor, which writes it in the same Raft entry that creates the rollout.
func PutRolloutDeploys(txn *badger.Txn, rolloutID, model string, version int, ts int64) error {
	if err := putNode(txn, LineageNode{ID: RolloutNode(rolloutID), Kind: KindRollout}); err != nil {
		return err
	}
	return putEdge(txn, LineageEdge{From: RolloutNode(rolloutID), To: ModelNode(model, version), Kind: EdgeDeploys, Since: ts})
}

func openLineage(txn *badger.Txn, env command.Envelope, c OpenLineageEvent) (any, *auditNote, error) {
	if c.Job == "" || c.RunID == "" {
		return nil, nil, invalid("openlineage event needs a job and a run id")
	}
	all := append(append([]string{}, c.Inputs...), c.Outputs...)
	for _, n := range all {
		if !strings.Contains(n, ":") {
			return nil, nil, invalid("openlineage dataset node %q", n)
		}
	}
	job := "job:" + c.Job
	if err := putNode(txn, LineageNode{ID: job, Kind: KindJob, Attr: map[string]any{
		"last_run_id": c.RunID, "last_event": c.EventType, "last_event_time": c.EventTime, "producer": c.Producer,
	}}); err != nil {
		return nil, nil, err
	}
	for _, in := range c.Inputs {
		if err := ensureNode(txn, in); err != nil {
			return nil, nil, err
		}
		if err := putEdge(txn, LineageEdge{From: job, To: in, Kind: EdgeConsumed, Since: env.Time, Attr: map[string]any{"run_id": c.RunID}}); err != nil {
			return nil, nil, err
		}
	}
	for _, out := range c.Outputs {
		if err := ensureNode(txn, out); err != nil {
			return nil, nil, err
		}
		if err := putEdge(txn, LineageEdge{From: job, To: out, Kind: EdgeProduced, Since: env.Time, Attr: map[string]any{"run_id": c.RunID}}); err != nil {
			return nil, nil, err
		}
	}
	return map[string]any{"job": job, "inputs": len(c.Inputs), "outputs": len(c.Outputs)},
		&auditNote{"openlineage." + strings.ToLower(c.EventType), job, c.RunID}, nil
}

func ensureNode(txn *badger.Txn, id string) error {
	ok, err := exists(txn, nameKey(pLineageNode, id))
	if err != nil || ok {
		return err
	}
	kind, _, _ := strings.Cut(id, ":")
	return putNode(txn, LineageNode{ID: id, Kind: kind})
}
