package pipeline

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/driftline/driftline/shared/contract"
)

func TestIngestHandler(t *testing.T) {
	s := mustSchema(t, testContract)
	h := newHarness(t, Options{Contract: s, Window: contract.Window{Rows: 1000, Seconds: 60}})
	srv := httptest.NewServer(h.p.Handler(1 << 10))
	defer srv.Close()
	cases := []struct {
		name, method, ctype, body string
		status                    int
		rows, invalid             int64
	}{
		{"csv", "POST", "text/csv; charset=utf-8", "id,temp,mode\n1,20,auto\n2,999,auto\n", 200, 2, 1},
		{"jsonl", "POST", "application/x-ndjson", `{"id":3,"temp":1,"mode":"auto"}` + "\n" + `{"id":4,"temp":2,"mode":"manual"}`, 200, 2, 0},
		{"json array", "POST", "application/json", `[{"id":5,"temp":1,"mode":"auto"},{"id":6,"temp":"x","mode":"auto"}]`, 200, 2, 1},
		{"json lines as json", "POST", "application/json", `{"id":7,"temp":1,"mode":"auto"}`, 200, 1, 0},
		{"bad csv header", "POST", "text/csv", "\"unclosed\n", 400, 0, 0},
		{"unknown media type", "POST", "text/plain", "x", 415, 0, 0},
		{"no media type", "POST", "", "x", 415, 0, 0},
		{"get", "GET", "text/csv", "", 405, 0, 0},
		{"too large", "POST", "application/x-ndjson", strings.Repeat(`{"id":8,"temp":1,"mode":"auto"}`+"\n", 100), 413, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, srv.URL+IngestPath, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var buf bytes.Buffer
			_, _ = buf.ReadFrom(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, buf.String())
			}
			if tc.status != 200 {
				if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
					t.Fatalf("error content type %q", ct)
				}
				return
			}
			var sum Summary
			if err := json.Unmarshal(buf.Bytes(), &sum); err != nil {
				t.Fatal(err)
			}
			if sum.Rows != tc.rows || sum.InvalidRows != tc.invalid || int64(len(sum.Violations)) < tc.invalid {
				t.Fatalf("summary %+v", sum)
			}
		})
	}
}

// FuzzIngestHandler: any body under any media type gets an answer, never a panic, and a 200
// answer's counts add up.
func FuzzIngestHandler(f *testing.F) {
	f.Add("text/csv", []byte("id,temp,mode\n1,20,auto\n"))
	f.Add("application/json", []byte(`[{"id":1},{"temp":"x"}]`))
	f.Add("application/x-ndjson", []byte("{\"id\":1}\n{bad\n"))
	f.Add("text/csv; charset=\"", []byte("a"))
	s := mustSchema(f, testContract)
	h := newHarness(f, Options{Contract: s, Window: contract.Window{Rows: 50, Seconds: 60}})
	handler := h.p.Handler(1 << 16)
	f.Fuzz(func(t *testing.T, ctype string, body []byte) {
		req := httptest.NewRequest("POST", IngestPath, bytes.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		if rec.Code != 200 {
			return
		}
		var sum Summary
		if err := json.Unmarshal(rec.Body.Bytes(), &sum); err != nil {
			t.Fatalf("200 answer is not a summary: %v", err)
		}
		if sum.ValidRows+sum.InvalidRows != sum.Rows {
			t.Fatalf("counts do not add up: %+v", sum)
		}
	})
}
