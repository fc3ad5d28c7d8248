package broker

import (
	"log/slog"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// aclHook is the broker's only authentication and authorisation hook (mochi OR-s auth hooks, so
// no other hook that allows anything may be registered beside it). At connect it asks the
// Authenticator who the client is and keeps the answer in an in-memory table keyed by client id;
// every publish, subscribe and delivery is then decided by one map read and the pure rules.
type aclHook struct {
	mqtt.HookBase
	rules  rules
	auth   Authenticator
	m      *metrics
	log    *slog.Logger
	server *mqtt.Server // set before Serve; used for take-over checks and Revoke
	// refusals rate-limits the log lines of refused connects.
	refusals *logLimiter

	mu       sync.RWMutex
	sessions map[string]*aclEntry               // client id -> who holds it
	byOwner  map[Principal]map[string]*aclEntry // principal -> client id -> entry, for Revoke
	epoch    uint64                             // incremented by every Revoke
}

// aclEntry binds a client id to the principal that authenticated it and to the client object
// of that connection; a check made for any other object with the same id (a connection taken
// over, a session restored from disk) finds no entry and is refused.
type aclEntry struct {
	p  Principal
	cl *mqtt.Client

	grantsMu sync.Mutex
	grants   map[string]modelGrant // model -> the ModelAuthorizer's last answer
}

type modelGrant struct {
	ok    bool
	until time.Time
}

// ModelGrantTTL is how long the broker keeps a ModelAuthorizer answer for one device and model.
const ModelGrantTTL = 2 * time.Second

// mayFetchModel asks the hook's ModelAuthorizer whether e's device may read model's shared chunk
// topic, at most once per ModelGrantTTL.
func (h *aclHook) mayFetchModel(e *aclEntry, model string) bool {
	ma, ok := h.auth.(ModelAuthorizer)
	if !ok {
		return false
	}
	now := time.Now()
	e.grantsMu.Lock()
	g, ok := e.grants[model]
	e.grantsMu.Unlock()
	if ok && now.Before(g.until) {
		return g.ok
	}
	g = modelGrant{ok: ma.MayFetchModel(e.p.ID, model), until: now.Add(ModelGrantTTL)}
	e.grantsMu.Lock()
	if e.grants == nil {
		e.grants = map[string]modelGrant{}
	}
	e.grants[model] = g
	e.grantsMu.Unlock()
	return g.ok
}

func newACLHook(r rules, auth Authenticator, m *metrics, log *slog.Logger) *aclHook {
	return &aclHook{
		rules:    r,
		auth:     auth,
		m:        m,
		log:      log,
		sessions: make(map[string]*aclEntry),
		byOwner:  make(map[Principal]map[string]*aclEntry),
		refusals: newLogLimiter(DefaultRefusedLogInterval, 100),
	}
}

// ID names the hook for mochi's logs.
func (h *aclHook) ID() string { return "driftline-acl" }

// Provides lists the callbacks the hook implements; mochi calls no other.
func (h *aclHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnDisconnect, mqtt.OnClientExpired:
		return true
	}
	return false
}

// OnConnectAuthenticate authenticates a connecting client and records its principal. It refuses
// bad credentials, unusable principals, a Will on a topic the principal may not publish (mochi
// sends Wills without an ACL check), and a client id outside the principal's namespace
// (ClientIDAllowed: a session belongs to one principal, so nobody can take over, squat on or
// lock out another's session).
func (h *aclHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user := string(pk.Connect.Username)
	if cl.ID == mqtt.InlineClientId {
		h.refuse(reasonTakeover, cl, user, "client id is reserved for the hub")
		return false
	}
	for {
		h.mu.RLock()
		epoch := h.epoch
		h.mu.RUnlock()

		p, err := h.auth.Authenticate(user, pk.Connect.Password)
		if err != nil {
			h.refuse(reasonAuth, cl, user, err.Error())
			return false
		}
		if !validPrincipal(p) {
			h.refuse(reasonPrincipal, cl, user, ErrBadPrincipal.Error()+": "+p.String())
			return false
		}
		if pk.Connect.WillFlag && !h.rules.allow(p, pk.Connect.WillTopic, true) {
			h.refuse(reasonWill, cl, user, "will topic not allowed: "+pk.Connect.WillTopic)
			return false
		}
		if !ClientIDAllowed(p, cl.ID) {
			h.refuse(reasonClientID, cl, user, "client id outside the namespace of "+p.String()+" (want "+ClientIDFor(p, "")+"[:suffix])")
			return false
		}

		h.mu.Lock()
		if h.epoch != epoch { // a Revoke ran meanwhile: the credentials may just have been revoked
			h.mu.Unlock()
			continue
		}
		// The namespaces make a take-over by another principal impossible; this is the second
		// lock on that door, comparing principals (never user names: token principals ignore them).
		if e := h.sessions[cl.ID]; e != nil && e.cl != cl && e.p != p {
			h.mu.Unlock()
			h.refuse(reasonTakeover, cl, user, "client id held by "+e.p.String())
			return false
		}
		h.put(cl, p)
		h.mu.Unlock()
		if pc, ok := cl.Net.Conn.(*pendingConn); ok {
			pc.authenticated() // no longer counts against MaxPendingSockets
		}
		return true
	}
}

