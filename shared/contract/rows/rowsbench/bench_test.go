package rowsbench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/contract/rows"
	"github.com/driftline/driftline/shared/profile"
)

// cpuTime is the process's user plus system CPU time: on a shared machine it says more about
// cost than wall time (GC workers included, so allocation-heavy code pays for its garbage).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// report adds rows/s (wall) and CPU ns per row.
func report(b *testing.B, cpu0 time.Duration) {
	rows := float64(b.N) * benchRows
	b.ReportMetric(rows/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/rows, "cpu-ns/row")
}

// benchRows is the number of JSONL rows each benchmark iteration reads.
const benchRows = 10000

// benchInput returns a contract with 10 numeric and 2 string fields and benchRows JSONL rows
// that satisfy it.
func benchInput(b *testing.B) (*contract.Schema, []byte) {
	b.Helper()
	var fields bytes.Buffer
	for i := range 10 {
		fmt.Fprintf(&fields, `{"name":"x%d","type":"number","constraints":{"minimum":-1000,"maximum":1000}},`, i)
	}
	fields.WriteString(`{"name":"site","constraints":{"enum":["berlin","paris","oslo","rome"]}},`)
	fields.WriteString(`{"name":"state","constraints":{"pattern":"[a-z]+","maxLength":16}}`)
	s, err := contract.Parse([]byte(`{"fields":[` + fields.String() + `]}`))
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	sites := []string{"berlin", "paris", "oslo", "rome"}
	states := []string{"idle", "running", "cooling", "fault"}
	var data bytes.Buffer
	for range benchRows {
		data.WriteByte('{')
		for i := range 10 {
			fmt.Fprintf(&data, `"x%d":%.4f,`, i, rng.NormFloat64()*100)
		}
		fmt.Fprintf(&data, `"site":%q,"state":%q}`+"\n", sites[rng.IntN(4)], states[rng.IntN(4)])
	}
	return s, data.Bytes()
}

func profileOf(b *testing.B, s *contract.Schema) *profile.Profile {
	cols := make([]profile.Column, len(s.Fields))
	for i, f := range s.Fields {
		cols[i] = profile.Column{Name: f.Name, Kind: profile.Numeric}
		if f.Type == contract.TypeString || f.Type == contract.TypeBoolean {
			cols[i].Kind = profile.Categorical
		}
	}
	p, err := profile.New(cols)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// validateAll reads data as JSONL, validates every row and, when p is not nil, profiles the
// valid ones.
func validateAll(b *testing.B, s *contract.Schema, data []byte, p *profile.Profile) {
	r := rows.NewJSONL(bytes.NewReader(data), s)
	v := contract.NewValidator(s, contract.Options{})
	out := make([]contract.Value, len(s.Fields))
	var row contract.RawRow
	var viol []contract.Violation
	n := 0
	for {
		err := r.Next(&row)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		var ok bool
		if viol, ok = v.Validate(&row, out, viol[:0]); !ok {
			b.Fatalf("row %d: %+v", row.Num, viol)
		}
		if p != nil {
			if err := p.Add(out); err != nil {
				b.Fatal(err)
			}
		}
		n++
	}
	if n != benchRows {
		b.Fatalf("%d rows, want %d", n, benchRows)
	}
}

// BenchmarkJSONLValidate: read JSONL and validate (10 numeric and 2 string fields, with
// constraints) into typed rows.
func BenchmarkJSONLValidate(b *testing.B) {
	s, data := benchInput(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		validateAll(b, s, data, nil)
	}
	report(b, cpu0)
}

// BenchmarkJSONLValidateProfile: read, validate and profile the same rows (the agent's path).
func BenchmarkJSONLValidateProfile(b *testing.B) {
	s, data := benchInput(b)
	p := profileOf(b, s)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		validateAll(b, s, data, p)
	}
	report(b, cpu0)
}

// BenchmarkJSONLStdlibMaps is the baseline: encoding/json decoding of the same lines into
// map[string]any, without any checking.
func BenchmarkJSONLStdlibMaps(b *testing.B) {
	_, data := benchInput(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
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
	}
	report(b, cpu0)
}
