package broker

import (
	"fmt"
	"sync"
	"testing"
)

// TestRetainedPublishBesideWildcardSubscribe: the hub's own wildcard subscriptions (made at
// start, while the desired publisher already publishes) beside its retained publishes and
// clearings. Mochi 2.7.9 read a topic's retained path without a lock when a wildcard
// subscription collected the retained messages it matches, while a retained publish wrote it
// (mochi-mqtt/server#200); the Broker serialised the two with a mutex. Retained messages now
// live in the broker's own locked store (retainHook) and mochi's retained index is never
// written, so no mutex is needed, for the hub or for clients (TestRetainedSubscribeRacesPublish);
// under -race this test keeps it that way.
func TestRetainedPublishBesideWildcardSubscribe(t *testing.T) {
	b := startBroker(t, Config{})
	const rounds = 200
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < rounds; i++ {
			topic := fmt.Sprintf("dl/v1/dev/dev-%d/desired", i%4)
			if err := b.Publish(topic, []byte(`{"rev":1}`), true, 1); err != nil {
				t.Error(err)
				return
			}
			if err := b.Publish(topic, nil, true, 1); err != nil { // cleared: the path is emptied
				t.Error(err)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < rounds; i++ {
			if err := b.Subscribe("dl/v1/dev/+/desired", func(string, []byte) {}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	wg.Wait()
}
