package broker

import (
	"fmt"
	"sync"
	"testing"
)

// TestRetainedPublishBesideWildcardSubscribe: mochi 2.7.9 reads a topic's retained path
// without a lock when a wildcard subscription collects the retained messages it matches, while
// a retained publish writes it under the topic's lock (mochi-mqtt/server#200). The hub's own
// wildcard subscriptions (made at start, while the desired publisher already publishes) and its
// retained publishes go through the Broker, which serialises them; under -race this test
// fails without that.
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
