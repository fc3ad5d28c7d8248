package node

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// genCSV is an io.Reader of a synthetic sensor CSV of about size bytes, generated as it is
// read, so the test's own memory does not grow with the sample.
type genCSV struct {
	size, n int64
	i       int
	buf     []byte
}

func (g *genCSV) Read(p []byte) (int, error) {
	for len(g.buf) == 0 {
		if g.n >= g.size {
			return 0, io.EOF
		}
		if g.i == 0 {
			g.buf = []byte("ts,temp,site,ok,score\n")
		} else {
			ts, temp, site, ok := sensorRow(g.i)
			g.buf = fmt.Appendf(g.buf[:0], "%s,%g,%s,%t,0.5\n", ts, temp, site, ok)
		}
		g.i++
	}
	n := copy(p, g.buf)
	g.buf = g.buf[n:]
	g.n += int64(n)
	return n, nil
}

// TestSampleMemoryFlat streams a generated sample through the processor, with calibration (so
// the spool and second pass run too), and checks the peak heap stays far below the sample's
// size. The default is 8 MB so the test stays fast; DRIFTLINE_BIG_SAMPLE_MB=200 runs the
// 200 MB case.
func TestSampleMemoryFlat(t *testing.T) {
	mb := int64(8)
	if s := os.Getenv("DRIFTLINE_BIG_SAMPLE_MB"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 1 {
			t.Fatalf("DRIFTLINE_BIG_SAMPLE_MB=%q: want a positive number", s)
		}
		mb = v
	}
	doc := strings.Replace(sensorContract, `"fields": [`, `"x-driftline": {"drift": {"calibrate": 10000}}, "fields": [`, 1)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
			}
		}
	}()
	start := time.Now()
	res, err := processSample([]byte(doc), &genCSV{size: mb << 20}, "csv")
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	grow := int64(peak.Load()) - int64(before.HeapInuse)
	t.Logf("%d MB, %d rows in %v: peak heap in use grew by %.1f MB; notes %v", mb, res.Rows, time.Since(start), float64(grow)/(1<<20), res.Notes)
	if res.Rows < mb<<20/80 {
		t.Fatalf("only %d rows read", res.Rows)
	}
	if grow > 48<<20 {
		t.Fatalf("peak heap grew by %d MB for a %d MB sample: memory is not flat", grow>>20, mb)
	}
}
