package node

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/testhelp"
)

// testNodeWith starts a one-node hub like testNode, with cfg's extra settings.
func testNodeWith(t *testing.T, cfg Config) (*Node, string) {
	t.Helper()
	cfg.DataDir, cfg.NodeID, cfg.HTTPAddr, cfg.RaftAddr = t.TempDir(), "n1", "127.0.0.1:0", "127.0.0.1:0"
	if cfg.MQTTAddr == "" {
		cfg.MQTTAddr = "127.0.0.1:0"
	}
	cfg.Logger = testhelp.Logger(t)
	n, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	var tok string
	testhelp.WaitFor(t, 10*time.Second, "admin token", func() bool {
		b, err := os.ReadFile(filepath.Join(cfg.DataDir, AdminTokenFile))
		tok = strings.TrimSpace(string(b))
		return err == nil && tok != ""
	})
	return n, tok
}

// TestStalledBodyClosed: a client that sends its headers and part of a body, then stops, is
// cut off after the read limit (a slowloris on the body kept a goroutine and a socket for ever).
func TestStalledBodyClosed(t *testing.T) {
	n, tok := testNodeWith(t, Config{httpLimits: httpLimits{readHeader: time.Second, read: 500 * time.Millisecond, write: time.Second, idle: time.Second}})
	conn, err := net.Dial("tcp", n.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /api/v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":", tok)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	_, err = io.ReadAll(conn) // an error answer, then EOF; or EOF
	if err != nil {
		t.Fatalf("stalled request still open after 5s: %v", err)
	}
	t.Logf("stalled request closed after %v", time.Since(start).Round(time.Millisecond))
	testhelp.WaitFor(t, 5*time.Second, "stall counted", func() bool {
		return metricValue(t, n, MetricHTTPStalled, "read") == 1
	})
}

// TestIdleKeepAliveClosed: an idle keep-alive connection is closed after the idle limit.
func TestIdleKeepAliveClosed(t *testing.T) {
	n, _ := testNodeWith(t, Config{httpLimits: httpLimits{readHeader: time.Second, read: time.Second, write: time.Second, idle: 300 * time.Millisecond}})
	conn, err := net.Dial("tcp", n.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle keep-alive connection: %v, want EOF", err)
	}
}

// TestSlowProgressingUploadNotCut: a body that keeps moving, slower than the read limit in
// total, completes.
func TestSlowProgressingUploadNotCut(t *testing.T) {
	n, tok := testNodeWith(t, Config{httpLimits: httpLimits{readHeader: time.Second, read: 400 * time.Millisecond, write: 400 * time.Millisecond, idle: time.Second}})
	pr, pw := io.Pipe()
	go func() {
		body := []byte(`{"name":"slow","role":"viewer"}`)
		for i := range body {
			if _, err := pw.Write(body[i : i+1]); err != nil {
				return
			}
			time.Sleep(40 * time.Millisecond) // the client's pace, not synchronisation: 1.2 s in all
		}
		pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPost, n.URL()+"/api/v1/tokens", pr)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	doReq(t, req, http.StatusCreated, nil)
}

// TestSampleSpooledInDataDir: a dataset sample is spooled inside the data dir, never in the
// system's temporary directory (here one that does not exist).
func TestSampleSpooledInDataDir(t *testing.T) {
	t.Setenv("TMPDIR", filepath.Join(t.TempDir(), "missing"))
	n, tok := testNode(t)
	call(t, n, tok, http.MethodPost, "/api/v1/datasets", map[string]string{"name": "sensors"}, http.StatusCreated, nil)
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	sw, _ := mw.CreateFormFile("sample", "s.csv") // before the contract: spooled
	sw.Write([]byte(sensorCSV(200, 0)))
	cw, _ := mw.CreateFormField("contract")
	cw.Write([]byte(strings.Replace(sensorContract, `"fields": [`, `"x-driftline": {"drift": {"calibrate": 50}}, "fields": [`, 1)))
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, n.URL()+"/api/v1/datasets/sensors/versions", &buf)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	doReq(t, req, http.StatusCreated, nil)
	if ents, _ := os.ReadDir(filepath.Join(n.cfg.DataDir, spoolDirName)); len(ents) != 0 {
		t.Fatalf("spool files left behind: %v", ents)
	}
}

// metricValue is the value of the node's metric name with the one label value given ("" for
// none), 0 when absent.
func metricValue(t *testing.T, n *Node, name, label string) float64 {
	t.Helper()
	mfs, err := n.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && (len(m.GetLabel()) == 0 || m.GetLabel()[0].GetValue() != label) {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// TestPprofAdminOnly: the profiles (DRIFTLINE_PPROF) answer an admin token only.
func TestPprofAdminOnly(t *testing.T) {
	t.Setenv("DRIFTLINE_PPROF", "1")
	n, tok := testNode(t)
	_, view := createToken(t, n, tok, "dash", "viewer")
	for _, c := range []struct {
		token string
		want  int
	}{{"", 401}, {view, 403}, {tok, 200}} {
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/cmdline"} {
			req, _ := http.NewRequest(http.MethodGet, n.URL()+path, nil)
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != c.want {
				t.Errorf("GET %s with %q: %d, want %d", path, c.token, res.StatusCode, c.want)
			}
		}
	}
}

// TestInternalErrorNotEchoed: a 500 names an incident id, never the internal cause (here a
// spool file path inside the data dir); the log has the cause.
func TestInternalErrorNotEchoed(t *testing.T) {
	n, tok := testNode(t)
	call(t, n, tok, http.MethodPost, "/api/v1/datasets", map[string]string{"name": "sensors"}, http.StatusCreated, nil)
	if err := os.RemoveAll(filepath.Join(n.cfg.DataDir, spoolDirName)); err != nil { // the spool cannot be written
		t.Fatal(err)
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	sw, _ := mw.CreateFormFile("sample", "s.csv")
	sw.Write([]byte(sensorCSV(20, 0)))
	cw, _ := mw.CreateFormField("contract")
	cw.Write([]byte(sensorContract))
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, n.URL()+"/api/v1/datasets/sensors/versions", &buf)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusInternalServerError {
		t.Fatalf("status %d: %s", res.StatusCode, body)
	}
	if strings.Contains(string(body), n.cfg.DataDir) || strings.Contains(string(body), "no such file") || !strings.Contains(string(body), "incident") {
		t.Fatalf("500 answer echoes the internal error: %s", body)
	}
}
