package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/node/nodetest"
)

// BenchmarkEnroll enrols 300 devices on a one-node hub, as fleet mode does before its agents
// connect (bench-fleet counts it in "all online"): devices enrolled per second.
func BenchmarkEnroll(b *testing.B) {
	const devices = 300
	h := nodetest.Start(b)
	hc := newHubClient(h.URL(), h.Token)
	var total time.Duration
	for n := range b.N {
		ids := make([]string, devices)
		for i := range ids {
			ids[i] = fmt.Sprintf("enroll-%d-%04d", n, i)
		}
		store, err := openCredStore(filepath.Join(b.TempDir(), CredentialsFile))
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		out, err := enroll(context.Background(), hc, store, ids, nil, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		total += time.Since(t0)
		for i, c := range out {
			if c.ID != ids[i] || c.Token == "" {
				b.Fatalf("credential %d: %+v, want %s with a token", i, c, ids[i])
			}
		}
	}
	b.ReportMetric(float64(devices*b.N)/total.Seconds(), "devices/s")
}
