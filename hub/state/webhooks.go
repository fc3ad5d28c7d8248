package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/driftline/driftline/hub/command"
)

// Webhooks are replicated state: the webhook's URL, secret and event filter, its queue of pending
// deliveries and its delivery log all live in the FSM. Events are queued by the state machine
// itself while it applies the command that caused them (a device's drift changing, a rollout gate
// deciding, a dataset version appearing), so every node queues the same events with the same ids
// and a new leader finds the deliveries the old one had not finished. Only the leader delivers
// (hub/webhook); each attempt's outcome comes back as a TypeWebhookAttempt command.

// Event types (the CloudEvents `type` attribute) the hub delivers.
const (
	// EventDriftDetected: a device's window drifted after a window that did not (or after a
	// window of another model version).
	EventDriftDetected = "io.driftline.drift.detected"
	// EventDriftCleared: a device's window no longer drifts after one that did.
	EventDriftCleared = "io.driftline.drift.cleared"
	// EventGateDecision: a rollout's gates decided: the next wave starts or the rollout completes
	// (decision "pass"), or it pauses or rolls back (decision "fail").
	EventGateDecision = "io.driftline.rollout.gate"
	// EventDatasetVersion: a new dataset version was registered.
	EventDatasetVersion = "io.driftline.dataset.version"
	// EventDatasetCandidate: a new candidate dataset version (collected from edge samples).
	EventDatasetCandidate = "io.driftline.dataset.candidate"
	// EventTest: `driftline webhook test`; sent to the one webhook it names, whatever its filter.
	EventTest = "io.driftline.webhook.test"
)

// EventTypes are the event types a webhook may subscribe to.
var EventTypes = []string{EventDriftDetected, EventDriftCleared, EventGateDecision, EventDatasetVersion, EventDatasetCandidate}

// Keys of the webhook state.
const (
	pWebhook      = "fsm/wh/"  // id -> storedWebhook
	pWebhookQueue = "fsm/whq/" // id/%020d seq -> WebhookDelivery (pending)
	pWebhookLog   = "fsm/whl/" // id/%020d log seq -> WebhookLogEntry
	kWebhookSeq   = "fsm/whseq"
)

// WebhookLogKeep is how many delivery log entries the hub keeps per webhook (the oldest go).
const WebhookLogKeep = 500

// Webhook is a registered receiver of events. Its secret is never part of this type: it is shown
// once, when the webhook is created.
type Webhook struct {
	ID  string `json:"id"`
	URL string `json:"url"`
	// Events are the event types delivered; empty means all of EventTypes.
	Events      []string `json:"events"`
	Description string   `json:"description,omitempty"`
	CreatedBy   string   `json:"created_by"`
	CreatedAt   int64    `json:"created_at"`
	// Pending counts events queued and not yet delivered or given up.
	Pending int `json:"pending"`
	// Delivered and Failed count events delivered and given up after the last attempt.
	Delivered int64 `json:"delivered"`
	Failed    int64 `json:"failed"`
}

// storedWebhook is Webhook with its secret and log counter, for storage.
type storedWebhook struct {
	Webhook
	Secret string `json:"secret"`
	LogSeq uint64 `json:"log_seq"`
}

// Wants reports whether the webhook subscribes to events of type typ.
func (w Webhook) Wants(typ string) bool {
	if typ == EventTest {
		return false // only the test command queues one, for one webhook
	}
	if len(w.Events) == 0 {
		return true
	}
	for _, e := range w.Events {
		if e == typ {
			return true
		}
	}
	return false
}

// WebhookEvent is one event as the state machine recorded it. Delivery wraps it in a CloudEvents
// envelope (hub/webhook); ID is the CloudEvents id, stable across retries and leader changes, for
// receivers to drop duplicates.
type WebhookEvent struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Subject string          `json:"subject,omitempty"`
	Time    int64           `json:"time"`
	Data    json.RawMessage `json:"data"`
}

