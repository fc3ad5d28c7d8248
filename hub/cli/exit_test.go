package cli

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/driftline/driftline/internal/freeport"
)

func TestExitCodes(t *testing.T) {
	h := startHub(t)
	closed := "http://" + freeport.Addr(t)
	boom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `{"type":"https://driftline.dev/problems/internal","title":"internal error","status":500,"detail":"disk on fire"}`)
	}))
	t.Cleanup(boom.Close)
	notJSON := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "<html>proxy page</html>")
	}))
	t.Cleanup(notJSON.Close)
	admin := map[string]string{"DRIFTLINE_HUB": h.url, "DRIFTLINE_TOKEN": h.admin}
	cases := []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stderr []string
	}{
		{"ok", admin, []string{"dataset", "list"}, ExitOK, nil},
		{"404 names title and detail", admin, []string{"dataset", "show", "nope"}, ExitRefused, []string{"404", "not found", "nope"}},
		{"401 bad token", map[string]string{"DRIFTLINE_HUB": h.url, "DRIFTLINE_TOKEN": "dl_wrong"}, []string{"model", "list"}, ExitRefused, []string{"401", "unauthorized"}},
		{"401 no token", map[string]string{"DRIFTLINE_HUB": h.url, "DRIFTLINE_DATA": t.TempDir()}, []string{"model", "list"}, ExitRefused, []string{"401"}},
		{"400 names the field", admin, []string{"dataset", "create", "bad name!"}, ExitRefused, []string{"400", "field: name"}},
		{"create", admin, []string{"dataset", "create", "dup"}, ExitOK, nil},
		{"409 already exists", admin, []string{"dataset", "create", "dup"}, ExitRefused, []string{"409", "already exists"}},
		{"unreachable", map[string]string{"DRIFTLINE_HUB": closed, "DRIFTLINE_TOKEN": "x"}, []string{"dataset", "list"}, ExitUnavailable, []string{"unavailable", "refused"}},
		{"500", map[string]string{"DRIFTLINE_HUB": boom.URL, "DRIFTLINE_TOKEN": "x"}, []string{"dataset", "show", "a"}, ExitUnavailable, []string{"500", "disk on fire"}},
		{"answer not JSON", map[string]string{"DRIFTLINE_HUB": notJSON.URL, "DRIFTLINE_TOKEN": "x"}, []string{"dataset", "show", "a"}, ExitUnavailable, []string{"not the expected JSON"}},
		{"unknown command", admin, []string{"frobnicate"}, ExitUsage, []string{"unknown command"}},
		{"unknown flag", admin, []string{"dataset", "list", "--colour"}, ExitUsage, []string{"unknown flag"}},
		{"missing argument", admin, []string{"model", "approve", "m"}, ExitUsage, []string{"usage"}},
		{"bad output format", admin, []string{"dataset", "list", "-o", "yaml"}, ExitUsage, []string{"table or json"}},
		{"bad hub URL", map[string]string{"DRIFTLINE_HUB": "localhost:8080"}, []string{"dataset", "list"}, ExitUsage, []string{"hub URL"}},
		{"--hub wins over DRIFTLINE_HUB", map[string]string{"DRIFTLINE_HUB": closed, "DRIFTLINE_TOKEN": h.admin}, []string{"--hub", h.url, "dataset", "list"}, ExitOK, nil},
		{"--token wins over DRIFTLINE_TOKEN", map[string]string{"DRIFTLINE_HUB": h.url, "DRIFTLINE_TOKEN": "dl_wrong"}, []string{"--token", h.admin, "dataset", "list"}, ExitOK, nil},
		{"rollouts are not served yet", admin, []string{"rollout", "status", "r1"}, ExitRefused, []string{"404"}},
		{"drift is not served yet", admin, []string{"drift", "--model", "m"}, ExitRefused, []string{"404"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, tc.env, tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d", r.code, tc.code)
			}
			for _, s := range tc.stderr {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr %q lacks %q", r.stderr, s)
				}
			}
		})
	}
}

func TestTokenFromDataDir(t *testing.T) {
	h := startHub(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "admin.token"), []byte(h.admin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runCLI(t, map[string]string{"DRIFTLINE_HUB": h.url, "DRIFTLINE_DATA": dir}, "token", "list"); r.code != 0 {
		t.Errorf("token from $DRIFTLINE_DATA/admin.token: exit %d", r.code)
	}
}

func TestRetryOn503(t *testing.T) {
	var calls atomic.Int32
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		if calls.Add(1) < 3 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]string{"name": "d"})
	}))
	t.Cleanup(srv.Close)
	r := runCLI(t, map[string]string{"DRIFTLINE_HUB": srv.URL, "DRIFTLINE_TOKEN": "x"}, "dataset", "create", "d")
	if r.code != 0 || calls.Load() != 3 {
		t.Fatalf("exit %d after %d calls", r.code, calls.Load())
	}
	if keys[0] == "" || keys[0] != keys[1] || keys[1] != keys[2] {
		t.Errorf("retries must carry one Idempotency-Key: %q", keys)
	}
}

func TestUploadStreams(t *testing.T) {
	var chunked atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunked.Store(r.ContentLength == -1 && len(r.TransferEncoding) == 1 && r.TransferEncoding[0] == "chunked")
		mr, err := r.MultipartReader()
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		var names []string
		for {
			p, err := mr.NextPart()
			if err != nil {
				break
			}
			names = append(names, p.FormName()+"="+p.FileName())
			_, _ = io.Copy(io.Discard, p)
		}
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"model": "m", "version": 1, "filename": strings.Join(names, ",")})
	}))
	t.Cleanup(srv.Close)
	art := writeFile(t, t.TempDir(), "big.bin", make([]byte, 2<<20))
	r := runCLI(t, map[string]string{"DRIFTLINE_HUB": srv.URL, "DRIFTLINE_TOKEN": "x"}, "model", "push", "m", "--artifact", art, "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	if !chunked.Load() {
		t.Errorf("the upload was not streamed (it had a Content-Length, so it was buffered)")
	}
	if !strings.Contains(r.stdout, "metadata=,artifact=big.bin") {
		t.Errorf("parts in the wrong order or misnamed: %s", r.stdout)
	}
}

func TestCancelledRequest(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-block
	}))
	t.Cleanup(func() { close(block); srv.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result)
	go func() {
		done <- runCLICtx(t, ctx, map[string]string{"DRIFTLINE_HUB": srv.URL, "DRIFTLINE_TOKEN": "x"}, "dataset", "list")
	}()
	cancel()
	if r := <-done; r.code != ExitUnavailable {
		t.Errorf("cancelled request: exit %d", r.code)
	}
}
