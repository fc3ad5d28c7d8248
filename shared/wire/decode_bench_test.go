package wire

import (
	"encoding/json"
	"testing"
	"time"
)

// BenchmarkDecodeHeartbeat decodes an agent's heartbeat as the hub does for every device every
// 10 s (at 10,000 devices, 1,000 a second).
func BenchmarkDecodeHeartbeat(b *testing.B) {
	hb, _ := json.Marshal(Heartbeat{Header: Header{DeviceID: "plant-0001-line-07-device-000042", TS: time.Now().UnixMilli()},
		AgentVersion: "0.9.3", UptimeS: 86400, ActiveModels: []string{"anomaly@3"}})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeHeartbeat(hb); err != nil {
			b.Fatal(err)
		}
	}
}
