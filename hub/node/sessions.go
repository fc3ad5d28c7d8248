package node

import (
	"context"

	"github.com/driftline/driftline/hub/broker"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/store"
)

// watchCredentials keeps the embedded broker's sessions in step with the credentials in the
// replicated state, on every node (each node has its own broker), from the change feed: a
// deleted API token loses its connections and sessions at once, a re-keyed device's sessions
// (made with the old token) end, and a removed
// device loses its sessions and retained topics. The Authenticator reads the same state, so the
// old credential is refused before the broker is told. sub is closed when ctx ends.
func (n *Node) watchCredentials(ctx context.Context, sub *store.Subscription) {
	defer sub.Close()
	for {
		cs, err := sub.Next(ctx)
		if err != nil {
			return
		}
		for _, c := range cs {
			ch, ok := c.Event.(state.Change)
			if !ok {
				continue
			}
			switch ch.Kind {
			case state.ChangeTokenRevoked:
				if n.broker != nil {
					n.broker.Forget(broker.Principal{Kind: broker.Viewer, ID: ch.Token}, false)
					n.broker.Forget(broker.Principal{Kind: broker.Admin, ID: ch.Token}, false)
				}
			case state.ChangeDeviceToken:
				// Not on ChangeDeviceAdded: a device created again had every session ended
				// when it was removed, and nothing authenticates as it in between; forgetting
				// it on creation raced with its first connection and could end that.
				if n.broker != nil {
					n.broker.Forget(broker.Principal{Kind: broker.Device, ID: ch.Device}, true)
				}
			case state.ChangeDeviceRemoved:
				if n.broker != nil { // its sessions and retained topics go with it
					n.broker.Forget(broker.Principal{Kind: broker.Device, ID: ch.Device}, false)
				}
				n.drift.Forget(ch.Device)
				n.predDrift.Forget(ch.Device)
			}
		}
	}
}