// WebhookDelivery is an event waiting for delivery to one webhook. Deliveries to one webhook go
// out in Seq order, one at a time.
type WebhookDelivery struct {
	Webhook string       `json:"webhook"`
	Seq     uint64       `json:"seq"`
	Event   WebhookEvent `json:"event"`
	// Attempts made so far; LastAttemptAt (Unix ms) and LastError describe the latest.
	Attempts      int    `json:"attempts"`
	LastAttemptAt int64  `json:"last_attempt_at,omitempty"`
	LastError     string `json:"last_error,omitempty"`
}

// Delivery outcomes in the log.
const (
	OutcomeDelivered = "delivered"
	OutcomeRetrying  = "retrying"
	OutcomeFailed    = "failed" // given up after the last attempt
)

// WebhookLogEntry is one delivery attempt in a webhook's delivery log.
type WebhookLogEntry struct {
	Seq        uint64 `json:"seq"`
	Webhook    string `json:"webhook"`
	EventID    string `json:"event_id"`
	EventType  string `json:"event_type"`
	Attempt    int    `json:"attempt"`
	At         int64  `json:"at"`
	Status     int    `json:"status,omitempty"`
	Error      string `json:"error,omitempty"`
	DurationMS int64  `json:"duration_ms"`
	Outcome    string `json:"outcome"`
	Node       string `json:"node,omitempty"`
}

// WebhookCreate registers a webhook. Payload of command.TypeWebhookCreate.
type WebhookCreate struct {
	ID          string   `json:"id"`
	URL         string   `json:"url"`
	Events      []string `json:"events,omitempty"`
	Secret      string   `json:"secret"`
	Description string   `json:"description,omitempty"`
}

// WebhookDelete removes a webhook with its queue and log. Payload of command.TypeWebhookDelete.
type WebhookDelete struct {
	ID string `json:"id"`
}

// WebhookTest queues a test event for one webhook. Payload of command.TypeWebhookTest.
type WebhookTest struct {
	ID string `json:"id"`
}

// WebhookAttempt is the outcome of one delivery attempt. Payload of command.TypeWebhookAttempt.
// An attempt for a delivery that is gone, or with a number not above the attempts recorded, is
// a repeat (a retried proposal, a deposed leader) and changes nothing.
type WebhookAttempt struct {
	Webhook    string `json:"webhook"`
	Seq        uint64 `json:"seq"`
	Attempt    int    `json:"attempt"`
	Status     int    `json:"status,omitempty"`
	Error      string `json:"error,omitempty"`
	DurationMS int64  `json:"duration_ms"`
	Delivered  bool   `json:"delivered"`
	// GiveUp ends a failed delivery: the event leaves the queue as failed.
	GiveUp bool   `json:"give_up,omitempty"`
	Node   string `json:"node,omitempty"`
}

// ValidWebhookURL checks a webhook URL: absolute http or https with a host, no user info.
func ValidWebhookURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("webhook url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("webhook url %q: scheme must be http or https", s)
	}
	if u.Host == "" {
		return fmt.Errorf("webhook url %q: no host", s)
	}
	if u.User != nil {
		return fmt.Errorf("webhook url %q: user info is not allowed (the body is signed instead)", s)
	}
	return nil
}

// ValidEventType reports whether a webhook may subscribe to typ.
func ValidEventType(typ string) bool {
	for _, t := range EventTypes {
		if t == typ {
			return true
		}
	}
	return false
}

func webhookQueueKey(id string, seq uint64) []byte {
	return []byte(fmt.Sprintf("%s%s/%020d", pWebhookQueue, id, seq))
}

func webhookLogKey(id string, seq uint64) []byte {
	return []byte(fmt.Sprintf("%s%s/%020d", pWebhookLog, id, seq))
}

func getWebhook(txn *badger.Txn, id string) (storedWebhook, error) {
	var w storedWebhook
	if err := getJSON(txn, nameKey(pWebhook, id), &w); err != nil {
		if errors.Is(err, ErrNotFound) {
			return w, notFound("webhook %s", id)
		}
		return w, err
	}
	return w, nil
}

