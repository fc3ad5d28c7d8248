package cli

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/driftline/driftline/hub/state"
)

func TestAuditAgainstHub(t *testing.T) {
	h := startHub(t)
	h.ok(t, "dataset", "create", "a")
	h.ok(t, "model", "create", "b")
	h.ok(t, "token", "create", "t1", "--role", "viewer")

	var res chainResult
	h.okJSON(t, &res, "audit", "verify")
	if !res.OK || res.Entries < 4 || res.HeadSeq != uint64(res.Entries) {
		t.Errorf("audit verify: %+v", res)
	}
	if out := h.ok(t, "audit", "verify"); !strings.Contains(out, "audit chain holds") {
		t.Errorf("audit verify output %q", out)
	}
	var page state.Page[state.AuditEntry]
	h.okJSON(t, &page, "audit", "--actor", "token:admin")
	for _, e := range page.Items {
		if e.Actor != "token:admin" {
			t.Errorf("audit --actor token:admin returned an entry by %q", e.Actor)
		}
	}
	h.okJSON(t, &page, "audit", "--all")
	if len(page.Items) != res.Entries {
		t.Errorf("audit --all: %d entries, verify saw %d", len(page.Items), res.Entries)
	}
	// One entry per page: the table says how to go on.
	r := h.run(t, "audit", "--limit", "1")
	if r.code != 0 || !strings.Contains(r.stderr, "--cursor") || strings.Count(r.stdout, "\n") != 2 {
		t.Errorf("audit --limit 1: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r := h.run(t, "audit", "--since", "yesterday"); r.code != ExitRefused || !strings.Contains(r.stderr, "field: since") {
		t.Errorf("audit --since yesterday: exit %d, stderr %q", r.code, r.stderr)
	}
}

// auditChain builds n valid, chained audit entries.
func auditChain(n int) []state.AuditEntry {
	var out []state.AuditEntry
	prev := ""
	for i := 1; i <= n; i++ {
		e := state.AuditEntry{Seq: uint64(i), Index: uint64(10 + i), Time: int64(1000 * i), Actor: "token:admin",
			Action: "dataset.create", Object: "dataset:d" + strconv.Itoa(i), PrevHash: prev}
		e.Hash = state.AuditHash(e)
		prev = e.Hash
		out = append(out, e)
	}
	return out
}

// fakeAudit serves entries as GET /api/v1/audit, pageSize per page with numeric cursors: a
// stand-in for a remote hub whose log was tampered with, which the real API cannot produce.
func fakeAudit(t *testing.T, entries []state.AuditEntry, pageSize int) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/audit" {
			http.NotFound(w, r)
			return
		}
		start, _ := strconv.Atoi(r.URL.Query().Get("cursor"))
		end := min(start+pageSize, len(entries))
		page := state.Page[state.AuditEntry]{Items: entries[start:end]}
		if end < len(entries) {
			c := strconv.Itoa(end)
			page.NextCursor = &c
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(page)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestAuditVerifyChain(t *testing.T) {
	cases := []struct {
		name    string
		tamper  func([]state.AuditEntry) []state.AuditEntry
		code    int
		badSeq  string
		because string
	}{
		{"intact", func(e []state.AuditEntry) []state.AuditEntry { return e }, 0, "", ""},
		{"content changed", func(e []state.AuditEntry) []state.AuditEntry {
			e[4].Actor = "mallory"
			return e
		}, ExitRefused, "seq 5", "does not match its content"},
		{"rehashed after change", func(e []state.AuditEntry) []state.AuditEntry {
			e[6].Object = "dataset:other"
			e[6].Hash = state.AuditHash(e[6])
			return e
		}, ExitRefused, "seq 8", "prev_hash"},
		{"entry removed", func(e []state.AuditEntry) []state.AuditEntry {
			return append(e[:3:3], e[4:]...)
		}, ExitRefused, "seq 5", "missing"},
		{"first entry has a predecessor", func(e []state.AuditEntry) []state.AuditEntry {
			e[0].PrevHash = "ab"
			e[0].Hash = state.AuditHash(e[0])
			return e
		}, ExitRefused, "seq 1", "prev_hash"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := fakeAudit(t, tc.tamper(auditChain(10)), 3)
			r := runCLI(t, map[string]string{"DRIFTLINE_HUB": srv.URL, "DRIFTLINE_TOKEN": "x"}, "audit", "verify")
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d", r.code, tc.code)
			}
			if !strings.Contains(r.stderr, tc.badSeq) || !strings.Contains(r.stderr, tc.because) {
				t.Errorf("stderr %q should name %q and %q", r.stderr, tc.badSeq, tc.because)
			}
		})
	}
}
