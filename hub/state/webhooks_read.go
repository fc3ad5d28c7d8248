package state

import (
	"encoding/json"

	"github.com/dgraph-io/badger/v4"
)

// Webhooks lists webhooks by id, without their secrets.
func (r Reader) Webhooks(cursor string, limit int) (Page[Webhook], error) {
	p, err := list[storedWebhook](r.DB, pWebhook, cursor, limit, false, nil)
	out := Page[Webhook]{Items: make([]Webhook, 0, len(p.Items)), NextCursor: p.NextCursor}
	for _, w := range p.Items {
		out.Items = append(out.Items, w.Webhook)
	}
	return out, err
}

// Webhook returns one webhook, without its secret.
func (r Reader) Webhook(id string) (Webhook, error) {
	w, err := get[storedWebhook](r.DB, nameKey(pWebhook, id), "webhook "+id)
	return w.Webhook, err
}

// WebhookSecret returns the secret a webhook's deliveries are signed with.
func (r Reader) WebhookSecret(id string) (string, error) {
	w, err := get[storedWebhook](r.DB, nameKey(pWebhook, id), "webhook "+id)
	return w.Secret, err
}

// NextDelivery returns the oldest pending delivery of a webhook; ok is false when none is pending.
func (r Reader) NextDelivery(id string) (d WebhookDelivery, ok bool, err error) {
	err = r.DB.View(func(txn *badger.Txn) error {
		prefix := []byte(pWebhookQueue + id + "/")
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: false})
		defer it.Close()
		it.Rewind()
		if !it.Valid() {
			return nil
		}
		ok = true
		return it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &d) })
	})
	return d, ok, err
}

// PendingDeliveries lists a webhook's pending deliveries, oldest first.
func (r Reader) PendingDeliveries(id, cursor string, limit int) (Page[WebhookDelivery], error) {
	return list[WebhookDelivery](r.DB, pWebhookQueue+id+"/", cursor, limit, false, nil)
}

// WebhookLog lists a webhook's delivery log, newest first (the last WebhookLogKeep attempts).
func (r Reader) WebhookLog(id, cursor string, limit int) (Page[WebhookLogEntry], error) {
	return list[WebhookLogEntry](r.DB, pWebhookLog+id+"/", cursor, limit, true, nil)
}