func webhookCreate(txn *badger.Txn, env command.Envelope, c WebhookCreate) (any, *auditNote, error) {
	if !ValidName(c.ID) {
		return nil, nil, invalid("webhook id %q: use 1-128 letters, digits, '.', '_' or '-'", c.ID)
	}
	if err := ValidWebhookURL(c.URL); err != nil {
		return nil, nil, invalid("%v", err)
	}
	if len(c.Secret) < 16 {
		return nil, nil, invalid("webhook secret must have at least 16 characters")
	}
	for _, e := range c.Events {
		if !ValidEventType(e) {
			return nil, nil, invalid("unknown event type %q (known: %s)", e, strings.Join(EventTypes, ", "))
		}
	}
	if ok, err := exists(txn, nameKey(pWebhook, c.ID)); err != nil || ok {
		if err != nil {
			return nil, nil, err
		}
		return nil, nil, existsErr("webhook %s", c.ID)
	}
	events := c.Events
	if events == nil {
		events = []string{}
	}
	w := storedWebhook{Webhook: Webhook{ID: c.ID, URL: c.URL, Events: events, Description: c.Description,
		CreatedBy: env.Actor, CreatedAt: env.Time}, Secret: c.Secret}
	if err := putJSON(txn, nameKey(pWebhook, c.ID), w); err != nil {
		return nil, nil, err
	}
	return w.Webhook, &auditNote{"webhook.create", "webhook:" + c.ID, c.URL}, nil
}

func webhookDelete(txn *badger.Txn, c WebhookDelete) (any, *auditNote, error) {
	w, err := getWebhook(txn, c.ID)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range []string{pWebhookQueue, pWebhookLog} {
		if err := deletePrefix(txn, p+c.ID+"/"); err != nil {
			return nil, nil, err
		}
	}
	if err := txn.Delete(nameKey(pWebhook, c.ID)); err != nil {
		return nil, nil, err
	}
	return w.Webhook, &auditNote{"webhook.delete", "webhook:" + c.ID, ""}, nil
}

func deletePrefix(txn *badger.Txn, prefix string) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
	var keys [][]byte
	for it.Rewind(); it.Valid(); it.Next() {
		keys = append(keys, it.Item().KeyCopy(nil))
	}
	it.Close()
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func webhookTest(txn *badger.Txn, env command.Envelope, c WebhookTest) (any, *auditNote, error) {
	w, err := getWebhook(txn, c.ID)
	if err != nil {
		return nil, nil, err
	}
	data, _ := json.Marshal(map[string]string{"webhook": c.ID, "requested_by": env.Actor})
	ev, seq, err := newEvent(txn, env, EventTest, "webhook:"+c.ID, data)
	if err != nil {
		return nil, nil, err
	}
	d := WebhookDelivery{Webhook: w.ID, Seq: seq, Event: ev}
	if err := enqueue(txn, &w, d); err != nil {
		return nil, nil, err
	}
	return d, nil, nil
}

