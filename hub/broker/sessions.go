package broker

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Forget ends everything principal p left in the broker, for a deleted device or token and for
// a re-keyed device: its connections are closed at once (as Revoke does), every session in its
// client-id namespace is removed, connected or not, in memory and in the store, and, for a
// device, so is every session a client authenticated as that device left under another id (from
// before client ids were bound to principals) and the retained messages under its subtree that
// the device published. With keepHubRetained the retained messages the hub publishes there
// (`desired`) stay: a re-keyed device still needs its desired state. The hub must have stopped
// accepting p's credentials first. It returns how many sessions it removed.
func (b *Broker) Forget(p Principal, keepHubRetained bool) int {
	b.acl.revoke(p)
	removed := 0
	for id, cl := range b.srv.Clients.GetAll() {
		if cl.Net.Inline || !b.ownedBy(p, id, cl) {
			continue
		}
		if !cl.Closed() {
			_ = b.srv.DisconnectClient(cl, packets.ErrNotAuthorized) // returns the code itself
		}
		b.srv.UnsubscribeClient(cl)
		if cur, ok := b.srv.Clients.Get(id); ok && cur == cl {
			b.srv.Clients.Delete(id)
		}
		if b.store != nil {
			b.store.deleteClient(id)
		}
		b.acl.remove(cl)
		removed++
	}
	cleared := 0
	if p.Kind == Device && validPrincipal(p) {
		prefix := b.rules.devicePrefix(p.ID)
		for _, m := range b.ret.under(prefix) {
			if keepHubRetained && b.rules.hubKind(m.topic) {
				continue
			}
			if b.ret.clear(m.topic, nil) && b.store != nil {
				b.store.deleteRetained(m.topic)
			}
			cleared++
		}
		b.limits.forget(p.ID)
	}
	if removed > 0 || cleared > 0 {
		b.log.Info("mqtt principal forgotten", "principal", p.String(), "sessions_removed", removed, "retained_cleared", cleared)
	}
	return removed
}

// ownedBy reports whether the session cl (client id id) belongs to p: its id is in p's
// namespace, or, for a device, a client authenticated with the device's id as user name.
func (b *Broker) ownedBy(p Principal, id string, cl *mqtt.Client) bool {
	if ClientIDAllowed(p, id) {
		return true
	}
	return p.Kind == Device && string(cl.Properties.Username) == p.ID
}

// Session reports whether the broker holds a session (connected or kept for a persistent
// client) with this client id, and whether it is connected.
func (b *Broker) Session(clientID string) (connected bool, ok bool) {
	cl, ok := b.srv.Clients.Get(clientID)
	if !ok {
		return false, false
	}
	return !cl.Closed(), true
}

// devicePrefix is "{prefix}/dev/{id}/".
func (r rules) devicePrefix(id string) string { return r.devBase + id + "/" }

// hubKind reports whether topic is a device topic of a kind the hub publishes (desired, chunk).
func (r rules) hubKind(topic string) bool {
	k := r.topicKind(topic)
	return k == kindDesired || k == kindChunk
}
