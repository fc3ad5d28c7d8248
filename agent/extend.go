package agent

import (
	"context"
	"fmt"
	"strings"

	"github.com/driftline/driftline/agent/state"
	"github.com/driftline/driftline/shared/wire"
)

// This file is the data pipeline's way in: it wires itself to an Agent after New and before
// Run (agent/cli's run hooks do it for driftline-agent).

// OnData sets the handler of the device's data topic (see Options.OnData). Call before Run.
func (a *Agent) OnData(f func(payload []byte)) {
	a.opts.OnData = f
	a.conn.wantData = f != nil
}

// OnMessage subscribes the device's own topic of kind k (one the hub publishes to it, such as
// wire.KindSampleAck) on every connect and hands each message's payload to f. f runs on the
// MQTT client's goroutine: it must not block (queue the work). Call before Run.
func (a *Agent) OnMessage(k wire.Kind, f func(payload []byte)) error {
	topic := a.topics.DevicePrefix(a.cfg.DeviceID) + k.String()
	if !k.FromHub() || strings.Contains(k.String(), "/") {
		return fmt.Errorf("agent: %v is not a topic the hub sends a device", k)
	}
	if a.conn.extra == nil {
		a.conn.extra = map[string]func([]byte){}
	}
	a.conn.extra[topic] = f
	return nil
}

// SetStats sets the source of the pipeline's heartbeat counters (see Options.Stats). Call
// before Run.
func (a *Agent) SetStats(f func() PipelineStats) { a.opts.Stats = f }

// Go registers f to run beside the agent's own loops: Run starts it and waits for it to return
// after ctx ends. Call before Run.
func (a *Agent) Go(f func(ctx context.Context)) { a.extra = append(a.extra, f) }

// Namespace returns a namespace of the agent's state for an extension (the quarantine, say),
// apart from the runtime's own.
func (a *Agent) Namespace(name string) state.Namespace { return a.ns.Sub("x").Sub(name) }

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
// (pipeline.ActiveModel). ok is false while none runs. The bytes are cached per version, so
// calling it between streams is cheap.
func (a *Agent) Active() (model string, version int, contract, profile []byte, ok bool) {
	a.mu.Lock()
	var name string
	var r *modelRecord
	for n, rec := range a.models {
		if rec.Current > 0 && rec.ActiveVersion == rec.Current && (name == "" || n < name) {
			name, r = n, rec
		}
	}
	if r == nil {
		a.mu.Unlock()
		return "", 0, nil, nil, false
	}
	key := fmt.Sprintf("%s@%d %s %s", name, r.Current, r.ContractDigest, r.ProfileDigest)
	if a.activeKey == key {
		c := a.activeCache
		a.mu.Unlock()
		return c.Name, c.Version, c.Contract, c.Profile, true
	}
	a.mu.Unlock()
	ms, err := a.ActiveModels()
	if err != nil || len(ms) == 0 {
		if err != nil {
			a.log.Warn("read active model", "err", err)
		}
		return "", 0, nil, nil, false
	}
	m := ms[0]
	a.mu.Lock()
	a.activeKey, a.activeCache = key, m
	a.mu.Unlock()
	return m.Name, m.Version, m.Contract, m.Profile, true
}
