package cli

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/mattn/go-isatty"
)

// isTerminal reports whether w is a terminal: progress is drawn only there, so scripts and logs
// never see carriage returns.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// progress draws "label  12 MB / 40 MB  30%  8.1 MB/s" on one terminal line, redrawn at most
// every 100 ms. A nil *progress draws nothing, so callers need no checks.
type progress struct {
	w     io.Writer
	label string
	total int64
	start time.Time

	mu    sync.Mutex
	n     int64
	drawn time.Time
}

// newProgress returns a progress line on w, or nil when w is not a terminal. total <= 0 means
// unknown.
func newProgress(w io.Writer, label string, total int64) *progress {
	if !isTerminal(w) {
		return nil
	}
	return &progress{w: w, label: label, total: total, start: time.Now()}
}

// add counts n more bytes.
func (p *progress) add(n int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n += int64(n)
	if now := time.Now(); now.Sub(p.drawn) >= 100*time.Millisecond {
		p.drawn = now
		p.draw(now)
	}
}

func (p *progress) draw(now time.Time) {
	rate := 0.0
	if el := now.Sub(p.start).Seconds(); el > 0 {
		rate = float64(p.n) / el
	}
	if p.total > 0 {
		fmt.Fprintf(p.w, "\r%s  %s / %s  %3d%%  %s/s\033[K", p.label, humanize.Bytes(uint64(p.n)),
			humanize.Bytes(uint64(p.total)), p.n*100/p.total, humanize.Bytes(uint64(rate)))
		return
	}
	fmt.Fprintf(p.w, "\r%s  %s  %s/s\033[K", p.label, humanize.Bytes(uint64(p.n)), humanize.Bytes(uint64(rate)))
}

// done draws the final state and ends the line.
func (p *progress) done() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.draw(time.Now())
	fmt.Fprintln(p.w)
}

// status redraws a free-form status line (for waits such as rollout status --watch).
func (p *progress) status(s string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "\r%s  %s  (%s)\033[K", p.label, s, time.Since(p.start).Round(time.Second))
}

// reader counts what is read through it.
func (p *progress) reader(r io.Reader) io.Reader {
	if p == nil {
		return r
	}
	return &progressReader{r: r, p: p}
}

type progressReader struct {
	r io.Reader
	p *progress
}

func (r *progressReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.p.add(n)
	return n, err
}
