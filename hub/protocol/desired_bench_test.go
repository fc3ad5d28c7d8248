package protocol

import (
	"testing"
	"time"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/keys"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/hub/state/statetest"
	"github.com/driftline/driftline/shared/wire"
)

// BenchmarkBuildDesired measures the hub's cost of one device's signed desired state (one model):
// the reads, the ed25519 signature and the JSON encoding. A wave of 10,000 devices costs 10,000
// times this; a refresh of the whole fleet (every TTL/2) the same.
func BenchmarkBuildDesired(b *testing.B) {
	st := statetest.New(b)
	st.ApprovedModel(b, "m", 1)
	st.Must(b, command.TypeDeviceCreate, state.DeviceCreate{ID: "d1", TokenHash: "h"})
	st.Must(b, command.TypeDeviceDesiredSet, state.DeviceDesiredSet{ID: "d1", Model: "m", Version: 1})
	setTrust(b, st)
	src := &keys.Source{R: st.Reader()}
	d, err := st.Reader().Device("d1")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("build+sign+encode", func(b *testing.B) {
		for b.Loop() {
			cur, err := src.Current()
			if err != nil {
				b.Fatal(err)
			}
			msg, err := BuildDesired(st.Reader(), d, cur, time.Now(), time.Hour)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := wire.Encode(msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	cur, _ := src.Current()
	msg, _ := BuildDesired(st.Reader(), d, cur, time.Now(), time.Hour)
	b.Run("sign only", func(b *testing.B) {
		for b.Loop() {
			msg.Sign(cur.Key)
		}
	})
}
