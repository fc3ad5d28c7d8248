package agent

import (
	"github.com/driftline/driftline/agent/outbox"
	"github.com/driftline/driftline/agent/reconcile"
)

// HoldReports makes every report call f between its snapshot and its queueing.
func HoldReports(a *Agent, f func()) { a.reportHeld = f }

// Report queues the reported state now, as a change or a connect does.
func Report(a *Agent) { a.report() }

// ReconcilerOf returns the agent's reconciler.
func ReconcilerOf(a *Agent) *reconcile.Reconciler { return a.rec }

// OutboxOf returns the agent's outbox.
func OutboxOf(a *Agent) *outbox.Outbox { return a.out }
