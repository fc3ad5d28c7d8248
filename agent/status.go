package agent

import (
	"encoding/json"
	"net/http"
	"time"
)

// Status is what GET /status on the agent's listener answers: who the agent is, its MQTT
// connection (with why the broker refuses it, if it does), its report buffer and models.
type Status struct {
	DeviceID     string     `json:"device_id"`
	AgentVersion string     `json:"agent_version"`
	StartedAt    time.Time  `json:"started_at"`
	Connection   ConnStatus `json:"connection"`
	// BufferDepth and BufferBytes are the reports waiting for the broker.
	BufferDepth int   `json:"buffer_depth"`
	BufferBytes int64 `json:"buffer_bytes"`
	// ActiveModels lists the running models as NAME@VERSION.
	ActiveModels []string `json:"active_models"`
	// RootVersion and RootExpires describe the root of trust held (0 and zero with
	// trusted_keys only); RootExpired is true once it expired: desired states are refused
	// until a renewed root arrives, and the active models keep running.
	RootVersion int64     `json:"root_version,omitempty"`
	RootExpires time.Time `json:"root_expires,omitzero"`
	RootExpired bool      `json:"root_expired,omitempty"`
}

// Status returns the agent's local status (GET /status).
func (a *Agent) Status() Status {
	st := a.out.Stats()
	return Status{DeviceID: a.cfg.DeviceID, AgentVersion: Version, StartedAt: a.started.UTC(),
		Connection: a.conn.status(), BufferDepth: st.Depth, BufferBytes: st.Bytes, ActiveModels: a.rec.ActiveNames(),
		RootVersion: a.trust.rootVersion(), RootExpires: a.trust.rootExpires(), RootExpired: a.trust.rootExpiry(time.Now()) != nil}
}

func (a *Agent) serveStatus(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(a.Status())
}
