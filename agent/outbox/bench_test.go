package outbox

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/driftline/driftline/agent/devicedb"
)

// reportPayload is a typical validation report, about 400 bytes of JSON.
var reportPayload = []byte(`{"device_id":"dev-0001","ts":1700000000123,"model":"anomaly-detector","version":3,` +
	`"rows":10000,"valid":9987,"invalid":13,"violations":{"temperature":{"maximum":9,"required":2},` +
	`"status":{"enum":2}},"window_start":1699999940000,"window_end":1700000000000,"quarantined":13,` +
	`"quarantine_evicted":0,"contract":"sha256:5f0c6b1b8c6b2b7cf0f6a1e1e0b8f0c2d3a4b5c6d7e8f90a1b2c3d4e5f60718"}`)

func benchOutbox(b *testing.B) *Outbox {
	b.Helper()
	db, err := devicedb.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	o, err := Open(db.Root().Sub("outbox"), Options{Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	return o
}

// BenchmarkEnqueue measures persisting one report (zstd + badger write) on the Edge profile.
func BenchmarkEnqueue(b *testing.B) {
	o := benchOutbox(b)
	b.SetBytes(int64(len(reportPayload)))
	b.ReportAllocs()
	for b.Loop() {
		if err := o.Enqueue("dl/v1/dev/dev-0001/validation", reportPayload, 1, false); err != nil {
			b.Fatal(err)
		}
	}
}

type countingPublisher struct{ n int }

func (p *countingPublisher) Publish(context.Context, string, []byte, byte, bool) error {
	p.n++
	return nil
}

// BenchmarkDrain measures sending a backlog after an outage: read head, decode, ack, delete.
func BenchmarkDrain(b *testing.B) {
	o := benchOutbox(b)
	for i := 0; i < b.N; i++ {
		if err := o.Enqueue(fmt.Sprintf("dl/v1/dev/dev-0001/t%d", i%4), reportPayload, 1, false); err != nil {
			b.Fatal(err)
		}
	}
	p := &countingPublisher{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ResetTimer()
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx, p) }()
	for o.Stats().Depth > 0 {
		select {
		case err := <-done:
			b.Fatal(err)
		default:
		}
		runtime.Gosched()
	}
	b.StopTimer()
	cancel()
	<-done
}
