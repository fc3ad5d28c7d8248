package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Keys of the broker's state in the hub's badger database. A subscription key separates the
// client id from the filter with NUL, which MQTT strings cannot contain, so the subscriptions of
// client "a" are never confused with those of client "a:b".
const (
	keyPrefix   = "broker/"
	keyRetained = keyPrefix + "ret/" // + topic -> storage.Message
	keyClient   = keyPrefix + "cli/" // + client id -> storage.Client
	keySub      = keyPrefix + "sub/" // + client id + "\x00" + filter -> storage.Subscription
)

// storeHook keeps persistent sessions (client records and their granted subscriptions) in the
// hub's one badger database, and, for retainHook, the retained messages, so they survive a hub
// restart. It does not own the database: Stop leaves it open. In-flight QoS messages are not
// stored (see DESIGN.md). Retained messages are not handed to mochi (StoredRetainedMessages):
// they live in the broker's retainedStore, which loadRetained fills at start.
type storeHook struct {
	mqtt.HookBase
	db      *badger.DB
	log     *slog.Logger
	stopped atomic.Bool
}

// ID names the hook for mochi's logs.
func (h *storeHook) ID() string { return "driftline-badger-store" }

// Provides lists the callbacks the hook implements.
func (h *storeHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnClientExpired,
		mqtt.OnSubscribed, mqtt.OnUnsubscribed,
		mqtt.StoredClients, mqtt.StoredSubscriptions:
		return true
	}
	return false
}

// Stop makes every later callback a no-op; the database stays open, it is the hub's.
func (h *storeHook) Stop() error {
	h.stopped.Store(true)
	return nil
}

