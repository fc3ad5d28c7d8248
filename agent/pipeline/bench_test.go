package pipeline

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/procfs"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/contract/rows"
)

// benchRows is the number of JSONL rows of one benchmark iteration (one default window).
const benchRows = 10000

// benchContract has 10 numeric and 2 string fields with constraints.
func benchContract(tb testing.TB) *contract.Schema {
	var fields []string
	for i := range 10 {
		fields = append(fields, fmt.Sprintf(`{"name":"x%d","type":"number","constraints":{"minimum":-1000,"maximum":1000}}`, i))
	}
	fields = append(fields, `{"name":"site","constraints":{"enum":["berlin","paris","oslo","rome"]}}`,
		`{"name":"state","constraints":{"pattern":"[a-z]+","maxLength":16}}`)
	return mustSchema(tb, `{"fields":[`+strings.Join(fields, ",")+`]}`)
}

// benchJSONL returns n valid rows of benchContract as JSONL.
func benchJSONL(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	sites := []string{"berlin", "paris", "oslo", "rome"}
	states := []string{"idle", "running", "cooling", "fault"}
	var b bytes.Buffer
	for range n {
		b.WriteByte('{')
		for i := range 10 {
			fmt.Fprintf(&b, `"x%d":%.4f,`, i, rng.NormFloat64()*100)
		}
		fmt.Fprintf(&b, `"site":%q,"state":%q}`+"\n", sites[rng.IntN(4)], states[rng.IntN(4)])
	}
	return b.Bytes()
}

// BenchmarkIngestVsStdlib measures, in one run, the agent's whole ingestion path (JSONL read,
// validation, quarantine check, window profile, a window report every 10,000 rows) and plain
// encoding/json decoding of the same rows into maps. ratio = pipeline rows/s / stdlib rows/s
// (goal >= 1).
func BenchmarkIngestVsStdlib(b *testing.B) {
	s := benchContract(b)
	data := benchJSONL(benchRows)
	h := newHarness(b, Options{Contract: s, Window: contract.Window{Rows: benchRows, Seconds: 3600}})
	var tPipe, tStd time.Duration
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		sum, err := h.p.Ingest("bench", rows.FormatJSONL, bytes.NewReader(data))
		if err != nil || sum.ValidRows != benchRows {
			b.Fatalf("%+v %v", sum, err)
		}
		t1 := time.Now()
		sc := bufio.NewScanner(bytes.NewReader(data))
		n := 0
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != benchRows {
			b.Fatalf("%d rows", n)
		}
		tPipe += t1.Sub(t0)
		tStd += time.Since(t1)
	}
	rows := float64(b.N) * benchRows
	b.ReportMetric(rows/tPipe.Seconds(), "pipeline-rows/s")
	b.ReportMetric(rows/tStd.Seconds(), "stdlib-rows/s")
	b.ReportMetric(tStd.Seconds()/tPipe.Seconds(), "ratio")
}

// csvSizeEnv sets the CSV size (MB) of BenchmarkProfileLargeCSV; default 50.
const csvSizeEnv = "DRIFTLINE_BENCH_CSV_MB"

// calibrateEnv, when set, makes BenchmarkProfileLargeCSV calibrate on windows of that many rows.
const calibrateEnv = "DRIFTLINE_BENCH_CALIBRATE"

// childEnv makes the test binary profile one CSV and print its peak RSS (TestProfileChild).
const childEnv = "DRIFTLINE_PROFILE_CHILD"

// BenchmarkProfileLargeCSV writes a CSV of DRIFTLINE_BENCH_CSV_MB megabytes (10 numeric and 2
// string columns) and profiles it with BuildProfile in a child process, reporting the child's
// peak resident memory (VmHWM): profiling streams, so it stays flat whatever the file's size.
func BenchmarkProfileLargeCSV(b *testing.B) {
	mb := 50
	if v := os.Getenv(csvSizeEnv); v != "" {
		var err error
		if mb, err = strconv.Atoi(v); err != nil || mb < 1 {
			b.Fatalf("%s=%q", csvSizeEnv, v)
		}
	}
	path := filepath.Join(b.TempDir(), "big.csv")
	writeBigCSV(b, path, int64(mb)<<20)
	for b.Loop() {
		cmd := exec.Command(os.Args[0], "-test.run=^TestProfileChild$")
		cmd.Env = append(os.Environ(), childEnv+"="+path)
		t0 := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("child: %v\n%s", err, out)
		}
		var peakKB, rowsN int64
		for _, line := range strings.Split(string(out), "\n") {
			if _, err := fmt.Sscanf(line, "peak_rss_kb=%d rows=%d", &peakKB, &rowsN); err == nil {
				break
			}
		}
		if peakKB == 0 {
			b.Fatalf("child printed no peak:\n%s", out)
		}
		b.ReportMetric(float64(peakKB)/1024, "peak-rss-MB")
		b.ReportMetric(float64(rowsN)/time.Since(t0).Seconds(), "rows/s")
		b.ReportMetric(float64(mb), "csv-MB")
	}
}

// TestProfileChild is the child of BenchmarkProfileLargeCSV; without its environment variable
// it does nothing.
func TestProfileChild(t *testing.T) {
	path := os.Getenv(childEnv)
	if path == "" {
		return
	}
	s := benchContract(t)
	calibrate, _ := strconv.Atoi(os.Getenv(calibrateEnv))
	p, sum, err := BuildProfile(s, path, calibrate)
	if err != nil {
		t.Fatal(err)
	}
	if sum.InvalidRows != 0 || p.Rows() != uint64(sum.Rows) {
		t.Fatalf("summary %+v", sum)
	}
	self, err := procfs.Self()
	if err == nil {
		var st procfs.ProcStatus
		if st, err = self.NewStatus(); err == nil {
			fmt.Printf("peak_rss_kb=%d rows=%d\n", st.VmHWM>>10, sum.Rows)
		}
	}
	if err != nil {
		t.Skipf("no /proc: peak RSS unavailable: %v", err)
	}
}

// writeBigCSV writes about size bytes of valid benchContract rows.
func writeBigCSV(tb testing.TB, path string, size int64) {
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintln(w, "x0,x1,x2,x3,x4,x5,x6,x7,x8,x9,site,state")
	rng := rand.New(rand.NewPCG(3, 4))
	sites := []string{"berlin", "paris", "oslo", "rome"}
	states := []string{"idle", "running", "cooling", "fault"}
	var written int64
	var line []byte
	for written < size {
		line = line[:0]
		for range 10 {
			line = strconv.AppendFloat(line, rng.NormFloat64()*100, 'f', 3, 64)
			line = append(line, ',')
		}
		line = append(line, sites[rng.IntN(4)]...)
		line = append(line, ',')
		line = append(line, states[rng.IntN(4)]...)
		line = append(line, '\n')
		n, _ := w.Write(line)
		written += int64(n)
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}
