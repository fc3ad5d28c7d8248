package broker

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/kv"
	paho "github.com/eclipse/paho.mqtt.golang"
)

// storedKeys lists the broker's keys in db, NUL shown as '|'.
func storedKeys(t *testing.T, db *badger.DB) []string {
	t.Helper()
	var keys []string
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(keyPrefix)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, strings.ReplaceAll(string(it.Item().Key()), "\x00", "|"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	return keys
}

func equalKeys(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestStoreKeepsOnlyWhatARestartNeeds(t *testing.T) {
	db, err := kv.Open("", kv.Test)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	b := startBroker(t, Config{DB: db})
	waitKeys := func(what string, want []string) {
		t.Helper()
		var got []string
		testhelp.WaitFor(t, 5*time.Second, what, func() bool {
			got = storedKeys(t, db)
			return equalKeys(got, want)
		})
	}

	// A clean-session client, the hub's inline subscription: nothing stored.
	if err := b.Subscribe("dl/v1/dev/+/status", func(string, []byte) {}); err != nil {
		t.Fatal(err)
	}
	clean := mustConnect(t, clientOpts(b.url, cid(userDevA, "clean"), userDevA))
	subscribe(t, clean, "dl/v1/dev/dev-a/desired", 1, func(paho.Client, paho.Message) {})
	clean.Disconnect(50)

	// A persistent session: its record and its granted subscription, not the refused one.
	sess := mustConnect(t, clientOpts(b.url, cid(userDevA, "agent"), userDevA).SetCleanSession(false))
	subscribe(t, sess, "dl/v1/dev/dev-a/chunk", 1, func(paho.Client, paho.Message) {})
	if code := subscribe(t, sess, "dl/v1/dev/dev-b/#", 1, func(paho.Client, paho.Message) {}); code != 0x80 {
		t.Fatalf("cross-device subscription granted %#x", code)
	}
	if err := b.Publish("dl/v1/dev/dev-a/desired", []byte("x"), true, 1); err != nil {
		t.Fatal(err)
	}
	waitKeys("persistent session stored", []string{
		"broker/cli/dev-a:agent",
		"broker/ret/dl/v1/dev/dev-a/desired",
		"broker/sub/dev-a:agent|dl/v1/dev/dev-a/chunk",
	})

	// Unsubscribing and clearing the retained state delete their records.
	if tok := sess.Unsubscribe("dl/v1/dev/dev-a/chunk"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("unsubscribe: %v", tok.Error())
	}
	if err := b.Publish("dl/v1/dev/dev-a/desired", nil, true, 1); err != nil {
		t.Fatal(err)
	}
	waitKeys("unsubscribe and cleared retained deleted", []string{"broker/cli/dev-a:agent"})

	// A clean start with the same client id discards the stored session.
	subscribe(t, sess, "dl/v1/dev/dev-a/fetch", 1, func(paho.Client, paho.Message) {})
	sess.Disconnect(50)
	again := mustConnect(t, clientOpts(b.url, cid(userDevA, "agent"), userDevA))
	waitKeys("clean start discarded the session", nil)
	again.Disconnect(50)
}