// persistent reports whether cl's session outlives its connection, the only case worth storing.
func persistent(cl *mqtt.Client) bool {
	if cl.Net.Inline {
		return false
	}
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

// OnSessionEstablished stores the client record of a persistent session. A clean start discards
// whatever an earlier session with this client id left, as mochi does in memory.
func (h *storeHook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	if h.stopped.Load() || cl.Net.Inline {
		return
	}
	if pk.Connect.Clean {
		h.deleteClient(cl.ID)
	}
	if !persistent(cl) {
		return
	}
	props := cl.Properties.Props.Copy(false)
	rec := storage.Client{
		ID:              cl.ID,
		T:               storage.ClientKey,
		Remote:          cl.Net.Remote,
		Listener:        cl.Net.Listener,
		Username:        cl.Properties.Username,
		Clean:           cl.Properties.Clean,
		ProtocolVersion: cl.Properties.ProtocolVersion,
		Properties: storage.ClientProperties{
			SessionExpiryInterval:     props.SessionExpiryInterval,
			SessionExpiryIntervalFlag: props.SessionExpiryIntervalFlag,
			AuthenticationMethod:      props.AuthenticationMethod,
			AuthenticationData:        props.AuthenticationData,
			RequestProblemInfo:        props.RequestProblemInfo,
			RequestProblemInfoFlag:    props.RequestProblemInfoFlag,
			RequestResponseInfo:       props.RequestResponseInfo,
			ReceiveMaximum:            props.ReceiveMaximum,
			TopicAliasMaximum:         props.TopicAliasMaximum,
			User:                      props.User,
			MaximumPacketSize:         props.MaximumPacketSize,
		},
		Will: storage.ClientWill(cl.Properties.Will),
	}
	h.set(keyClient+cl.ID, rec)
}

// OnDisconnect deletes a session that ends with its connection, unless another connection took
// it over (the new one owns the stored state then).
func (h *storeHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if h.stopped.Load() || cl.Net.Inline || !expire || errors.Is(cl.StopCause(), packets.ErrSessionTakenOver) {
		return
	}
	h.deleteClient(cl.ID)
}

// OnClientExpired deletes a persistent session that expired.
func (h *storeHook) OnClientExpired(cl *mqtt.Client) {
	if h.stopped.Load() || cl.Net.Inline {
		return
	}
	h.deleteClient(cl.ID)
}

// OnSubscribed stores the granted subscriptions of a persistent session.
func (h *storeHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if h.stopped.Load() || !persistent(cl) {
		return
	}
	for i, f := range pk.Filters {
		if i >= len(codes) || codes[i] > packets.CodeGrantedQos2.Code {
			continue // refused: nothing to restore
		}
		h.set(subKey(cl.ID, f.Filter), storage.Subscription{
			ID:                subKey(cl.ID, f.Filter),
			T:                 storage.SubscriptionKey,
			Client:            cl.ID,
			Filter:            f.Filter,
			Qos:               codes[i],
			Identifier:        f.Identifier,
			NoLocal:           f.NoLocal,
			RetainHandling:    f.RetainHandling,
			RetainAsPublished: f.RetainAsPublished,
		})
	}
}

// OnUnsubscribed deletes the stored subscriptions of a persistent session.
func (h *storeHook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if h.stopped.Load() || !persistent(cl) {
		return
	}
	for _, f := range pk.Filters {
		h.del(subKey(cl.ID, f.Filter))
	}
}

// saveRetained stores a retained message (retainHook calls it; an empty payload is
// deleteRetained's).
func (h *storeHook) saveRetained(pk packets.Packet) {
	if h.stopped.Load() {
		return
	}
	props := pk.Properties.Copy(false)
	h.set(keyRetained+pk.TopicName, storage.Message{
		ID:          keyRetained + pk.TopicName,
		T:           storage.RetainedKey,
		FixedHeader: pk.FixedHeader,
		TopicName:   pk.TopicName,
		Payload:     pk.Payload,
		Created:     pk.Created,
		Client:      pk.Origin,
		Origin:      pk.Origin,
		Properties: storage.MessageProperties{
			PayloadFormat:         props.PayloadFormat,
			PayloadFormatFlag:     props.PayloadFormatFlag,
			MessageExpiryInterval: props.MessageExpiryInterval,
			ContentType:           props.ContentType,
			ResponseTopic:         props.ResponseTopic,
			CorrelationData:       props.CorrelationData,
			User:                  props.User,
		},
	})
}

// deleteRetained deletes a stored retained message (cleared or expired).
func (h *storeHook) deleteRetained(topic string) {
	if !h.stopped.Load() {
		h.del(keyRetained + topic)
	}
}

// StoredClients returns the stored persistent sessions for mochi to restore at Serve.
func (h *storeHook) StoredClients() ([]storage.Client, error) {
	var out []storage.Client
	err := h.scan(keyClient, func(k, v []byte) error {
		var c storage.Client
		if err := c.UnmarshalBinary(v); err != nil {
			h.skip(k, err)
			return nil
		}
		out = append(out, c)
		return nil
	})
	return out, err
}

// StoredSubscriptions returns the stored subscriptions of persistent sessions.
func (h *storeHook) StoredSubscriptions() ([]storage.Subscription, error) {
	var out []storage.Subscription
	err := h.scan(keySub, func(k, v []byte) error {
		var s storage.Subscription
		if err := s.UnmarshalBinary(v); err != nil {
			h.skip(k, err)
			return nil
		}
		out = append(out, s)
		return nil
	})
	return out, err
}

// loadRetained returns the stored retained messages (the records mochi's own
// OnRetainMessage path wrote before retainHook took over have the same form).
func (h *storeHook) loadRetained() ([]storage.Message, error) {
	var out []storage.Message
	err := h.scan(keyRetained, func(k, v []byte) error {
		var m storage.Message
		if err := m.UnmarshalBinary(v); err != nil {
			h.skip(k, err)
			return nil
		}
		out = append(out, m)
		return nil
	})
	return out, err
}

// skip logs a record that does not decode; it is left out rather than stopping the hub's start.
func (h *storeHook) skip(key []byte, err error) {
	h.log.Warn("broker store: skipping undecodable record", "key", string(key), "err", err)
}

func subKey(clientID, filter string) string { return keySub + clientID + "\x00" + filter }

// set writes one record; a failure is logged, since a hook callback cannot return it.
func (h *storeHook) set(key string, v interface{ MarshalBinary() ([]byte, error) }) {
	data, err := v.MarshalBinary()
	if err == nil {
		err = h.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(key), data) })
	}
	if err != nil {
		h.log.Warn("broker store write", "key", key, "err", err)
	}
}

// del deletes one record; a failure is logged.
func (h *storeHook) del(key string) {
	if err := h.db.Update(func(txn *badger.Txn) error { return txn.Delete([]byte(key)) }); err != nil {
		h.log.Warn("broker store delete", "key", key, "err", err)
	}
}

// deleteClient deletes a client record and all its subscriptions in one transaction. It looks
// first and writes only when there is something to delete: clean-session clients, the common
// case, would otherwise cost a synchronous write at every connect and disconnect.
func (h *storeHook) deleteClient(clientID string) {
	var keys [][]byte
	err := h.db.View(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte(keyClient + clientID)); err == nil {
			keys = append(keys, []byte(keyClient+clientID))
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(keySub + clientID + "\x00")})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		return nil
	})
	if err == nil && len(keys) > 0 {
		err = h.db.Update(func(txn *badger.Txn) error {
			for _, k := range keys {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		h.log.Warn("broker store delete client", "client", clientID, "err", err)
	}
}

// scan calls fn with each key and value under prefix.
func (h *storeHook) scan(prefix string, fn func(k, v []byte) error) error {
	err := h.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix), PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if err := fn(item.Key(), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("broker store scan %s: %w", prefix, err)
	}
	return nil
}
