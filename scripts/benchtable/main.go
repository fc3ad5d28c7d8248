// Command benchtable reads `go test -bench` output on stdin and prints one Markdown table: the
// package, the benchmark and every metric it reported (ns/op, B/op, custom metrics such as
// writes/s or ratio). `make bench` pipes every benchmark run through it.
package main

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strings"
)

type row struct {
	pkg, name string
	metrics   map[string]string
	order     []string
}

func main() {
	var (
		rows []row
		pkg  string
		fail bool
	)
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "pkg: "):
			pkg = strings.TrimPrefix(line, "pkg: ")
		case strings.HasPrefix(line, "FAIL"), strings.HasPrefix(line, "--- FAIL"), strings.HasPrefix(line, "panic:"):
			fail = true
			fmt.Fprintln(os.Stderr, line)
		case strings.HasPrefix(line, "Benchmark"):
			f := strings.Fields(line)
			if len(f) < 4 {
				continue
			}
			r := row{pkg: strings.TrimPrefix(pkg, "github.com/driftline/driftline/"), name: trimProcs(f[0]), metrics: map[string]string{}}
			for i := 2; i+1 < len(f); i += 2 {
				r.metrics[f[i+1]] = f[i]
				r.order = append(r.order, f[i+1])
			}
			rows = append(rows, r)
		}
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].pkg < rows[j].pkg })
	fmt.Println("| package | benchmark | results |")
	fmt.Println("| --- | --- | --- |")
	for _, r := range rows {
		var parts []string
		for _, k := range r.order {
			parts = append(parts, r.metrics[k]+" "+k)
		}
		fmt.Printf("| %s | %s | %s |\n", r.pkg, r.name, strings.Join(parts, ", "))
	}
	if fail {
		fmt.Fprintln(os.Stderr, "benchtable: some benchmarks failed (see above)")
		os.Exit(1)
	}
}

// trimProcs drops the -GOMAXPROCS suffix go test adds to benchmark names.
func trimProcs(name string) string {
	if i := strings.LastIndex(name, "-"); i > 0 && strings.Trim(name[i+1:], "0123456789") == "" {
		return name[:i]
	}
	return name
}
