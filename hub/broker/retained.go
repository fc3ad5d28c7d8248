package broker

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// retainedMsg is one retained message as the broker keeps it. It is never changed once stored
// (a new publish replaces the pointer), so a matched message can be read without the lock.
type retainedMsg struct {
	topic   string
	payload []byte
	qos     byte
	origin  string // client id of the publisher: no-local subscriptions skip their own
	created int64  // unix seconds
	expiry  int64  // unix seconds; 0: never (only v5 publishes carry a message expiry)
	props   *packets.Properties
}

// expired reports whether m's message expiry has passed at now (unix seconds).
func (m *retainedMsg) expired(now int64) bool { return m.expiry > 0 && m.expiry < now }

// newRetainedMsg keeps what a retained publish needs to be delivered again: the v5 properties
// a subscriber receives (payload format, content type, response topic, correlation data, user
// properties, message expiry), not the ones of one hop (topic alias, subscription identifier).
func newRetainedMsg(pk packets.Packet) *retainedMsg {
	m := &retainedMsg{topic: pk.TopicName, payload: pk.Payload, qos: pk.FixedHeader.Qos, origin: pk.Origin,
		created: pk.Created, expiry: pk.Expiry}
	if m.created == 0 {
		m.created = time.Now().Unix()
	}
	if m.expiry == 0 && pk.Properties.MessageExpiryInterval > 0 {
		m.expiry = m.created + int64(pk.Properties.MessageExpiryInterval)
	}
	p := pk.Properties.Copy(false)
	p.TopicAlias, p.TopicAliasFlag, p.SubscriptionIdentifier = 0, false, nil
	if p.PayloadFormatFlag || p.ContentType != "" || p.ResponseTopic != "" || len(p.CorrelationData) > 0 ||
		len(p.User) > 0 || p.MessageExpiryInterval > 0 {
		m.props = &p
	}
	return m
}

// packet builds the PUBLISH that delivers m as a retained message (retain flag set, QoS and
// packet id left to the caller).
func (m *retainedMsg) packet() packets.Packet {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true, Qos: m.qos},
		TopicName:   m.topic,
		Payload:     m.payload,
		Origin:      m.origin,
		Created:     m.created,
		Expiry:      m.expiry,
	}
	if m.props != nil {
		pk.Properties = m.props.Copy(false)
	}
	return pk
}

// retainedStore holds the broker's retained messages in a topic trie, one node per topic
// level, so a filter with wildcards visits only the branches it can match. Nothing in it runs
// on a timer: an idle store costs no CPU (mochi's own retained map is copied whole every second,
// docs/benchmarks.md). Message expiry is checked when a message is matched.
type retainedStore struct {
	mu   sync.RWMutex
	root retNode
	n    int
}

type retNode struct {
	children map[string]*retNode
	msg      *retainedMsg
}

// set stores m as the retained message of its topic, replacing any before it.
func (s *retainedStore) set(m *retainedMsg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := &s.root
	for _, l := range strings.Split(m.topic, "/") {
		c := n.children[l]
		if c == nil {
			if n.children == nil {
				n.children = make(map[string]*retNode, 1)
			}
			c = &retNode{}
			n.children[l] = c
		}
		n = c
	}
	if n.msg == nil {
		s.n++
	}
	n.msg = m
}

// clear removes topic's retained message (with a non-nil only: only if that is still the one
// stored, so an expired message is not cleared over its replacement) and prunes the nodes left
// empty. It reports whether it removed one.
func (s *retainedStore) clear(topic string, only *retainedMsg) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	levels := strings.Split(topic, "/")
	path := make([]*retNode, 0, len(levels)+1)
	n := &s.root
	path = append(path, n)
	for _, l := range levels {
		if n = n.children[l]; n == nil {
			return false
		}
		path = append(path, n)
	}
	if n.msg == nil || (only != nil && n.msg != only) {
		return false
	}
	n.msg = nil
	s.n--
	for i := len(levels) - 1; i >= 0; i-- { // prune from the leaf up
		child := path[i+1]
		if child.msg != nil || len(child.children) > 0 {
			break
		}
		delete(path[i].children, levels[i])
	}
	return true
}

// get returns topic's retained message.
func (s *retainedStore) get(topic string) (*retainedMsg, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := s.node(topic)
	if n == nil || n.msg == nil {
		return nil, false
	}
	return n.msg, true
}

