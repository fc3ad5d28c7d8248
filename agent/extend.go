package agent

import (
	"context"
	"fmt"
	"strings"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/agent/reconcile"
	"github.com/driftline/driftline/shared/wire"
)

// This file is the data pipeline's way in: it wires itself to an Agent after New and before
// Run (agent/cli's run hooks do it for driftline-agent).

// OnData sets the handler of the device's data topic (see Options.OnData). Call before Run.
func (a *Agent) OnData(f func(payload []byte)) {
	a.opts.OnData = f
	a.conn.wantData = f != nil
}

// SetStats sets the source of the pipeline's heartbeat counters (see Options.Stats). Call
// before Run.
func (a *Agent) SetStats(f func() PipelineStats) { a.opts.Stats = f }

// Go registers f to run beside the agent's own loops: Run starts it and waits for it to return
// after ctx ends. Call before Run.
func (a *Agent) Go(f func(ctx context.Context)) { a.extra = append(a.extra, f) }

// Namespace returns a namespace of the agent's state for an extension (the quarantine, say),
// apart from the runtime's own.
func (a *Agent) Namespace(name string) devicedb.Namespace { return a.ns.Sub("x").Sub(name) }

// Report queues a report on topic for the broker through the outbox, like Send, for callers that
// build their own topics (pipeline.Reporter). The topic must be the device's own topic of kind
// k; kinds only the hub publishes are refused.
func (a *Agent) Report(k wire.Kind, topic string, payload []byte) error {
	kind, id, _, err := a.topics.Parse(topic)
	if err != nil {
		return fmt.Errorf("agent: report topic: %w", err)
	}
	if kind != k || id != a.cfg.DeviceID || k.FromHub() || k == wire.KindData || k == wire.KindFetch {
		return fmt.Errorf("agent: %q is not this device's %v report topic", topic, k)
	}
	if !strings.HasPrefix(topic, a.topics.DevicePrefix(a.cfg.DeviceID)) {
		return fmt.Errorf("agent: %q is outside the device's prefix", topic)
	}
	return a.out.Enqueue(topic, payload, k.QoS(), k.Retained())
}

// Active returns the first running model by name with its contract and reference profile
// (pipeline.ActiveModel). ok is false while none runs.
func (a *Agent) Active() (model string, version int, contract, profile []byte, ok bool) {
	ms, err := a.rec.ActiveModels()
	if err != nil || len(ms) == 0 {
		if err != nil {
			a.log.Warn("read active model", "err", err)
		}
		return "", 0, nil, nil, false
	}
	m := ms[0]
	return m.Name, m.Version, m.Contract, m.Profile, true
}

// ActiveModel is what the data pipeline needs about a running model version.
type ActiveModel = reconcile.ActiveModel

// ActiveModels returns every model with a running version, sorted by name.
func (a *Agent) ActiveModels() ([]ActiveModel, error) { return a.rec.ActiveModels() }

// ActiveModel returns the first running model by name (the usual device runs one), and false
// when none runs: the pipeline then uses the configured contract.
func (a *Agent) ActiveModel() (ActiveModel, bool, error) {
	ms, err := a.rec.ActiveModels()
	if err != nil || len(ms) == 0 {
		return ActiveModel{}, false, err
	}
	return ms[0], true, nil
}

// Output returns the first running model by name with its output reference (agent/outputs'
// Model). ok is false while no model runs or the running version has no output reference.
func (a *Agent) Output() (model string, version int, reference []byte, ok bool) {
	return a.rec.Output()
}
