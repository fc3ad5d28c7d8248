package profile

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/driftline/driftline/shared/contract"
)

// benchCols is the benchmark shape: 10 numeric and 2 string columns.
func benchCols() []Column {
	cols := make([]Column, 0, 12)
	for i := range 10 {
		cols = append(cols, Column{Name: "f" + strconv.Itoa(i), Kind: Numeric})
	}
	return append(cols, Column{Name: "site", Kind: Categorical}, Column{Name: "state", Kind: Categorical})
}

func benchRows(n int) ([][]contract.Value, [][]byte) {
	r := rand.New(rand.NewPCG(42, 42))
	cols := benchCols()
	rows := make([][]contract.Value, n)
	lines := make([][]byte, n)
	sites := make([]string, 50)
	for i := range sites {
		sites[i] = "site-" + strconv.Itoa(i)
	}
	states := []string{"idle", "run", "fault"}
	for i := range rows {
		row := make([]contract.Value, len(cols))
		obj := make(map[string]any, len(cols))
		for c := range 10 {
			x := r.NormFloat64()*10 + float64(c)
			row[c] = contract.Value{Kind: contract.KindNumber, Num: x}
			obj[cols[c].Name] = x
		}
		row[10] = contract.Value{Kind: contract.KindString, Str: sites[r.IntN(len(sites))]}
		row[11] = contract.Value{Kind: contract.KindString, Str: states[r.IntN(len(states))]}
		obj["site"], obj["state"] = row[10].Str, row[11].Str
		rows[i] = row
		lines[i], _ = json.Marshal(obj)
	}
	return rows, lines
}

// BenchmarkAdd measures profiling throughput of typed rows (10 numeric + 2 string columns).
func BenchmarkAdd(b *testing.B) {
	rows, _ := benchRows(8192)
	p, err := New(benchCols())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := p.Add(rows[i%len(rows)]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkJSONDecode is the yardstick: plain encoding/json decoding of the same rows into maps.
func BenchmarkJSONDecode(b *testing.B) {
	_, lines := benchRows(8192)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		var m map[string]any
		if err := json.Unmarshal(lines[i%len(lines)], &m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

func benchProfile(b *testing.B, rows [][]contract.Value) *Profile {
	p, err := New(benchCols())
	if err != nil {
		b.Fatal(err)
	}
	for _, row := range rows {
		if err := p.Add(row); err != nil {
			b.Fatal(err)
		}
	}
	return p
}

// BenchmarkMerge measures merging one 10,000-row window into a fleet aggregate.
func BenchmarkMerge(b *testing.B) {
	rows, _ := benchRows(10000)
	window := benchProfile(b, rows)
	agg := benchProfile(b, rows)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := agg.Merge(window); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncode measures encoding and reports the encoded size per feature.
func BenchmarkEncode(b *testing.B) {
	for _, n := range []int{100, 10000, 100000} {
		b.Run(strconv.Itoa(n)+"rows", func(b *testing.B) {
			rows, _ := benchRows(n)
			p := benchProfile(b, rows)
			var size int
			b.ResetTimer()
			for range b.N {
				size = len(p.Encode())
			}
			b.ReportMetric(float64(size)/float64(p.Len()), "bytes/feature")
		})
	}
}

// BenchmarkDecode measures decoding a 10,000-row window profile.
func BenchmarkDecode(b *testing.B) {
	rows, _ := benchRows(10000)
	enc := benchProfile(b, rows).Encode()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := Decode(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCDF computes a 10,000-value sketch's CDF (what fleet drift does for every device
// window): merge is cdfOf, sort the definition (every value with its weight, sorted), which
// CDF was before.
func BenchmarkCDF(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	q := newQuantiles(DefaultQuantileK)
	for range 10000 {
		q.add(r.NormFloat64())
	}
	b.Run("merge", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			_ = q.cdfOf()
		}
	})
	b.Run("sort", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			_ = cdfBySort(q)
		}
	})
}