// node returns topic's node, nil if there is none; the caller holds s.mu.
func (s *retainedStore) node(topic string) *retNode {
	n := &s.root
	for _, l := range strings.Split(topic, "/") {
		if n = n.children[l]; n == nil {
			return nil
		}
	}
	return n
}

// len returns the number of retained messages.
func (s *retainedStore) len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.n
}

// match returns the retained messages on topics matching filter (MQTT matching: `+` one level,
// `#` the rest including the parent level, wildcards in the first level skip topics starting
// with `$`), split into live ones and those whose expiry passed at now.
func (s *retainedStore) match(filter string, now int64) (live, expired []*retainedMsg) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.n == 0 {
		return nil, nil
	}
	for _, m := range collect(&s.root, strings.Split(filter, "/"), 0, nil) {
		if m.expired(now) {
			expired = append(expired, m)
		} else {
			live = append(live, m)
		}
	}
	return live, expired
}

// collect appends the messages under n matching the filter levels; depth is n's level.
func collect(n *retNode, levels []string, depth int, out []*retainedMsg) []*retainedMsg {
	if len(levels) == 0 {
		if n.msg != nil {
			out = append(out, n.msg)
		}
		return out
	}
	switch l := levels[0]; l {
	case "#":
		if depth > 0 && n.msg != nil { // "a/#" matches "a" too
			out = append(out, n.msg)
		}
		for k, c := range n.children {
			if depth == 0 && strings.HasPrefix(k, "$") {
				continue
			}
			out = all(c, out)
		}
	case "+":
		for k, c := range n.children {
			if depth == 0 && strings.HasPrefix(k, "$") {
				continue
			}
			out = collect(c, levels[1:], depth+1, out)
		}
	default:
		if c := n.children[l]; c != nil {
			out = collect(c, levels[1:], depth+1, out)
		}
	}
	return out
}

// all appends every message at and under n.
func all(n *retNode, out []*retainedMsg) []*retainedMsg {
	if n.msg != nil {
		out = append(out, n.msg)
	}
	for _, c := range n.children {
		out = all(c, out)
	}
	return out
}

// under returns the messages on topics starting with prefix, which ends with "/".
func (s *retainedStore) under(prefix string) []*retainedMsg {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := s.node(strings.TrimSuffix(prefix, "/"))
	if n == nil {
		return nil
	}
	var out []*retainedMsg
	for _, c := range n.children {
		out = all(c, out)
	}
	return out
}

// retainHook keeps retained messages out of mochi and in the broker's retainedStore. The broker
// runs mochi with Capabilities.RetainAvailable = 0, so mochi's retainMessage never stores
// anything (its retained map stays empty and its once-a-second sweep copies nothing); this hook
// does what mochi did, through its hook API:
//   - OnPublish (after the ACL and the device limits allowed the message) stores a retained
//     message or, with an empty payload, clears the topic, and persists it (storeHook);
//   - a Will with the retain flag would be refused at CONNECT with RetainAvailable = 0
//     ("retain not supported"), so OnPacketRead takes the flag off the CONNECT packet and
//     OnConnect, after mochi's check, puts it back on the client's Will; OnWillSent stores the
//     Will once it is sent (at once, or after its delay);
//   - on SUBSCRIBE, OnSubscribe notes which filters the client already had (MQTT 5 retain
//     handling 1), and once the SUBACK is written (OnPacketSent) the matching retained messages
//     are written to that client, as mochi's publishRetainedToClient did: not for shared
//     subscriptions, not for retain handling 2 (or 1 on an existing subscription), not the
//     client's own messages on a no-local subscription, and each one only if the ACL lets the
//     client read its topic. QoS is the lower of the message's and the granted one; a QoS 1/2
//     delivery takes a packet id and an in-flight slot exactly as mochi's publishToClient does,
//     so the client's PUBACK completes it through mochi.
//
// The hub's own subscriptions (the inline client) get their retained messages from
// Broker.Subscribe.
type retainHook struct {
	mqtt.HookBase
	store   *retainedStore
	persist *storeHook // nil without a DB
	acl     *aclHook
	srv     *mqtt.Server

	pending sync.Map // *mqtt.Client -> *pendingSub: a SUBSCRIBE waiting for its SUBACK
}

