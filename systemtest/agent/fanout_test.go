package agent_test

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/agenttest"
	"github.com/driftline/driftline/agent/config"
	"github.com/driftline/driftline/hub/node"
	"github.com/driftline/driftline/hub/node/nodetest"
	"github.com/driftline/driftline/hub/protocol"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/wire"
	"github.com/driftline/driftline/shared/zstdx"
)

// egress returns the hub's chunk egress bytes: shared and per device.
func egress(h *nodetest.Hub) (shared, device float64) {
	g := h.Gatherer()
	return agenttest.Metric(h.T, g, protocol.MetricChunkEgressBytes, "path", protocol.EgressShared),
		agenttest.Metric(h.T, g, protocol.MetricChunkEgressBytes, "path", protocol.EgressDevice)
}

// fanoutDevice enrolls id and starts its agent.
func fanoutDevice(t *testing.T, h *nodetest.Hub, id string, opts agent.Options) (*agenttest.Agent, config.Config) {
	t.Helper()
	cfg := agenttest.Config(t, id, enroll(h, id), []string{h.MQTTURL()}, h.Keys())
	// The production default: a request waits longer than the hub's shared gap (3 s) before
	// it is asked again on the device's own topic.
	cfg.Fetch.Timeout = config.Duration(10 * time.Second)
	a := agenttest.Start(t, cfg, opts)
	testhelp.WaitFor(t, 20*time.Second, id+" online", func() bool { on, _ := device(h, id); return on })
	return a, cfg
}

// TestSharedChunksOncePerWave: the devices of one wave pull a model whose chunks the hub
// publishes on the model's shared topic, not once per device: its chunk egress stays under
// 3 x the model size for 6 devices (6 x before). A device that joins after the wave's publish
// (mid-wave) completes from a shared publish made again for it, not from a per-device retry.
func TestSharedChunksOncePerWave(t *testing.T) {
	h := nodetest.Start(t)
	data := agenttest.RandomBytes(18, 2<<20)
	v, digest := h.PushModel("fan", data, "", true)
	const n = 6
	cfgs := make([]config.Config, n)
	for i := range cfgs {
		_, cfgs[i] = fanoutDevice(t, h, fmt.Sprintf("fan-%d", i), agent.Options{})
	}
	for i := range cfgs {
		assign(h, cfgs[i].DeviceID, "fan", v)
	}
	for i := range cfgs {
		waitActive(t, h, cfgs[i].DeviceID, "fan", v, "active")
		if got := agenttest.FileDigest(t, agenttest.ModelFile(cfgs[i].ModelDir, "fan")); got != digest {
			t.Fatalf("%s: file %s, artifact %s", cfgs[i].DeviceID, got, digest)
		}
	}
	shared, device := egress(h)
	t.Logf("wave of %d devices, %d-byte model: shared %.0f bytes, per device %.0f", n, len(data), shared, device)
	if shared == 0 || shared+device > 3*float64(len(data)) {
		t.Fatalf("chunk egress shared %.0f + per device %.0f bytes for %d devices of a %d-byte model; want > 0 shared and at most 3 x the model", shared, device, n, len(data))
	}

	_, late := fanoutDevice(t, h, "fan-late", agent.Options{})
	assign(h, "fan-late", "fan", v)
	waitActive(t, h, "fan-late", "fan", v, "active")
	if got := agenttest.FileDigest(t, agenttest.ModelFile(late.ModelDir, "fan")); got != digest {
		t.Fatalf("late device: file %s, artifact %s", got, digest)
	}
	shared2, device2 := egress(h)
	if device2 != device || shared2 <= shared {
		t.Fatalf("late device: shared %.0f -> %.0f, per device %.0f -> %.0f bytes; want a shared publish and no per-device chunk", shared, shared2, device, device2)
	}
}

