// Package webhook delivers the hub's events to registered webhooks: CloudEvents 1.0 in
// structured mode, signed with HMAC-SHA256, retried with exponential backoff, logged.
//
// The events themselves are queued by the state machine (hub/state), so the queue is replicated
// and survives a leader change. The Dispatcher runs on every node and works only while its node
// leads: per webhook it sends the oldest pending delivery, waits for it to succeed or be given
// up, and proposes each attempt's outcome (command.TypeWebhookAttempt) before moving to the next.
// Delivery is at least once: an attempt in flight when leadership moves is sent again by the new
// leader with the same event id, which receivers use to drop duplicates.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
)

// Store is what the dispatcher needs from the replicated store.
type Store interface {
	// IsLeader reports whether this node leads now.
	IsLeader() bool
	// Apply proposes a command (on the leader) and returns once it is applied here.
	Apply(ctx context.Context, env command.Envelope) (any, error)
}

// Backoff says when a failed delivery is tried again.
type Backoff struct {
	// Base is the wait after the first failure; it doubles after each further one.
	Base time.Duration
	// Max caps the wait.
	Max time.Duration
	// Attempts is how many attempts an event gets before it is given up.
	Attempts int
}

// DefaultBackoff retries after 1 s, 2 s, 4 s, ... up to 10 min, 12 attempts (about 40 minutes).
var DefaultBackoff = Backoff{Base: time.Second, Max: 10 * time.Minute, Attempts: 12}

