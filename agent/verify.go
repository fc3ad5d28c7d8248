package agent

import (
	"time"

	"github.com/driftline/driftline/shared/wire"
)

// decodeDesired parses and checks a desired payload, counting what it refuses.
func (a *Agent) decodeDesired(b []byte) (wire.Desired, bool) {
	d, err := wire.DecodeDesired(b)
	if err == nil {
		err = d.MatchTopic(a.cfg.DeviceID)
	}
	if err != nil {
		a.reject(ReasonMalformedDesired, "malformed desired state", "err", err)
		return wire.Desired{}, false
	}
	return d, true
}

// verifyDesired decodes a desired payload and decides what to make of it: it learns the root
// documents it carries (a rotated key set), then checks the signature, the expiry and the rev
// (trustStore.check). Refusals are counted and logged; a valid one is recorded as heard (the
// freeze detector's clock). It returns the desired state and whether to act on it.
func (a *Agent) verifyDesired(b []byte) (wire.Desired, bool) {
	d, ok := a.decodeDesired(b)
	if !ok {
		return d, false
	}
	if len(d.Roots) > 0 {
		roots := make([][]byte, len(d.Roots))
		for i, r := range d.Roots {
			roots[i] = r
		}
		changed, err := a.trust.learn(roots)
		if err != nil {
			a.reject(ReasonBadRoot, "root of trust refused", "err", err)
		}
		if changed {
			a.log.Info("learnt a new root of trust", "version", a.trust.rootVersion(), "online_keys", a.trust.ring().IDs())
		}
	}
	v, reason, err := a.trust.check(d, time.Now())
	switch v {
	case verdictRefuse:
		a.reject(reason, "desired state refused", "rev", d.Rev, "err", err)
		return d, false
	case verdictFresh, verdictIgnore:
		a.trust.seen(d)
		a.learnRevoked(d)
		a.log.Debug("desired revision already acted on", "rev", d.Rev)
		return d, false
	}
	a.trust.seen(d)
	a.learnRevoked(d)
	return d, true
}

// learnRevoked keeps the revocation list a valid desired state carries.
func (a *Agent) learnRevoked(d wire.Desired) {
	if err := a.trust.revoke(d.Revoked); err != nil {
		a.log.Error("keep revocation list", "err", err)
	}
}

// acceptDesired is the connection's filter: whether an incoming payload may take the desired
// slot.
func (a *Agent) acceptDesired(b []byte) bool {
	_, ok := a.verifyDesired(b)
	return ok
}

// reconcileTrust is the reconciler's view of the agent's root of trust (reconcile.Trust).
type reconcileTrust struct{ a *Agent }

func (t reconcileTrust) Desired(b []byte) (wire.Desired, bool) { return t.a.verifyDesired(b) }

func (t reconcileTrust) Preempts(b []byte, rev uint64) bool {
	d, err := wire.DecodeDesired(b)
	if err != nil || d.Rev <= rev {
		return false
	}
	v, _, _ := t.a.trust.check(d, time.Now())
	return v == verdictAct
}

func (t reconcileTrust) Approval(m wire.DesiredModel) error {
	return t.a.trust.ring().VerifyApproval(m.Approval(), m.ApprovalSignature)
}

func (t reconcileTrust) Revoked(name string, version int) bool {
	return t.a.trust.isRevoked(name, version)
}

func (t reconcileTrust) ActedOn(rev uint64) { t.a.trust.actedOn(rev) }
