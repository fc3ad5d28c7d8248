package broker

import (
	"slices"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// limitsHook enforces the per-device limits of the embedded broker on publishes that the ACL
// already allowed:
//   - a device may publish at most rate messages a second on average, with bursts of burst;
//     a publish beyond it is dropped (not acknowledged: a 3.1.1 client resends it after
//     reconnecting; a v5 client gets "quota exceeded") and counted;
//   - a device may hold at most maxRetained retained topics under its subtree; a retained
//     publish to one more topic is delivered but not retained, and counted. Replacing or
//     clearing a retained topic it already holds is always allowed.
//
// The hub's own inline client, viewers and the hub principal are not limited.
type limitsHook struct {
	mqtt.HookBase
	acl         *aclHook
	m           *metrics
	rate, burst float64
	maxRetained int
	now         func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket // device id -> its publish allowance
	// retained maps a device id to the topics it retains: a slice, at most maxRetained long and
	// usually one or two (status, reported), where a set cost ~300 B a device.
	retained map[string][]string
	adds     int
}

// bucket is a token bucket: tokens refill at the hook's rate up to its burst.
type bucket struct {
	tokens float64
	last   time.Time
}

// ID names the hook for mochi's logs.
func (h *limitsHook) ID() string { return "driftline-limits" }

// Provides lists the callbacks the hook implements.
func (h *limitsHook) Provides(b byte) bool { return b == mqtt.OnPublish }

// OnPublish applies the rate and retained limits to a device's publish.
func (h *limitsHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	p, ok := h.acl.principalOf(cl)
	if !ok || p.Kind != Device {
		return pk, nil
	}
	if h.rate > 0 && !h.allow(p.ID) {
		h.m.reject(reasonRate)
		if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 {
			return pk, packets.ErrQuotaExceeded
		}
		return pk, packets.ErrRejectPacket
	}
	if pk.FixedHeader.Retain && h.maxRetained > 0 && !h.retain(p.ID, pk.TopicName, len(pk.Payload) == 0) {
		h.m.reject(reasonRetainedCap)
		pk.FixedHeader.Retain = false
	}
	return pk, nil
}

// retain records that device id retains topic (clear: clears it) and reports whether it may:
// replacing or clearing a topic it holds always may, one more topic only under the cap. The
// count is the hook's own, of what the device itself published (the retained store also holds
// the hub's `desired` under the device's subtree); it starts empty at each broker start, so
// retained messages restored from the store are not counted until the device publishes them
// again.
func (h *limitsHook) retain(id, topic string, clear bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	held := h.retained[id]
	i := slices.Index(held, topic)
	switch {
	case clear:
		if i >= 0 {
			held = slices.Delete(held, i, i+1)
			if len(held) == 0 {
				delete(h.retained, id)
			} else {
				h.retained[id] = held
			}
		}
		return true
	case i >= 0:
		return true
	case len(held) >= h.maxRetained:
		return false
	}
	h.retained[id] = append(held, topic)
	return true
}

// forget drops what the hook keeps of device id (a deleted or re-keyed device).
func (h *limitsHook) forget(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.retained, id)
	delete(h.buckets, id)
}

// allow takes one token from device id's bucket, reporting whether there was one.
func (h *limitsHook) allow(id string) bool {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.buckets[id]
	if b == nil {
		h.adds++
		if h.adds%1024 == 0 { // forget devices idle long enough to have a full bucket again
			for k, v := range h.buckets {
				if now.Sub(v.last).Seconds()*h.rate >= h.burst {
					delete(h.buckets, k)
				}
			}
		}
		b = &bucket{tokens: h.burst, last: now}
		h.buckets[id] = b
	}
	b.tokens += now.Sub(b.last).Seconds() * h.rate
	if b.tokens > h.burst {
		b.tokens = h.burst
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