// Wait is the wait after attempt n (1-based) failed.
func (b Backoff) Wait(n int) time.Duration {
	d := b.Base
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// Config configures a Dispatcher.
type Config struct {
	Store  Store
	Reader state.Reader
	// NodeID is recorded with each attempt in the delivery log.
	NodeID string
	// Client sends deliveries; default: 10 s timeout, no redirects followed.
	Client *http.Client
	// Backoff defaults to DefaultBackoff.
	Backoff Backoff
	// Poll is how often the dispatcher looks for pending deliveries without a Wake; default 1 s.
	Poll       time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Open returns the plain secret of a stored one (hub/seal: secrets are stored sealed under
	// the cluster's seal key); nil: secrets are used as stored.
	Open func(stored string) (string, error)
}

// Dispatcher delivers pending events while its node leads.
type Dispatcher struct {
	cfg  Config
	log  *slog.Logger
	m    *metrics
	wake chan struct{}

	mu      sync.Mutex
	running map[string]bool // webhook id -> a worker is delivering its queue
	wg      sync.WaitGroup
}

// New returns a Dispatcher; Run starts it.
func New(cfg Config) *Dispatcher {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if cfg.Backoff.Attempts <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Dispatcher{cfg: cfg, log: cfg.Logger, m: newMetrics(cfg.Registerer), wake: make(chan struct{}, 1), running: map[string]bool{}}
}

// Wake asks for a look at the queues now (after a command that may have queued events).
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run delivers until ctx ends; it returns after its workers stopped.
func (d *Dispatcher) Run(ctx context.Context) {
	defer d.wg.Wait()
	t := time.NewTicker(d.cfg.Poll)
	defer t.Stop()
	for {
		if d.cfg.Store.IsLeader() {
			d.startWorkers(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.wake:
		}
	}
}

// startWorkers starts a worker for every webhook with pending events that has none.
func (d *Dispatcher) startWorkers(ctx context.Context) {
	cursor := ""
	for {
		p, err := d.cfg.Reader.Webhooks(cursor, state.MaxLimit)
		if err != nil {
			d.log.Warn("list webhooks", "err", err)
			return
		}
		for _, w := range p.Items {
			if w.Pending <= 0 {
				continue
			}
			d.mu.Lock()
			busy := d.running[w.ID]
			d.running[w.ID] = true
			d.mu.Unlock()
			if busy {
				continue
			}
			d.wg.Add(1)
			go func(id string) {
				defer d.wg.Done()
				defer func() { d.mu.Lock(); delete(d.running, id); d.mu.Unlock() }()
				d.work(ctx, id)
			}(w.ID)
		}
		if p.NextCursor == nil {
			return
		}
		cursor = *p.NextCursor
	}
}

// work delivers one webhook's queue in order until it is empty, the node stops leading or ctx
// ends.
func (d *Dispatcher) work(ctx context.Context, id string) {
	for ctx.Err() == nil && d.cfg.Store.IsLeader() {
		del, ok, err := d.cfg.Reader.NextDelivery(id)
		if err != nil {
			d.log.Warn("read webhook queue", "webhook", id, "err", err)
			return
		}
		if !ok {
			return
		}
		if del.Attempts > 0 {
			due := time.UnixMilli(del.LastAttemptAt).Add(d.cfg.Backoff.Wait(del.Attempts))
			if wait := due.Sub(d.cfg.Now()); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
				continue // re-read: the webhook may be gone, or another attempt recorded
			}
		}
		a := d.attempt(ctx, id, del)
		env, err := command.New(command.TypeWebhookAttempt, "", 0, "hub:"+d.cfg.NodeID, a)
		if err != nil {
			d.log.Error("encode webhook attempt", "err", err)
			return
		}
		if _, err := d.cfg.Store.Apply(ctx, env); err != nil {
			// Not leader any more, or shutting down: whoever leads next sends the event again.
			d.log.Info("record webhook attempt", "webhook", id, "event", del.Event.ID, "err", err)
			return
		}
		d.m.attempts.WithLabelValues(outcomeOf(a)).Inc()
	}
}

func outcomeOf(a state.WebhookAttempt) string {
	switch {
	case a.Delivered:
		return state.OutcomeDelivered
	case a.GiveUp:
		return state.OutcomeFailed
	}
	return state.OutcomeRetrying
}

// attempt sends one delivery and says how it went.
func (d *Dispatcher) attempt(ctx context.Context, id string, del state.WebhookDelivery) state.WebhookAttempt {
	n := del.Attempts + 1
	a := state.WebhookAttempt{Webhook: id, Seq: del.Seq, Attempt: n, Node: d.cfg.NodeID}
	start := time.Now()
	status, err := d.send(ctx, id, del, n)
	a.DurationMS = time.Since(start).Milliseconds()
	a.Status = status
	if err == nil {
		a.Delivered = true
		return a
	}
	a.Error = truncate(err.Error(), 300)
	a.GiveUp = n >= d.cfg.Backoff.Attempts || errors.Is(err, errPermanent)
	d.log.Warn("webhook delivery failed", "webhook", id, "event", del.Event.ID, "attempt", n, "status", status, "err", err, "give_up", a.GiveUp)
	return a
}

// errPermanent marks a failure that retrying cannot fix (the event cannot be rendered).
var errPermanent = errors.New("permanent")

func (d *Dispatcher) send(ctx context.Context, id string, del state.WebhookDelivery, attempt int) (int, error) {
	w, err := d.cfg.Reader.Webhook(id)
	if err != nil {
		return 0, err
	}
	secret, err := d.cfg.Reader.WebhookSecret(id)
	if err != nil {
		return 0, err
	}
	if d.cfg.Open != nil {
		if secret, err = d.cfg.Open(secret); err != nil {
			return 0, fmt.Errorf("webhook %s secret: %w", id, err) // retried: another leader may hold the key
		}
	}
	ce, err := Envelope(del.Event)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errPermanent, err)
	}
	body, err := json.Marshal(ce)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errPermanent, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errPermanent, err)
	}
	req.Header.Set("Content-Type", ContentType)
	req.Header.Set("User-Agent", "Driftline-Webhook/1")
	req.Header.Set(HeaderEventID, del.Event.ID)
	req.Header.Set(HeaderAttempt, fmt.Sprint(attempt))
	req.Header.Set(HeaderSignature, Sign(secret, d.cfg.Now(), body))
	resp, err := d.cfg.Client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(snippet))
	}
	return resp.StatusCode, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
