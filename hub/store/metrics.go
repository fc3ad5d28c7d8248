package store

import (
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names of the store, all under driftline_hub_raft_.
const (
	metricState        = "driftline_hub_raft_state"
	metricTerm         = "driftline_hub_raft_term"
	metricCommitIndex  = "driftline_hub_raft_commit_index"
	metricAppliedIndex = "driftline_hub_raft_applied_index"
	metricApplySeconds = "driftline_hub_raft_apply_seconds"
	metricBatchCmds    = "driftline_hub_raft_batch_commands"
	metricDeadRemoved  = "driftline_hub_raft_dead_nodes_removed_total"
	metricUnsplit      = "driftline_hub_raft_commands_unsplit_total"
)

// metrics are the store's Prometheus collectors. Gauges are read from raft at scrape time.
type metrics struct {
	applySeconds prometheus.Histogram
	batchCmds    prometheus.Histogram
	deadRemoved  prometheus.Counter
	unsplit      prometheus.Counter
}

func newMetrics() *metrics {
	return &metrics{
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    metricApplySeconds,
			Help:    "Latency of Store.Apply on the leader, from call to result.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		batchCmds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    metricBatchCmds,
			Help:    "Commands (envelopes) per applied raft entry.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		deadRemoved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricDeadRemoved,
			Help: "Members this node, as leader, removed after --dead-node-timeout without contact.",
		}),
		unsplit: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricUnsplit,
			Help: "Commands the processor would split into parts that went out whole because a node of the cluster does not know the parts' types (a rolling upgrade).",
		}),
	}
}

// register adds the histograms and gauges read from r to reg (nothing when reg is nil).
func (m *metrics) register(reg prometheus.Registerer, r *raft.Raft) error {
	if reg == nil {
		return nil
	}
	cs := []prometheus.Collector{m.applySeconds, m.batchCmds, m.deadRemoved, m.unsplit,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: metricTerm, Help: "Current raft term."},
			func() float64 { return float64(r.CurrentTerm()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: metricCommitIndex, Help: "Raft commit index."},
			func() float64 { return float64(r.CommitIndex()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: metricAppliedIndex, Help: "Raft index applied to the FSM."},
			func() float64 { return float64(r.AppliedIndex()) }),
	}
	for _, st := range []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown} {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        metricState,
			Help:        "1 for the raft state this node is in, 0 for the others.",
			ConstLabels: prometheus.Labels{"state": stateName(st)},
		}, func() float64 {
			if r.State() == st {
				return 1
			}
			return 0
		}))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}

func (m *metrics) observeApply(start time.Time) {
	m.applySeconds.Observe(time.Since(start).Seconds())
}

// stateName is the lower-case name of a raft state used in Status and metrics.
func stateName(s raft.RaftState) string {
	switch s {
	case raft.Leader:
		return "leader"
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	case raft.Shutdown:
		return "shutdown"
	}
	return "unknown"
}
