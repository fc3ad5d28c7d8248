package wire

// Status is the retained PREFIX/dev/{id}/status message. An agent publishes Online=true after
// each connect; its MQTT Will, and a clean stop, publish Online=false. The Will is fixed when
// the connection opens, so its TS is the connect time.
type Status struct {
	Header
	// Online is true while the agent is connected.
	Online bool `json:"online"`
	// AgentVersion is the agent's build version.
	AgentVersion string `json:"agent_version,omitempty"`
	// StartedTS is when the agent process started, Unix milliseconds.
	StartedTS int64 `json:"started_ts,omitempty"`
	// Reason says why the status changed: "connect", "stop" or "will".
	Reason string `json:"reason,omitempty"`
}

// Status reasons.
const (
	ReasonConnect = "connect"
	ReasonStop    = "stop"
	ReasonWill    = "will"
)

// Validate checks the header and the optional fields' ranges.
func (s Status) Validate() error {
	if err := s.Header.Validate(); err != nil {
		return err
	}
	if err := checkNonNeg("started_ts", s.StartedTS); err != nil {
		return err
	}
	if err := checkText("agent_version", s.AgentVersion); err != nil {
		return err
	}
	return checkText("reason", s.Reason)
}

// DecodeStatus parses and validates a status payload.
func DecodeStatus(b []byte) (Status, error) { return decode[Status](b) }

// Heartbeat is the PREFIX/dev/{id}/heartbeat message, sent every 10 s at QoS 0.
type Heartbeat struct {
	Header
	// UptimeS is the agent process's uptime in seconds.
	UptimeS int64 `json:"uptime_s"`
	// AgentVersion is the agent's build version.
	AgentVersion string `json:"agent_version"`
	// ActiveModels lists the running models as "NAME@VERSION".
	ActiveModels []string `json:"active_models"`
	// BufferDepth is the number of reports waiting in the store-and-forward buffer.
	BufferDepth int64 `json:"buffer_depth"`
	// BufferBytes is the buffer's size on disk.
	BufferBytes int64 `json:"buffer_bytes"`
	// BufferDropped counts reports dropped from the buffer for size or age since start.
	BufferDropped int64 `json:"buffer_dropped"`
	// RecordsSeen counts input rows since start.
	RecordsSeen int64 `json:"records_seen"`
	// RecordsInvalid counts rows that failed validation since start.
	RecordsInvalid int64 `json:"records_invalid"`
	// QuarantineDepth is the number of rows held in the local quarantine.
	QuarantineDepth int64 `json:"quarantine_depth"`
	// CPU is the process's CPU use over the last interval, percent of one core.
	CPU float64 `json:"cpu"`
	// RSS is the process's resident memory in bytes.
	RSS int64 `json:"rss"`
	// DesiredStale is true while the device has heard no valid desired state for longer than
	// the last one's expiry: the hub's feed is cut or frozen (it keeps running what it has).
	DesiredStale bool `json:"desired_stale,omitempty"`
	// DesiredExpires is when the last valid desired state expires, Unix milliseconds.
	DesiredExpires int64 `json:"desired_expires,omitempty"`
	// RootExpired is true while the root of trust the device holds has expired: it refuses
	// desired states until a renewed root arrives, and keeps running what it has.
	RootExpired bool `json:"root_expired,omitempty"`
}

// Validate checks the header, that counters are not negative and that CPU is finite.
func (h Heartbeat) Validate() error {
	if err := h.Header.Validate(); err != nil {
		return err
	}
	if err := checkText("agent_version", h.AgentVersion); err != nil {
		return err
	}
	if len(h.ActiveModels) > MaxModels {
		return bad("active_models", "%d entries, at most %d", len(h.ActiveModels), MaxModels)
	}
	for _, m := range h.ActiveModels {
		if m == "" || len(m) > 2*MaxNameLen {
			return bad("active_models", "entry of %d bytes", len(m))
		}
	}
	for _, c := range []struct {
		f string
		v int64
	}{
		{"uptime_s", h.UptimeS}, {"buffer_depth", h.BufferDepth}, {"buffer_bytes", h.BufferBytes},
		{"buffer_dropped", h.BufferDropped}, {"records_seen", h.RecordsSeen},
		{"records_invalid", h.RecordsInvalid}, {"quarantine_depth", h.QuarantineDepth}, {"rss", h.RSS},
	} {
		if err := checkNonNeg(c.f, c.v); err != nil {
			return err
		}
	}
	if err := checkFinite("cpu", h.CPU); err != nil {
		return err
	}
	if h.CPU < 0 {
		return bad("cpu", "must not be negative, got %v", h.CPU)
	}
	return nil
}

// DecodeHeartbeat parses and validates a heartbeat payload.
func DecodeHeartbeat(b []byte) (Heartbeat, error) { return decode[Heartbeat](b) }
