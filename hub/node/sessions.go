package node

import (
	"context"
	"errors"
	"strings"

	"github.com/dgraph-io/badger/v4/pb"

	"github.com/driftline/driftline/hub/broker"
)

// Key prefixes of credentials in the replicated state (hub/state's layout): an API token's
// record, and a device token's hash -> device id.
const (
	tokenPrefix       = "fsm/tok/"
	deviceTokenPrefix = "fsm/devtok/"
)

// watchCredentials keeps the embedded broker's sessions in step with the credentials in the
// replicated state, on every node (each node has its own broker): a deleted API token loses
// its connections and sessions at once, and a device token written (a device created again or
// re-keyed) ends every session of that device made with the old one. Deleted devices are
// handled where the protocol service notices them (OnDeviceRemoved). The Authenticator reads
// the same state, so the old credential is refused before the broker is told.
func (n *Node) watchCredentials(ctx context.Context) {
	if n.broker == nil {
		return
	}
	err := n.db.Subscribe(ctx, func(kvs *pb.KVList) error {
		for _, kv := range kvs.Kv {
			key := string(kv.Key)
			switch {
			case strings.HasPrefix(key, tokenPrefix) && len(kv.Value) == 0: // deleted
				id := strings.TrimPrefix(key, tokenPrefix)
				n.broker.Forget(broker.Principal{Kind: broker.Viewer, ID: id}, false)
				n.broker.Forget(broker.Principal{Kind: broker.Admin, ID: id}, false)
			case strings.HasPrefix(key, deviceTokenPrefix) && len(kv.Value) > 0: // a new device token
				n.broker.Forget(broker.Principal{Kind: broker.Device, ID: string(kv.Value)}, true)
			}
		}
		return nil
	}, []pb.Match{{Prefix: []byte(tokenPrefix)}, {Prefix: []byte(deviceTokenPrefix)}})
	if err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
		n.log.Error("watch credentials", "err", err)
	}
}