// pendingSub is a client's SUBSCRIBE between mochi's processing of it and its SUBACK.
type pendingSub struct {
	packetID uint16
	filters  packets.Subscriptions
	existed  []bool
}

// willRetainKey marks a CONNECT whose Will had the retain flag (see retainHook); the user
// property never leaves the broker (a client-sent one is removed first).
const willRetainKey = "\x00driftline-will-retain"

// ID names the hook for mochi's logs.
func (h *retainHook) ID() string { return "driftline-retained" }

// Provides lists the callbacks the hook implements.
func (h *retainHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnPacketRead, mqtt.OnConnect, mqtt.OnPublish, mqtt.OnWillSent,
		mqtt.OnSubscribe, mqtt.OnPacketSent, mqtt.OnDisconnect:
		return true
	}
	return false
}

// OnPacketRead takes the retain flag off a CONNECT's Will (mochi would refuse the connection)
// and marks the packet so that OnConnect puts it back.
func (h *retainHook) OnPacketRead(_ *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Connect {
		return pk, nil
	}
	user := pk.Connect.WillProperties.User
	for i := 0; i < len(user); i++ {
		if user[i].Key == willRetainKey { // a client cannot set the broker's mark
			user = append(user[:i:i], user[i+1:]...)
			i--
		}
	}
	pk.Connect.WillProperties.User = user
	if pk.Connect.WillFlag && pk.Connect.WillRetain {
		pk.Connect.WillRetain = false
		pk.Connect.WillProperties.User = append(user[:len(user):len(user)], packets.UserProperty{Key: willRetainKey})
	}
	return pk, nil
}

// OnConnect restores a Will's retain flag that OnPacketRead took off, and removes the mark.
func (h *retainHook) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	user := cl.Properties.Will.User
	for i, u := range user {
		if u.Key == willRetainKey {
			cl.Properties.Will.User = append(user[:i:i], user[i+1:]...)
			if len(cl.Properties.Will.User) == 0 {
				cl.Properties.Will.User = nil
			}
			cl.Properties.Will.Retain = true
			break
		}
	}
	return nil
}

// OnPublish stores or clears a retained message. It runs after the ACL and limitsHook (which
// may have taken the retain flag off); the packet goes on to mochi unchanged.
func (h *retainHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Retain {
		if pk.Origin == "" {
			pk.Origin = cl.ID
		}
		h.retain(pk)
	}
	return pk, nil
}

// OnWillSent stores a retained Will after mochi sent it to the subscribers.
func (h *retainHook) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	if pk.FixedHeader.Retain {
		if pk.Origin == "" {
			pk.Origin = cl.ID
		}
		h.retain(pk)
	}
}

// retain stores (or, with an empty payload, clears) pk as its topic's retained message.
func (h *retainHook) retain(pk packets.Packet) {
	if len(pk.Payload) == 0 {
		h.store.clear(pk.TopicName, nil)
		if h.persist != nil {
			h.persist.deleteRetained(pk.TopicName)
		}
	} else {
		pk.Payload = append([]byte(nil), pk.Payload...) // the packet's buffer is mochi's
		h.store.set(newRetainedMsg(pk))
		if h.persist != nil {
			h.persist.saveRetained(pk)
		}
	}
	atomic.StoreInt64(&h.srv.Info.Retained, int64(h.store.len())) // $SYS/broker/retained
}

// OnSubscribe notes, for each filter, whether the client had subscribed to it before (MQTT 5
// retain handling 1 sends retained messages only for a new subscription).
func (h *retainHook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if cl.Net.Inline {
		return pk
	}
	p := &pendingSub{packetID: pk.PacketID, filters: pk.Filters, existed: make([]bool, len(pk.Filters))}
	for i, f := range pk.Filters {
		_, p.existed[i] = cl.State.Subscriptions.Get(f.Filter)
	}
	h.pending.Store(cl, p)
	return pk
}

// OnPacketSent delivers the retained messages of a SUBSCRIBE once its SUBACK is written, on the
// subscribing client's goroutine, as mochi does.
func (h *retainHook) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	if pk.FixedHeader.Type != packets.Suback {
		return
	}
	v, ok := h.pending.LoadAndDelete(cl)
	if !ok {
		return
	}
	p := v.(*pendingSub)
	if p.packetID != pk.PacketID {
		return
	}
	for i, sub := range p.filters {
		if i >= len(pk.ReasonCodes) || pk.ReasonCodes[i] > packets.CodeGrantedQos2.Code {
			continue // refused
		}
		if !h.deliver(cl, sub, pk.ReasonCodes[i], p.existed[i]) {
			return
		}
	}
}

