package outputs

import (
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"testing"

	"github.com/driftline/driftline/shared/contract/rows"
	"github.com/driftline/driftline/shared/outputs"
)

// benchTracker returns a tracker with a classification output reference, windows of 10,000
// predictions, on an in-memory state database.
func benchTracker(b *testing.B) *Tracker {
	c, err := outputs.ParseContract([]byte(jsContract))
	if err != nil {
		b.Fatal(err)
	}
	var val strings.Builder
	val.WriteString("id,pred,label\n")
	for i := range 3000 {
		cl := []string{"a", "b", "c"}[i%3]
		fmt.Fprintf(&val, "v%d,%s,%s\n", i, cl, cl)
	}
	ref, err := outputs.Build(c, []byte(val.String()), rows.FormatCSV)
	if err != nil {
		b.Fatal(err)
	}
	enc, _ := ref.Encode()
	tr, err := New(Options{DeviceID: "d1", Reporter: &reporter{}, Model: model{enc}, State: testNamespace(b), Join: JoinOptions{MaxEntries: 1 << 26},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	return tr
}

func jsonl(prefix, field string, from, n int) string {
	var s strings.Builder
	for i := from; i < from+n; i++ {
		fmt.Fprintf(&s, "{\"id\":\"%s%d\",%q:%q}\n", prefix, i, field, []string{"a", "b", "c"}[i%3])
	}
	return s.String()
}

// BenchmarkPrediction is the agent's cost per prediction: validate, profile, wait in the join
// state on disk (POST /ingest batches of 1,000 JSONL rows).
func BenchmarkPrediction(b *testing.B) {
	tr := benchTracker(b)
	const batch = 1000
	bodies := make([]string, 0, b.N/batch+1)
	for i := 0; i < b.N; i += batch {
		bodies = append(bodies, jsonl("p", "pred", i, min(batch, b.N-i)))
	}
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for _, body := range bodies {
		if _, err := tr.Ingest(KindPredictions, "bench", rows.FormatJSONL, strings.NewReader(body)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportHeap(b, before)
}

// BenchmarkJoinedLabel is the agent's cost per label that joins a waiting prediction and is
// scored (the predictions are ingested outside the timer).
func BenchmarkJoinedLabel(b *testing.B) {
	tr := benchTracker(b)
	const batch = 1000
	for i := 0; i < b.N; i += batch {
		if _, err := tr.Ingest(KindPredictions, "bench", rows.FormatJSONL, strings.NewReader(jsonl("p", "pred", i, min(batch, b.N-i)))); err != nil {
			b.Fatal(err)
		}
	}
	bodies := make([]string, 0, b.N/batch+1)
	for i := 0; i < b.N; i += batch {
		bodies = append(bodies, jsonl("p", "label", i, min(batch, b.N-i)))
	}
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for _, body := range bodies {
		if _, err := tr.Ingest(KindLabels, "bench", rows.FormatJSONL, strings.NewReader(body)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if st := tr.JoinStats(); st.Joined != int64(b.N) {
		b.Fatalf("joined %d of %d", st.Joined, b.N)
	}
	reportHeap(b, before)
}

// reportHeap adds the live heap growth per operation (after a GC) to the benchmark's output.
func reportHeap(b *testing.B, before runtime.MemStats) {
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grow := float64(int64(after.HeapAlloc) - int64(before.HeapAlloc))
	b.ReportMetric(grow/float64(b.N), "live-B/op")
}
