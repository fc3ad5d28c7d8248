package node

import (
	"crypto/rand"
	"net/http"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/driftline/driftline/shared/wire"
)

// TestRotateDeviceToken: rotating a device's token keeps its desired revision history (the next
// desired state has the next rev, so the agent never ignores it), refuses the old token over
// MQTT and HTTP at once and closes the connections made with it.
func TestRotateDeviceToken(t *testing.T) {
	n, tok := testNode(t)
	old := createDevice(t, n, tok, "d1")
	call(t, n, tok, http.MethodPost, "/api/v1/models", map[string]string{"name": "m"}, http.StatusCreated, nil)
	data := make([]byte, 4<<10)
	rand.Read(data)
	v1, _ := pushModel(t, n, tok, "m", data)
	call(t, n, tok, http.MethodPut, "/api/v1/devices/d1/models/m", map[string]int{"version": v1}, http.StatusOK, nil)
	var before struct {
		DesiredRev int64 `json:"desired_rev"`
	}
	call(t, n, tok, http.MethodGet, "/api/v1/devices/d1", nil, http.StatusOK, &before)

	lost := make(chan error, 1)
	if _, err := mqttConnect(t, n, "d1", "d1", old, true, lost); err != nil {
		t.Fatal(err)
	}
	var rotated struct {
		ID         string `json:"id"`
		Token      string `json:"token"`
		DesiredRev int64  `json:"desired_rev"`
	}
	call(t, n, tok, http.MethodPost, "/api/v1/devices/d1/token", nil, http.StatusOK, &rotated)
	if rotated.Token == "" || rotated.Token == old || rotated.DesiredRev != before.DesiredRev || before.DesiredRev == 0 {
		t.Fatalf("rotated %+v, desired rev before %d", rotated, before.DesiredRev)
	}
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection made with the old token is still open")
	}
	if c, err := mqttConnect(t, n, "d1", "d1", old, true, nil); err == nil {
		c.Disconnect(20)
		t.Fatal("the old token still connects")
	}
	req, _ := http.NewRequest(http.MethodGet, n.URL()+"/api/v1/devices/d1", nil)
	req.Header.Set("Authorization", "Bearer "+old)
	doReq(t, req, http.StatusUnauthorized, nil)

	// The new token connects; the retained desired state is still there, and the next one
	// continues the revision.
	c, err := mqttConnect(t, n, "d1", "d1", rotated.Token, true, nil)
	if err != nil {
		t.Fatalf("the new token is refused: %v", err)
	}
	got := make(chan []byte, 4)
	c.Subscribe(wire.Default().Desired("d1"), 1, func(_ paho.Client, m paho.Message) { got <- m.Payload() }).WaitTimeout(5 * time.Second)
	select {
	case p := <-got:
		d, err := wire.DecodeDesired(p)
		if err != nil || int64(d.Rev) != before.DesiredRev {
			t.Fatalf("retained desired after rotation: %+v %v, want rev %d", d, err, before.DesiredRev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no retained desired state after rotation")
	}
	call(t, n, tok, http.MethodPut, "/api/v1/devices/d1/models/m", map[string]int{"version": 0}, http.StatusOK, nil)
	var after struct {
		DesiredRev int64 `json:"desired_rev"`
	}
	call(t, n, tok, http.MethodGet, "/api/v1/devices/d1", nil, http.StatusOK, &after)
	if after.DesiredRev != before.DesiredRev+1 {
		t.Fatalf("desired rev after rotation and a change: %d, want %d", after.DesiredRev, before.DesiredRev+1)
	}
	call(t, n, tok, http.MethodPost, "/api/v1/devices/nope/token", nil, http.StatusNotFound, nil)
}
