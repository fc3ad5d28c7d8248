package node_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/driftline/driftline/hub/node/nodetest"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// TestAPILastSeenMergesTheNodesSighting: a device's heartbeats within the coarse interval
// (LastSeenInterval, the presence window by default) move only the hub node's in-memory
// last-heard time, not the replicated last_seen (issue 18: a replicated write per heartbeat did
// not scale), and GET /api/v1/devices/{id} and the device list, answered by that node, still
// show the latest heartbeat.
func TestAPILastSeenMergesTheNodesSighting(t *testing.T) {
	h := nodetest.Start(t)
	topics, err := wire.NewTopics(wire.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	const id = "beating"
	tok := h.Enroll(id, nil)
	c := connectDevice(t, strings.TrimPrefix(h.MQTTURL(), "tcp://"), topics, id, tok)
	defer c.Close()
	type view struct {
		Online   bool   `json:"online"`
		LastSeen *int64 `json:"last_seen"`
	}
	get := func() view {
		var v view
		h.Call("GET", "/api/v1/devices/"+id, nil, 200, &v)
		return v
	}
	testhelp.WaitFor(t, 10*time.Second, "the device online with a last_seen", func() bool {
		d, err := h.Reader().DeviceStatus(id)
		return err == nil && d.Online && d.LastSeen > 0
	})
	first, err := h.Reader().DeviceStatus(id)
	if err != nil {
		t.Fatal(err)
	}
	testhelp.WaitFor(t, 5*time.Second, "the clock to move", func() bool { return time.Now().UnixMilli() > first.LastSeen+5 })
	sent := time.Now().UnixMilli()
	hb, _ := json.Marshal(wire.Heartbeat{Header: wire.Header{DeviceID: id, TS: sent}, AgentVersion: "test", ActiveModels: []string{}})
	var buf bytes.Buffer
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, ProtocolVersion: 4, TopicName: topics.Heartbeat(id), Payload: hb}
	if err := pk.PublishEncode(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	testhelp.WaitFor(t, 10*time.Second, "the API's last_seen at the second heartbeat", func() bool {
		v := get()
		return v.Online && v.LastSeen != nil && *v.LastSeen >= sent
	})
	var page struct {
		Items []view `json:"items"`
	}
	h.Call("GET", "/api/v1/devices", nil, 200, &page)
	if len(page.Items) != 1 || page.Items[0].LastSeen == nil || *page.Items[0].LastSeen < sent {
		t.Fatalf("device list %+v, want last_seen at least %d", page.Items, sent)
	}
	if d, _ := h.Reader().DeviceStatus(id); d.LastSeen >= sent {
		t.Fatalf("replicated last_seen %d moved to a heartbeat %d ms after the first replicated one, within the coarse interval",
			d.LastSeen, sent-first.LastSeen)
	}
}
