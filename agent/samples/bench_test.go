package samples

import (
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/shared/wire"
)

// nopReporter accepts every frame.
type nopReporter struct{}

func (nopReporter) Report(wire.Kind, string, []byte) error { return nil }

// BenchmarkUpload1MiB: the agent's cost of one 1 MiB sample upload (frames cut and compressed,
// kept on disk until the ack, queued) and of its ack; b.SetBytes makes the rate MB/s of sample.
func BenchmarkUpload1MiB(b *testing.B) {
	db, err := devicedb.OpenInMemory()
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	u, err := NewUploader(UploadOptions{DeviceID: "d1", Reporter: nopReporter{}, State: db.Namespace("up"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	var payload []byte
	for i := 0; len(payload) < 1<<20; i++ {
		payload = fmt.Appendf(payload, `{"temp":%.6f,"site":"s%d"},`, float64(i)/7, i%50)
	}
	payload = payload[:1<<20]
	frames, _ := wire.DataFrames("x", payload)
	f, _ := wire.DecodeFrame(frames[0])
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		id, err := u.Upload(payload)
		if err != nil {
			b.Fatal(err)
		}
		ack, _ := wire.Encode(wire.SampleAck{Header: wire.Header{DeviceID: "d1", TS: 1}, UploadID: id, Digest: f.DigestString(), Status: wire.SampleStored})
		u.ack(ack)
	}
}
