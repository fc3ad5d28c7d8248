package node

import (
	"crypto/rand"
	"net/http"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/wire"
)

// TestFetchOutsideScopeRefused: over MQTT a device gets the manifest and chunks of the version
// it is told to run, and a not-found frame for the manifest and chunks of any other model
// version, as if they did not exist.
func TestFetchOutsideScopeRefused(t *testing.T) {
	n, tok := testNode(t)
	call(t, n, tok, http.MethodPost, "/api/v1/models", map[string]string{"name": "mine"}, http.StatusCreated, nil)
	call(t, n, tok, http.MethodPost, "/api/v1/models", map[string]string{"name": "theirs"}, http.StatusCreated, nil)
	mineData, theirData := make([]byte, 64<<10), make([]byte, 64<<10)
	rand.Read(mineData)
	rand.Read(theirData)
	v, mineDigest := pushModel(t, n, tok, "mine", mineData)
	_, _ = pushModel(t, n, tok, "theirs", theirData)
	theirs, err := n.Reader().ModelVersion("theirs", 1)
	if err != nil {
		t.Fatal(err)
	}
	mine, err := n.Reader().ModelVersion("mine", v)
	if err != nil {
		t.Fatal(err)
	}
	devTok := createDevice(t, n, tok, "d1")
	call(t, n, tok, http.MethodPut, "/api/v1/devices/d1/models/mine", map[string]int{"version": v}, http.StatusOK, nil)

	frames := make(chan wire.Frame, 64)
	c, err := mqttConnect(t, n, "d1", "d1", devTok, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	topics := wire.Default()
	c.Subscribe(topics.Chunk("d1"), 1, func(_ paho.Client, m paho.Message) {
		if f, err := wire.DecodeFrame(m.Payload()); err == nil {
			frames <- f
		}
	}).WaitTimeout(5 * time.Second)
	fetch := func(id, digest string) wire.Frame {
		t.Helper()
		b, _ := wire.Encode(wire.FetchRequest{Header: wire.Header{DeviceID: "d1", TS: time.Now().UnixMilli()}, RequestID: id, Digests: []string{digest}})
		c.Publish(topics.Fetch("d1"), 1, false, b).WaitTimeout(5 * time.Second)
		for {
			select {
			case f := <-frames:
				if f.RequestID == id {
					return f
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no frame for %s", id)
			}
		}
	}
	if f := fetch("own-manifest", mine.ManifestDigest); f.Kind != wire.FrameData {
		t.Fatalf("own manifest: frame kind %v", f.Kind)
	}
	if f := fetch("own-chunk", artifact.DigestOf(mineData)); f.Kind != wire.FrameData || mineDigest == "" {
		t.Fatalf("own chunk: frame kind %v", f.Kind)
	}
	if f := fetch("their-manifest", theirs.ManifestDigest); f.Kind != wire.FrameNotFound {
		t.Fatalf("another model's manifest: frame kind %v, want not found", f.Kind)
	}
	if f := fetch("their-chunk", artifact.DigestOf(theirData)); f.Kind != wire.FrameNotFound {
		t.Fatalf("another model's chunk: frame kind %v, want not found", f.Kind)
	}
}
