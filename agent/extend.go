package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/agent/reconcile"
	"github.com/driftline/driftline/shared/wire"
)

// This file is the runtime's one way in for what runs beside it (the data pipeline, the
// outputs tracker, the sampler): an Extension, in the manner of mochi's Hook. AddExtension
// hands it a Host before Run; Run calls its hooks. agent/cli's run hooks add them for
// driftline-agent; firmware-sim's fleet mode adds the same ones.

// Event names a hook an Extension may provide (Extension.Provides).
type Event int

const (
	// EventData: OnData receives the device's data topic (the agent subscribes to it only when
	// an extension provides this).
	EventData Event = iota + 1
	// EventStats: Stats supplies heartbeat counters.
	EventStats
	// EventTick: Tick is called every ExtensionTick and Flush once when the agent stops (after
	// the last Tick), all on one goroutine of the agent that serves every extension providing
	// it, in the order they were added: a periodic check needs no goroutine and ticker of its
	// own (a fleet process of 10,000 agents held 20,000 of each for the pipeline and the
	// outputs tracker, waking 20,000 times a second).
	EventTick
)

// ExtensionTick is how often Extension.Tick is called.
const ExtensionTick = time.Second

// Extension is something that runs beside the agent's own loops. Embed ExtensionBase and
// override what it provides.
type Extension interface {
	// ID names the extension in logs and errors.
	ID() string
	// Provides reports whether the extension handles ev (OnData for EventData, Stats for
	// EventStats); hooks it does not provide are never called.
	Provides(ev Event) bool
	// Init is called once, by AddExtension, with what the extension may use. An error refuses
	// the extension.
	Init(h Host) error
	// OnData receives each message of the device's data topic, in order, on one agent
	// goroutine. The payload is the caller's.
	OnData(payload []byte)
	// Stats returns the counters heartbeats carry; those of several extensions are added.
	Stats() PipelineStats
	// Tick is the extension's periodic work (EventTick), every ExtensionTick; Flush is called
	// once when the agent stops, after the last Tick. Both run on the agent's tick goroutine:
	// they must not wait long, or the other extensions' ticks wait with them.
	Tick()
	Flush()
	// Run runs from Agent.Run until ctx ends; Agent.Run waits for it to return.
	Run(ctx context.Context)
}

// ExtensionBase provides nothing: embedded in an Extension, it supplies the hooks the
// extension does not (Provides false, no-op OnData and Run, zero Stats).
type ExtensionBase struct{}

func (ExtensionBase) Provides(Event) bool     { return false }
func (ExtensionBase) Init(Host) error         { return nil }
func (ExtensionBase) OnData([]byte)           {}
func (ExtensionBase) Stats() PipelineStats    { return PipelineStats{} }
func (ExtensionBase) Tick()                   {}
func (ExtensionBase) Flush()                  {}
func (ExtensionBase) Run(ctx context.Context) {}

// Host is what the agent hands an extension (Extension.Init).
type Host struct {
	// Agent sends reports (Agent.Report) and reads the running models (Agent.ActiveModels).
	Agent  *Agent
	Config config.Config
	Topics wire.Topics
	// Logger is the agent's, with the extension's id.
	Logger *slog.Logger
	// Registerer is where the agent's collectors are registered (served on GET /metrics).
	Registerer prometheus.Registerer
	// State is the extensions' part of the agent's database, apart from the runtime's own: an
	// extension keeps its data under State.Sub(name) (the CLI opens the quarantine there).
	State devicedb.Namespace
	// Mux serves the agent's local endpoints on the metrics address (GET /metrics, GET
	// /status): an extension adds its own (POST /ingest) during Init.
	Mux *http.ServeMux
}

// ExtensionState returns the extensions' part of an agent's namespace ns (Host.State): the
// offline commands (`driftline-agent quarantine`) open an extension's data there.
func ExtensionState(ns devicedb.Namespace) devicedb.Namespace { return ns.Sub("x") }

// AddExtension initialises x and has Run run its hooks. Call before Run.
func (a *Agent) AddExtension(x Extension) error {
	if a.ran {
		return fmt.Errorf("agent: extension %s added after Run", x.ID())
	}
	err := x.Init(Host{Agent: a, Config: a.cfg, Topics: a.topics, Logger: a.log.With("extension", x.ID()),
		Registerer: a.reg, State: ExtensionState(a.ns), Mux: a.mux})
	if err != nil {
		return fmt.Errorf("extension %s: %w", x.ID(), err)
	}
	a.exts = append(a.exts, x)
	if x.Provides(EventData) {
		a.conn.wantData = true
	}
	return nil
}

// OnMessage subscribes the device's own topic of kind k (one the hub publishes to it, such as
// wire.KindSampleAck) on every connect and hands each message's payload to f. f runs on the
// MQTT client's goroutine: it must not block (queue the work). An extension calls it from Init.
func (a *Agent) OnMessage(k wire.Kind, f func(payload []byte)) error {
	if a.ran {
		return fmt.Errorf("agent: subscription to %v added after Run", k)
	}
	if !k.FromHub() || strings.Contains(k.String(), "/") {
		return fmt.Errorf("agent: %v is not a topic the hub sends a device", k)
	}
	if a.conn.extra == nil {
		a.conn.extra = map[string]func([]byte){}
	}
	a.conn.extra[a.topics.DevicePrefix(a.cfg.DeviceID)+k.String()] = f
	return nil
}

// Report queues a report on topic for the broker through the outbox: kept on disk while the
// broker is unreachable and sent in order, within the buffer's bounds. The topic must be the
// device's own topic of kind k (wire.Topics builds them); kinds only the hub publishes are
// refused.
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

// ActiveModel is a running model version with what came with it (reconcile.ActiveModel).
type ActiveModel = reconcile.ActiveModel

// ActiveModels returns every model with a running version, sorted by name, with its contract,
// reference profile and output reference. Safe for concurrent use and cheap to call often (the
// bytes are read once per version); the bytes are shared: callers must not modify them.
func (a *Agent) ActiveModels() ([]ActiveModel, error) { return a.rec.ActiveModels() }

// extensionStats adds the counters of the extensions that provide EventStats.
func (a *Agent) extensionStats() (p PipelineStats, ok bool) {
	for _, x := range a.exts {
		if x.Provides(EventStats) {
			s := x.Stats()
			p.RecordsSeen += max(s.RecordsSeen, 0)
			p.RecordsInvalid += max(s.RecordsInvalid, 0)
			p.QuarantineDepth += max(s.QuarantineDepth, 0)
			ok = true
		}
	}
	return p, ok
}
