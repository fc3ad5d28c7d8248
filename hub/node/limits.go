package node

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// httpLimits are the HTTP limits of the hub's API server. A request's headers must arrive
// within readHeader; a body must keep moving (each read pushes the read deadline read ahead)
// and so must a response (each write, and each read of the body, pushes the write deadline
// write ahead), so a multi-GiB upload or download is never cut off while it progresses and a
// client that stalls is; write also bounds the work between the body's end and the answer (a
// large sample's calibration). An idle keep-alive connection is closed after idle.
type httpLimits struct {
	readHeader, read, write, idle time.Duration
	stalled                       *prometheus.CounterVec
}

// defaultHTTPLimits are the limits a hub serves with.
var defaultHTTPLimits = httpLimits{readHeader: 10 * time.Second, read: time.Minute, write: 5 * time.Minute, idle: 2 * time.Minute}

// MetricHTTPStalled counts requests whose body or response stopped moving for longer than the
// read or write limit, by direction ("read", "write"); the connection is closed.
const MetricHTTPStalled = "driftline_hub_http_stalled_total"

// spoolDirName is the directory under the data dir where uploads are spooled.
const spoolDirName = "spool"

// prepareSpool makes DATA/spool (0700) and empties it: what a crash left there is garbage.
func prepareSpool(dataDir string) (string, error) {
	dir := filepath.Join(dataDir, spoolDirName)
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("node: spool dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("node: spool dir: %w", err)
	}
	return dir, nil
}

// newHTTPServer is the API's http.Server with limits l (zero: defaultHTTPLimits); stalls are
// counted on reg.
func newHTTPServer(h http.Handler, l httpLimits, reg prometheus.Registerer) *http.Server {
	if l.read == 0 {
		l = defaultHTTPLimits
	}
	stalled := prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricHTTPStalled,
		Help: "API requests cut off because their body or response stopped moving, by direction."}, []string{"direction"})
	reg.MustRegister(stalled)
	l.stalled = stalled
	return &http.Server{
		Handler:           progressDeadlines(h, l),
		ReadHeaderTimeout: l.readHeader,
		ReadTimeout:       l.read,
		WriteTimeout:      l.write,
		IdleTimeout:       l.idle,
	}
}

// progressDeadlines turns the server's read and write timeouts from limits on a whole request
// into limits on a stall: every read of the body and every write of the response moves the
// connection's deadline forward.
func progressDeadlines(h http.Handler, l httpLimits) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &progressBody{ReadCloser: r.Body, rc: rc, l: l}
		}
		h.ServeHTTP(&progressWriter{ResponseWriter: w, rc: rc, l: l}, r)
	})
}

// progressBody pushes the read deadline forward as the body is read.
type progressBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	l    httpLimits
	next time.Time // when the deadline is next worth moving
}

func (b *progressBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		if now := time.Now(); now.After(b.next) { // not at every read: a timer reset, cheap but not free
			_ = b.rc.SetReadDeadline(now.Add(b.l.read))
			_ = b.rc.SetWriteDeadline(now.Add(b.l.write))
			b.next = now.Add(b.l.read / 4)
		}
	}
	if err != nil && isTimeout(err) {
		b.l.stalled.WithLabelValues("read").Inc()
	}
	return n, err
}

// progressWriter pushes the write deadline forward as the response is written.
type progressWriter struct {
	http.ResponseWriter
	rc   *http.ResponseController
	l    httpLimits
	next time.Time
}

func (w *progressWriter) Write(p []byte) (int, error) {
	if now := time.Now(); now.After(w.next) {
		_ = w.rc.SetWriteDeadline(now.Add(w.l.write))
		w.next = now.Add(w.l.write / 4)
	}
	n, err := w.ResponseWriter.Write(p)
	if err != nil && isTimeout(err) {
		w.l.stalled.WithLabelValues("write").Inc()
	}
	return n, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Flush flushes the underlying writer when it can.
func (w *progressWriter) Flush() { _ = w.rc.Flush() }

// Unwrap lets http.ResponseController reach the server's writer.
func (w *progressWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