// OnACLCheck decides a publish (write), a subscribe or a delivery (read) by the principal the
// client authenticated as. It is called for every delivery to every subscriber: one read-locked
// map lookup and string comparisons.
func (h *aclHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	h.mu.RLock()
	e := h.sessions[cl.ID]
	h.mu.RUnlock()
	if e != nil && e.cl == cl && h.rules.allow(e.p, topic, write) {
		return true
	}
	if e != nil && e.cl == cl && e.p.Kind == Device && !write {
		if model, ok := h.rules.modelTopic(topic); ok && h.mayFetchModel(e, model) {
			return true
		}
	}
	if write {
		h.m.reject(reasonPublish)
	} else {
		h.m.reject(reasonRead)
	}
	return false
}

// OnDisconnect forgets the client when its session ends with the connection; a persistent
// session keeps its entry so that QoS 1 messages can queue for it while it is offline.
func (h *aclHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if expire {
		h.remove(cl)
	}
}

// OnClientExpired forgets a persistent session that expired.
func (h *aclHook) OnClientExpired(cl *mqtt.Client) { h.remove(cl) }

// revoke drops every entry of principal p and disconnects those clients; it returns how many
// connections it closed.
func (h *aclHook) revoke(p Principal) int {
	h.mu.Lock()
	h.epoch++
	entries := h.byOwner[p]
	delete(h.byOwner, p)
	for id := range entries {
		delete(h.sessions, id)
	}
	h.mu.Unlock()

	closed := 0
	for _, e := range entries {
		if e.cl.Closed() {
			continue
		}
		if h.server != nil {
			_ = h.server.DisconnectClient(e.cl, packets.ErrNotAuthorized) // returns the code itself
		} else {
			e.cl.Stop(packets.ErrNotAuthorized)
		}
		h.m.reject(reasonRevoked)
		closed++
	}
	if len(entries) > 0 { // a new device's credentials are "revoked" too: nothing to say then
		h.log.Info("mqtt principal revoked", "principal", p.String(), "connections_closed", closed)
	}
	return closed
}

// put records cl as held by p; h.mu must be held.
func (h *aclHook) put(cl *mqtt.Client, p Principal) {
	if old := h.sessions[cl.ID]; old != nil {
		h.unindex(cl.ID, old)
	}
	e := &aclEntry{p: p, cl: cl}
	h.sessions[cl.ID] = e
	m := h.byOwner[p]
	if m == nil {
		m = make(map[string]*aclEntry)
		h.byOwner[p] = m
	}
	m[cl.ID] = e
}

// remove forgets cl if the entry for its id is still this client's.
func (h *aclHook) remove(cl *mqtt.Client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e := h.sessions[cl.ID]; e != nil && e.cl == cl {
		delete(h.sessions, cl.ID)
		h.unindex(cl.ID, e)
	}
}

// unindex removes e from the per-principal index; h.mu must be held.
func (h *aclHook) unindex(clientID string, e *aclEntry) {
	if m := h.byOwner[e.p]; m != nil {
		delete(m, clientID)
		if len(m) == 0 {
			delete(h.byOwner, e.p)
		}
	}
}

// refuse counts a refused connect and logs it, at most once per client id per
// RefusedLogInterval (a device with a revoked token retrying every second would otherwise
// write a line a second for ever), saying how many refusals of that client were not logged.
func (h *aclHook) refuse(reason string, cl *mqtt.Client, user, why string) {
	h.m.reject(reason)
	log, suppressed, overflow := h.refusals.note(cl.ID, time.Now())
	if overflow > 0 {
		h.log.Info("mqtt connect refusals not logged (log budget spent)", "count", overflow)
	}
	if log {
		h.log.Info("mqtt connect refused", "reason", reason, "client", cl.ID, "user", user, "remote", cl.Net.Remote,
			"why", why, "refused_since_last_line", suppressed)
	}
}

// principalOf returns the principal cl authenticated as, if cl is the connection on record for
// its client id.
func (h *aclHook) principalOf(cl *mqtt.Client) (Principal, bool) {
	h.mu.RLock()
	e := h.sessions[cl.ID]
	h.mu.RUnlock()
	if e == nil || e.cl != cl {
		return Principal{}, false
	}
	return e.p, true
}
