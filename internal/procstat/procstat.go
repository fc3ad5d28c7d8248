// Package procstat reads another process's CPU time and memory from /proc, for the benchmarks
// that measure the hub, the agent and the fleet process from outside. Where /proc is missing
// (or the process is gone) the figures are zero.
package procstat

import (
	"time"

	"github.com/prometheus/procfs"
)

// CPU returns the user and system CPU time process pid has used.
func CPU(pid int) time.Duration {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0
	}
	st, err := p.Stat()
	if err != nil {
		return 0
	}
	return time.Duration(st.CPUTime() * float64(time.Second))
}

// Memory returns process pid's resident set size and its anonymous part (heap and stacks: what
// is not file-backed), in bytes.
func Memory(pid int) (rss, anon int64) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, 0
	}
	st, err := p.NewStatus()
	if err != nil {
		return 0, 0
	}
	return int64(st.VmRSS), int64(st.RssAnon)
}
