package samples

import (
	"fmt"
	"testing"

	"github.com/driftline/driftline/shared/wire"
)

// BenchmarkAssemble1MiB: the hub's cost of receiving one 1 MiB sample upload (frames decoded,
// decompressed, collected and the whole hashed), before staging.
func BenchmarkAssemble1MiB(b *testing.B) {
	var payload []byte
	for i := 0; len(payload) < 1<<20; i++ {
		payload = fmt.Appendf(payload, `{"temp":%.6f,"site":"s%d"},`, float64(i)/7, i%50)
	}
	payload = payload[:1<<20]
	c := New(Config{Queue: 1})
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer() // the agent compresses; the hub's share starts at the frames
		frames, err := wire.DataFrames(fmt.Sprintf("s-%d", i), payload)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for _, fr := range frames {
			c.HandlePart("d1", fr)
		}
		<-c.queue
	}
}
