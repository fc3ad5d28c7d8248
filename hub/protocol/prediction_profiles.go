package protocol

import "github.com/driftline/driftline/shared/wire"

// SubscribePredictionProfiles routes every device's binary prediction profile
// (PREFIX/dev/+/prediction_profile, one per output window) to observe with the device id its
// topic names, as SubscribeProfiles does for input profiles: pass the fleet prediction drift
// service's Enqueue.
func SubscribePredictionProfiles(t Transport, topics wire.Topics, observe func(deviceID string, payload []byte) bool) error {
	return t.Subscribe(topics.AllDevices(wire.KindPredictionProfile), func(topic string, payload []byte) {
		kind, id, _, err := topics.Parse(topic)
		if err != nil || kind != wire.KindPredictionProfile {
			return
		}
		observe(id, payload)
	})
}