// TestSharedChunksResume: an agent stopped half-way through a pull resumes it after a restart,
// fetching only what its partial download misses (on the shared topic, with a new
// subscription), and completes.
func TestSharedChunksResume(t *testing.T) {
	h := nodetest.Start(t)
	data := agenttest.RandomBytes(19, 4<<20)
	v, digest := h.PushModel("res", data, "", true)
	var chunks atomic.Int64
	stopAt := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	a, cfg := fanoutDevice(t, h, "res-1", agent.Options{OnChunk: func() {
		if chunks.Add(1) == 3 {
			once.Do(func() { close(stopAt) })
			<-release // hold the pull here until the agent is stopped
		}
	}})
	assign(h, "res-1", "res", v)
	select {
	case <-stopAt:
	case <-time.After(60 * time.Second):
		t.Fatal("no chunk fetched")
	}
	a.Cancel()
	close(release)
	a.Stop()
	first := chunks.Load()

	b := agenttest.Start(t, cfg, agent.Options{})
	waitActive(t, h, "res-1", "res", v, "active")
	if got := agenttest.FileDigest(t, agenttest.ModelFile(cfg.ModelDir, "res")); got != digest {
		t.Fatalf("file %s, artifact %s", got, digest)
	}
	m, err := artifact.Split(bytes.NewReader(data), func(artifact.Chunk) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	second := agenttest.Metric(t, b.Reg, agent.MetricFetchedChunks)
	t.Logf("%d chunks: %d before the stop, %.0f after the restart", len(m.Chunks), first, second)
	if second == 0 || second >= float64(len(m.Chunks)) {
		t.Fatalf("the restarted agent fetched %.0f of %d chunks; want only what the first left", second, len(m.Chunks))
	}
}

// TestSharedTopicForgedChunk is the attack on the shared topic: whoever publishes there (a
// compromised broker, a mis-set ACL) cannot make an agent store forged bytes or fail its pull.
// Frames with the right digests but other bytes, and not-found frames for the model's chunks,
// are published on dl/v1/model/NAME/chunk while the agent pulls: it refuses them (chunk_digest,
// bad_frame), asks again, and activates the real model.
func TestSharedTopicForgedChunk(t *testing.T) {
	// The hub waits before its own shared publish, so the forged frames come first.
	h := nodetest.Start(t, func(c *node.Config) { c.SharedChunkDelay = 2 * time.Second })
	data := agenttest.RandomBytes(20, 2<<20)
	v, digest := h.PushModel("forge", data, "", true)
	m, err := artifact.Split(bytes.NewReader(data), func(artifact.Chunk) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	var forged [][]byte
	for i, c := range m.Chunks {
		sum, err := artifact.ParseDigest(c.Digest)
		if err != nil {
			t.Fatal(err)
		}
		other := agenttest.RandomBytes(uint64(i)+77, int(c.Size))
		f, err := wire.EncodeFrame(wire.Frame{Kind: wire.FrameData, RequestID: "shared", Digest: sum,
			Total: uint32(c.Size), Plain: uint32(c.Size), Payload: zstdx.Encode(nil, other)})
		if err != nil {
			t.Fatal(err)
		}
		nf, err := wire.NotFoundFrame("shared", sum)
		if err != nil {
			t.Fatal(err)
		}
		forged = append(forged, nf, f)
	}
	a, cfg := fanoutDevice(t, h, "forge-1", agent.Options{})
	assign(h, "forge-1", "forge", v)
	topic := wire.Default().ModelChunk("forge")
	tr := h.Transport()
	done := make(chan struct{})
	attacked := make(chan struct{})
	go func() {
		defer close(attacked)
		for agenttest.Metric(t, a.Reg, agent.MetricRejected, "reason", agent.ReasonChunkDigest) == 0 {
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			for _, f := range forged {
				_ = tr.Publish(topic, f, false, 1)
			}
		}
	}()
	waitActive(t, h, "forge-1", "forge", v, "active")
	close(done)
	<-attacked
	if got := agenttest.FileDigest(t, agenttest.ModelFile(cfg.ModelDir, "forge")); got != digest {
		t.Fatalf("file %s, artifact %s", got, digest)
	}
	if n := agenttest.Metric(t, a.Reg, agent.MetricRejected, "reason", agent.ReasonChunkDigest); n == 0 {
		t.Fatal("no forged chunk refused: the attack never reached the agent")
	}
	if n := agenttest.Metric(t, a.Reg, agent.MetricRejected, "reason", agent.ReasonBadFrame); n == 0 {
		t.Fatal("no not-found frame refused on the shared topic")
	}
}

// TestSharedChunksWhileWaitingForSlot: agents that share one pull slot (a fleet process's
// pull concurrency) pull one at a time, yet all listen on the model's shared topic from the
// moment they have its manifest: the publishes made for the first pull reach the others, which
// need none of their own. Chunk egress stays under 2 x the model for 4 devices; before, each
// device subscribed only once it held the slot and cost a publish of its own (~4 x).
func TestSharedChunksWhileWaitingForSlot(t *testing.T) {
	h := nodetest.Start(t)
	data := agenttest.RandomBytes(21, 2<<20)
	v, digest := h.PushModel("slot", data, "", true)
	slots := make(chan struct{}, 1)
	const n = 4
	cfgs := make([]config.Config, n)
	for i := range cfgs {
		_, cfgs[i] = fanoutDevice(t, h, fmt.Sprintf("slot-%d", i), agent.Options{PullSlots: slots})
	}
	for i := range cfgs {
		assign(h, cfgs[i].DeviceID, "slot", v)
	}
	for i := range cfgs {
		waitActive(t, h, cfgs[i].DeviceID, "slot", v, "active")
		if got := agenttest.FileDigest(t, agenttest.ModelFile(cfgs[i].ModelDir, "slot")); got != digest {
			t.Fatalf("%s: file %s, artifact %s", cfgs[i].DeviceID, got, digest)
		}
	}
	shared, device := egress(h)
	t.Logf("%d devices on one pull slot, %d-byte model: shared %.0f bytes, per device %.0f", n, len(data), shared, device)
	if shared+device > 2*float64(len(data)) {
		t.Fatalf("chunk egress shared %.0f + per device %.0f bytes for %d devices of a %d-byte model on one pull slot; want at most 2 x the model", shared, device, n, len(data))
	}
}

// TestLonePullNotHeldPerWindow: a device pulling alone (a canary, a replaced device) waits for
// the hub's shared delay once, not once per request window: on the embedded broker, which
// counts the topic's subscribers, a chunk every listener has asked for goes out at once. The
// delay here is 2 s, so a pull of several windows held at each would show in the metric as no
// all_listening request (and take seconds per window).
func TestLonePullNotHeldPerWindow(t *testing.T) {
	h := nodetest.Start(t, func(c *node.Config) { c.SharedChunkDelay = 2 * time.Second })
	data := agenttest.RandomBytes(21, 24<<20) // several request windows
	v, digest := h.PushModel("lone", data, "", true)
	_, cfg := fanoutDevice(t, h, "lone-1", agent.Options{})
	assign(h, "lone-1", "lone", v)
	waitActive(t, h, "lone-1", "lone", v, "active")
	if got := agenttest.FileDigest(t, agenttest.ModelFile(cfg.ModelDir, "lone")); got != digest {
		t.Fatalf("file %s, artifact %s", got, digest)
	}
	g := h.Gatherer()
	early := agenttest.Metric(t, g, protocol.MetricSharedChunkRequests, "result", "all_listening")
	scheduled := agenttest.Metric(t, g, protocol.MetricSharedChunkRequests, "result", "scheduled")
	t.Logf("%.0f shared chunk publishes scheduled, %.0f sent at once (every listener had asked)", scheduled, early)
	if early == 0 || early >= scheduled {
		t.Fatalf("%.0f of %.0f shared chunk requests sent at once; want all but the first window's", early, scheduled)
	}
}