// OnDisconnect forgets a SUBSCRIBE whose SUBACK was never written.
func (h *retainHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) { h.pending.Delete(cl) }

// deliver writes the retained messages matching sub to cl; it reports false when the
// connection is gone.
func (h *retainHook) deliver(cl *mqtt.Client, sub packets.Subscription, granted byte, existed bool) bool {
	if mqtt.IsSharedFilter(sub.Filter) { // MQTT 5 4.8.2: no retained messages for shared subscriptions
		return true
	}
	if sub.RetainHandling == 2 || (sub.RetainHandling == 1 && existed) { // [MQTT-3.3.1-10] [MQTT-3.3.1-11]
		return true
	}
	live, expired := h.store.match(sub.Filter, time.Now().Unix())
	h.dropExpired(expired)
	for _, m := range live {
		if sub.NoLocal && m.origin == cl.ID { // [MQTT-3.8.3-3], as mochi applies it to retained messages
			continue
		}
		if !h.acl.OnACLCheck(cl, m.topic, false) {
			continue
		}
		out := m.packet()
		out.FixedHeader.Qos = min(m.qos, granted, h.srv.Options.Capabilities.MaximumQos)
		if sub.Identifier > 0 && cl.Properties.ProtocolVersion == 5 { // [MQTT-3.3.4-3]
			out.Properties.SubscriptionIdentifier = []int{sub.Identifier}
		}
		if out.FixedHeader.Qos > 0 {
			send, ok := h.inflight(cl, &out)
			if !ok {
				continue
			}
			if !send {
				continue // parked in flight; mochi sends it when the client's receive quota allows
			}
		}
		if err := cl.WritePacket(out); err != nil {
			return false
		}
	}
	return true
}

// inflight gives a QoS 1/2 delivery a packet id and records it in the client's in-flight
// table, as mochi's publishToClient does, so that the client's PUBACK (or PUBREC/PUBCOMP)
// completes it and a persistent session gets it again on reconnect. It reports whether to send
// now (false: parked until the client's MQTT 5 receive maximum allows, mochi sends it then) and
// whether the message may go at all (false: in-flight table full or no packet id, dropped as
// mochi drops it).
func (h *retainHook) inflight(cl *mqtt.Client, out *packets.Packet) (send, ok bool) {
	if cl.State.Inflight.Len() >= int(h.srv.Options.Capabilities.MaximumInflight) {
		atomic.AddInt64(&h.srv.Info.InflightDropped, 1) // mochi's $SYS counter
		return false, false
	}
	id, err := cl.NextPacketID()
	if err != nil {
		return false, false
	}
	out.PacketID = uint16(id)
	if rm := cl.Properties.Props.ReceiveMaximum; cl.Properties.ProtocolVersion == 5 && rm > 0 && sentUnacked(cl) >= int(rm) {
		out.Expiry = -1 // mochi's mark for "send when quota allows"
		if cl.State.Inflight.Set(*out) {
			atomic.AddInt64(&h.srv.Info.Inflight, 1)
		}
		return false, true
	}
	if cl.State.Inflight.Set(*out) {
		atomic.AddInt64(&h.srv.Info.Inflight, 1) // mochi subtracts it at the PUBACK
		cl.State.Inflight.DecreaseSendQuota()
	}
	return true, true
}

// sentUnacked counts the QoS publishes the broker sent to cl that wait for an acknowledgement
// (mochi's send quota is unexported).
func sentUnacked(cl *mqtt.Client) int {
	n := 0
	for _, pk := range cl.State.Inflight.GetAll(false) {
		if pk.FixedHeader.Type == packets.Publish && pk.Expiry >= 0 || pk.FixedHeader.Type == packets.Pubrel {
			n++
		}
	}
	return n
}

// dropExpired removes retained messages whose expiry passed (if nothing replaced them since).
func (h *retainHook) dropExpired(ms []*retainedMsg) {
	for _, m := range ms {
		if h.store.clear(m.topic, m) && h.persist != nil {
			h.persist.deleteRetained(m.topic)
		}
	}
}
