package rows

import (
	"testing"

	"github.com/driftline/driftline/shared/contract"
)

// TestPayloadAllocations: reading one MQTT data payload (one reading, the message a device's
// firmware sends every second) builds no name→field index of its own: the schema's is used. A
// scanner built a map and a name list per payload: 10 allocations, now 7 (in the agent's
// BenchmarkIngestOneReading, 1,180 bytes a message before, 796 after).
func TestPayloadAllocations(t *testing.T) {
	s, err := contract.Parse([]byte(`{"fields":[{"name":"device_id"},{"name":"ts","type":"integer"},` +
		`{"name":"temperature","type":"number"},{"name":"humidity","type":"number"},` +
		`{"name":"vibration","type":"number"},{"name":"mode"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte(`{"device_id":"fleet-00001","ts":1765000000000,"temperature":70.812,"humidity":44.1,"vibration":0.513,"mode":"run"}`)
	var row contract.RawRow
	n := testing.AllocsPerRun(200, func() {
		p := NewPayload(msg, s)
		if err := p.Next(&row); err != nil || len(row.Cells) != 6 || row.ParseErr != "" {
			t.Fatalf("row of %d cells (%s), %v", len(row.Cells), row.ParseErr, err)
		}
	})
	if n > 7 {
		t.Fatalf("%.0f allocations per one-reading payload, want at most 7", n)
	}
}
