package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/internal/testhelp"
)

// TestFollowerSplitsTelemetry: a follower's telemetry batch larger than the leader's body limit
// (4 MiB) is forwarded in parts and applied; before, the leader refused it whole (413) and
// the batch never landed.
func TestFollowerSplitsTelemetry(t *testing.T) {
	n1, tok := testNode(t)
	n2, err := Start(context.Background(), Config{DataDir: t.TempDir(), NodeID: "n2", HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		Join: n1.URL(), JoinToken: tok, Logger: testhelp.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n2.Close() })
	for _, id := range []string{"d1", "d2", "d3"} {
		createDevice(t, n1, tok, id)
	}
	testhelp.WaitFor(t, 10*time.Second, "n2 has the devices", func() bool {
		_, err := n2.Reader().Device("d3")
		return err == nil
	})
	var batch state.DeviceTelemetry
	now := time.Now().UnixMilli()
	pad := strings.Repeat("x", 200<<10)
	for i := 0; i < 25; i++ { // 5 MB of observations of devices that are not enrolled (dropped by the FSM)
		batch.Devices = append(batch.Devices, state.DeviceObservation{ID: fmt.Sprintf("ghost-%d", i),
			Reported: &state.Reported{AgentVersion: pad, Models: map[string]state.ReportedModel{}}})
	}
	for _, id := range []string{"d1", "d2", "d3"} {
		batch.Devices = append(batch.Devices, state.DeviceObservation{ID: id, LastSeen: now})
	}
	env, err := command.New(command.TypeDeviceTelemetry, "", 0, "hub:n2", batch)
	if err != nil {
		t.Fatal(err)
	}
	if len(env.Payload) < 4<<20+512<<10 {
		t.Fatalf("batch of %d bytes is not over the limit", len(env.Payload))
	}
	// An election under load answers 503 for a moment; a 413 (the bug) never goes away.
	testhelp.WaitFor(t, 30*time.Second, "the batch forwarded", func() bool {
		err := n2.applyOrForward(context.Background(), env)
		if err != nil {
			t.Logf("forward: %.200v", err)
		}
		return err == nil
	})
	for _, id := range []string{"d1", "d2", "d3"} {
		var d struct {
			LastSeen int64 `json:"last_seen"`
		}
		call(t, n1, tok, http.MethodGet, "/api/v1/devices/"+id, nil, http.StatusOK, &d)
		if d.LastSeen != now {
			t.Errorf("%s: last_seen %d, want %d", id, d.LastSeen, now)
		}
	}
}

func TestSplitTelemetry(t *testing.T) {
	var batch state.DeviceTelemetry
	for i := 0; i < 100; i++ {
		batch.Devices = append(batch.Devices, state.DeviceObservation{ID: fmt.Sprintf("dev-%03d", i), LastSeen: int64(i)})
	}
	batch.Devices = append(batch.Devices, state.DeviceObservation{ID: "huge", Reported: &state.Reported{AgentVersion: strings.Repeat("y", 2000)}})
	b, _ := json.Marshal(batch)
	parts, dropped, err := splitTelemetry(b, 500)
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 1 || dropped[0] != "huge" {
		t.Fatalf("dropped %v", dropped)
	}
	var ids []string
	for _, p := range parts {
		if len(p) > 500 {
			t.Fatalf("part of %d bytes, limit 500", len(p))
		}
		var got state.DeviceTelemetry
		if err := json.Unmarshal(p, &got); err != nil {
			t.Fatal(err)
		}
		for _, o := range got.Devices {
			ids = append(ids, o.ID)
		}
	}
	if len(ids) != 100 || ids[0] != "dev-000" || ids[99] != "dev-099" {
		t.Fatalf("%d observations after the split, first %v", len(ids), ids[:1])
	}
}
