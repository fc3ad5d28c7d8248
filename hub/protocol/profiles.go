package protocol

import "github.com/driftline/driftline/shared/wire"

// SubscribeProfiles routes every device's binary window profile (PREFIX/dev/+/profile) to
// observe with the device id its topic names; the broker's ACL vouches that the device
// published it. observe runs on the transport's goroutine and must not block: pass the fleet
// drift service's Enqueue, which queues the message for its own worker. A message on a topic
// that does not parse as a profile topic is dropped.
func SubscribeProfiles(t Transport, topics wire.Topics, observe func(deviceID string, payload []byte) bool) error {
	return t.Subscribe(topics.AllDevices(wire.KindProfile), func(topic string, payload []byte) {
		kind, id, _, err := topics.Parse(topic)
		if err != nil || kind != wire.KindProfile {
			return
		}
		observe(id, payload)
	})
}