func webhookAttempt(txn *badger.Txn, env command.Envelope, c WebhookAttempt) (any, *auditNote, error) {
	w, err := getWebhook(txn, c.Webhook)
	if errors.Is(err, ErrNotFound) {
		return map[string]bool{"applied": false}, nil, nil // removed meanwhile
	}
	if err != nil {
		return nil, nil, err
	}
	var d WebhookDelivery
	key := webhookQueueKey(c.Webhook, c.Seq)
	if err := getJSON(txn, key, &d); errors.Is(err, ErrNotFound) {
		return map[string]bool{"applied": false}, nil, nil // already settled
	} else if err != nil {
		return nil, nil, err
	}
	if c.Attempt <= d.Attempts {
		return map[string]bool{"applied": false}, nil, nil // a repeat
	}
	outcome := OutcomeRetrying
	switch {
	case c.Delivered:
		outcome = OutcomeDelivered
		w.Delivered++
	case c.GiveUp:
		outcome = OutcomeFailed
		w.Failed++
	}
	if outcome == OutcomeRetrying {
		d.Attempts, d.LastAttemptAt, d.LastError = c.Attempt, env.Time, attemptError(c)
		if err := putJSON(txn, key, d); err != nil {
			return nil, nil, err
		}
	} else {
		if err := txn.Delete(key); err != nil {
			return nil, nil, err
		}
		w.Pending--
	}
	w.LogSeq++
	e := WebhookLogEntry{Seq: w.LogSeq, Webhook: w.ID, EventID: d.Event.ID, EventType: d.Event.Type, Attempt: c.Attempt,
		At: env.Time, Status: c.Status, Error: c.Error, DurationMS: c.DurationMS, Outcome: outcome, Node: c.Node}
	if err := putJSON(txn, webhookLogKey(w.ID, w.LogSeq), e); err != nil {
		return nil, nil, err
	}
	if w.LogSeq > WebhookLogKeep {
		if err := txn.Delete(webhookLogKey(w.ID, w.LogSeq-WebhookLogKeep)); err != nil {
			return nil, nil, err
		}
	}
	if err := putJSON(txn, nameKey(pWebhook, w.ID), w); err != nil {
		return nil, nil, err
	}
	return e, nil, nil
}

func attemptError(c WebhookAttempt) string {
	if c.Error != "" {
		return c.Error
	}
	if c.Status != 0 {
		return fmt.Sprintf("HTTP %d", c.Status)
	}
	return ""
}

// newEvent numbers a new event. The id is the command's time and the event's sequence number:
// the same on every node, unique within a hub's history.
func newEvent(txn *badger.Txn, env command.Envelope, typ, subject string, data json.RawMessage) (WebhookEvent, uint64, error) {
	var seq uint64
	if err := getJSON(txn, []byte(kWebhookSeq), &seq); err != nil && !errors.Is(err, ErrNotFound) {
		return WebhookEvent{}, 0, err
	}
	seq++
	if err := putJSON(txn, []byte(kWebhookSeq), seq); err != nil {
		return WebhookEvent{}, 0, err
	}
	return WebhookEvent{ID: fmt.Sprintf("%d-%d", env.Time, seq), Type: typ, Subject: subject, Time: env.Time, Data: data}, seq, nil
}

func enqueue(txn *badger.Txn, w *storedWebhook, d WebhookDelivery) error {
	if err := putJSON(txn, webhookQueueKey(w.ID, d.Seq), d); err != nil {
		return err
	}
	w.Pending++
	return putJSON(txn, nameKey(pWebhook, w.ID), *w)
}

// webhooks returns every registered webhook (few: read in full).
func webhooks(txn *badger.Txn) ([]storedWebhook, error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pWebhook), PrefetchValues: true, PrefetchSize: 16})
	defer it.Close()
	var out []storedWebhook
	for it.Rewind(); it.Valid(); it.Next() {
		var w storedWebhook
		if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &w) }); err != nil {
			return nil, fmt.Errorf("decode %s: %w", it.Item().Key(), err)
		}
		out = append(out, w)
	}
	return out, nil
}

// publish queues an event for every webhook that wants it. Nothing is numbered when no webhook
// wants the event.
func publish(txn *badger.Txn, env command.Envelope, hooks []storedWebhook, typ, subject string, body any) error {
	var wanted []int
	for i, w := range hooks {
		if w.Wants(typ) {
			wanted = append(wanted, i)
		}
	}
	if len(wanted) == 0 {
		return nil
	}
	data, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode %s event: %w", typ, err)
	}
	ev, seq, err := newEvent(txn, env, typ, subject, data)
	if err != nil {
		return err
	}
	for _, i := range wanted {
		if err := enqueue(txn, &hooks[i], WebhookDelivery{Webhook: hooks[i].ID, Seq: seq, Event: ev}); err != nil {
			return err
		}
	}
	return nil
}
