package agent

import (
	"context"
	"math/rand/v2"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// Reasons a broker refuses a CONNECT: the values of MetricConnectRefused's reason label and of
// Refusal.Reason. The agent speaks MQTT 3.1.1, whose CONNACK return codes they name; a v5
// broker answers a 3.1.1 client with these codes too (0x87 Not authorized as 5, 0x85 Client
// Identifier not valid as 2, 0x88/0x89 Server unavailable/busy as 3, 0x84 Unsupported Protocol
// Version as 1; 0x86 Bad User Name or Password as 4, though mochi, the hub's broker, and
// Mosquitto answer a wrong token with 5).
const (
	RefusedBadCredentials    = "bad_credentials"     // 4: bad user name or password (the token)
	RefusedNotAuthorized     = "not_authorized"      // 5: not authorised (revoked, unknown device)
	RefusedIdentifier        = "identifier_rejected" // 2: client id refused
	RefusedServerUnavailable = "server_unavailable"  // 3: the broker cannot serve now
	RefusedProtocolVersion   = "protocol_version"    // 1: MQTT 3.1.1 not accepted
)

var refusedReasons = []string{RefusedBadCredentials, RefusedNotAuthorized, RefusedIdentifier, RefusedServerUnavailable, RefusedProtocolVersion}

// refusedReason names a CONNACK return code, or "" when rc is no refusal (accepted, a
// network error, a protocol violation).
func refusedReason(rc byte) string {
	switch rc {
	case packets.ErrRefusedBadUsernameOrPassword:
		return RefusedBadCredentials
	case packets.ErrRefusedNotAuthorised:
		return RefusedNotAuthorized
	case packets.ErrRefusedIDRejected:
		return RefusedIdentifier
	case packets.ErrRefusedServerUnavailable:
		return RefusedServerUnavailable
	case packets.ErrRefusedBadProtocolVersion:
		return RefusedProtocolVersion
	}
	return ""
}

// refusedHint says what an operator can do about a refusal.
func refusedHint(reason string) string {
	switch reason {
	case RefusedBadCredentials, RefusedNotAuthorized:
		return "the broker does not accept this device id and token: check token in the agent config (a device deleted or enrolled again on the hub needs the new token from `driftline device add`)"
	case RefusedIdentifier:
		return "the broker does not accept this device id as a client id"
	case RefusedServerUnavailable:
		return "the broker cannot take connections now"
	}
	return "the broker does not speak MQTT 3.1.1"
}

// Refusal is a CONNECT the broker refused.
type Refusal struct {
	// Reason is a Refused* constant; Code the CONNACK return code; Broker the broker's URL.
	Reason string
	Code   byte
	Broker string
	// Attempts counts the refusals in a row, this one included.
	Attempts int
}

// Connection pacing defaults (Options.ConnectBackoff, Options.RefusedBackoff).
const (
	// DefaultConnectBackoff is the first wait after a connect attempt that reached no broker;
	// it doubles up to MaxConnectBackoff.
	DefaultConnectBackoff = time.Second
	MaxConnectBackoff     = 5 * time.Second
	// DefaultRefusedBackoff is the first wait after a refused CONNECT; it doubles up to
	// DefaultRefusedBackoffMax. Refusals do not pass by themselves: retrying them fast only
	// loads the broker (10,000 devices with a revoked token must not become a reconnect storm).
	DefaultRefusedBackoff    = 10 * time.Second
	DefaultRefusedBackoffMax = 5 * time.Minute
	// stableConnection is how long a connection must have lasted for the next reconnect to
	// start at once, with the backoff reset; a connection dropped sooner (a flapping link, a
	// broker that accepts then drops the device) keeps backing off.
	stableConnection = 10 * time.Second
)

// pacing holds the waits of the connect loop.
type pacing struct {
	netMin, netMax, refusedMin, refusedMax time.Duration
}

// jittered returns a wait in [d/2, d]: devices that failed together do not retry together.
func jittered(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// ConnStatus is the MQTT connection's state, as GET /status shows it.
type ConnStatus struct {
	// Connected is true while the connection is up; Broker is its broker's URL, or the one of
	// the last attempt while down.
	Connected bool   `json:"connected"`
	Broker    string `json:"broker,omitempty"`
	// Since is when the current state (connected, failing, refused) began.
	Since time.Time `json:"since,omitzero"`
	// Refused is the Refused* reason while the broker refuses the device's CONNECT, with
	// RefusedCode its CONNACK return code.
	Refused     string `json:"refused,omitempty"`
	RefusedCode byte   `json:"refused_code,omitempty"`
	// Error is the last connect error while not connected; FailedAttempts counts failed
	// attempts in a row; NextAttempt is when the next one is due.
	Error          string    `json:"error,omitempty"`
	FailedAttempts int       `json:"failed_attempts,omitempty"`
	NextAttempt    time.Time `json:"next_attempt,omitzero"`
}

// status returns a copy of the connection's state.
func (c *conn) status() ConnStatus {
	c.stMu.Lock()
	defer c.stMu.Unlock()
	return c.st
}

// setToken replaces the MQTT password for the next connect and cuts a wait short.
func (c *conn) setToken(tok string) {
	c.token.Store(&tok)
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// run connects and, after every loss, reconnects until ctx ends. A connect that reaches no
// broker is retried after DefaultConnectBackoff, doubling up to MaxConnectBackoff; a CONNECT
// the broker refuses is logged once as an error (again only when its reason or broker
// changes), counted by reason, shown in the status, and retried after the refused backoff,
// doubling up to its cap. Every wait is jittered. setToken cuts a wait short.
func (c *conn) run(ctx context.Context) {
	var (
		netStep, refusedStep time.Duration // un-jittered; 0: none yet
		failures             int
		lastRefusal          Refusal
	)
	for ctx.Err() == nil {
		c.lostMu.Lock()
		lost := c.lost
		c.lostMu.Unlock()
		tok := c.client.Connect()
		select {
		case <-tok.Done():
		case <-ctx.Done():
			return
		}
		err := tok.Error()
		if err == nil {
			if lastRefusal.Attempts > 0 {
				c.log.Info("broker accepted the connection after refusing it", "refused_attempts", lastRefusal.Attempts, "broker", c.status().Broker)
			}
			lastRefusal, failures, refusedStep = Refusal{}, 0, 0
			select { // a token set before this connect has been used
			case <-c.kick:
			default:
			}
			connectedAt := time.Now()
			select {
			case <-lost:
			case <-ctx.Done():
				return
			}
			if time.Since(connectedAt) >= stableConnection {
				netStep = 0
				continue // reconnect at once
			}
			netStep = grow(netStep, c.pace.netMin, c.pace.netMax)
			if !c.wait(ctx, jittered(netStep)) {
				return
			}
			continue
		}
		failures++
		c.stMu.Lock()
		broker := c.tryingAt
		c.stMu.Unlock()
		var (
			wait   time.Duration
			reason string
			code   byte
		)
		if t, ok := tok.(*paho.ConnectToken); ok {
			code = t.ReturnCode()
			reason = refusedReason(code)
		}
		if reason != "" {
			c.m.refused.WithLabelValues(reason).Inc()
			refusedStep = grow(refusedStep, c.pace.refusedMin, c.pace.refusedMax)
			netStep = 0
			wait = jittered(refusedStep)
			r := Refusal{Reason: reason, Code: code, Broker: broker, Attempts: lastRefusal.Attempts + 1}
			if r.Reason != lastRefusal.Reason || r.Broker != lastRefusal.Broker {
				c.log.Error("broker refused the connection", "broker", broker, "reason", reason, "code", code,
					"err", err, "hint", refusedHint(reason), "retry_in", wait.Round(time.Millisecond))
			} else {
				c.log.Debug("broker refused the connection again", "broker", broker, "reason", reason, "attempt", r.Attempts, "retry_in", wait.Round(time.Millisecond))
			}
			lastRefusal = r
			if c.onRefused != nil {
				c.onRefused(r)
			}
		} else {
			c.m.connectErrors.Inc()
			netStep = grow(netStep, c.pace.netMin, c.pace.netMax)
			refusedStep = 0
			wait = jittered(netStep)
			if failures == 1 || lastRefusal.Attempts > 0 {
				c.log.Warn("cannot connect to a broker; retrying", "broker", broker, "err", err, "retry_in", wait.Round(time.Millisecond))
			} else {
				c.log.Debug("cannot connect to a broker", "broker", broker, "attempt", failures, "err", err, "retry_in", wait.Round(time.Millisecond))
			}
			lastRefusal = Refusal{}
		}
		c.failed(broker, reason, code, err, failures, wait)
		if !c.wait(ctx, wait) {
			return
		}
	}
}

// failed records a failed connect attempt in the status and the backoff gauge: reason is the
// refusal ("" for a broker not reached) with its CONNACK code, wait the time to the next attempt.
func (c *conn) failed(broker, reason string, code byte, err error, failures int, wait time.Duration) {
	now := time.Now()
	c.stMu.Lock()
	since := c.st.Since
	if c.st.Connected || c.st.Refused != reason || since.IsZero() {
		since = now
	}
	c.st = ConnStatus{Broker: broker, Since: since, Refused: reason, Error: err.Error(),
		FailedAttempts: failures, NextAttempt: now.Add(wait)}
	if reason != "" {
		c.st.RefusedCode = code
	}
	c.stMu.Unlock()
	c.m.backoff.Set(wait.Seconds())
}

// grow returns the step after prev: lo at first, then doubling up to hi.
func grow(prev, lo, hi time.Duration) time.Duration {
	if prev <= 0 {
		return lo
	}
	return min(2*prev, hi)
}

// wait sleeps d, or less when setToken kicks; false when ctx ended.
func (c *conn) wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-c.kick:
	}
	return true
}
