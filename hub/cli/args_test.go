package cli

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/driftline/driftline/hub/state"
)

func TestParseHelpers(t *testing.T) {
	refCases := []struct {
		in      string
		name    string
		version int
		ok      bool
	}{
		{"temps@3", "temps", 3, true},
		{"a@b@1", "", 0, false},
		{"temps", "", 0, false},
		{"@3", "", 0, false},
		{"temps@0", "", 0, false},
		{"temps@-1", "", 0, false},
		{"temps@", "", 0, false},
	}
	for _, tc := range refCases {
		name, v, err := parseRef("--trained-on", tc.in)
		if (err == nil) != tc.ok || name != tc.name || v != tc.version {
			t.Errorf("parseRef(%q) = %q, %d, %v", tc.in, name, v, err)
		}
		if err != nil && !errors.Is(err, ErrUsage) {
			t.Errorf("parseRef(%q) error %v is not a usage error", tc.in, err)
		}
	}
	parentCases := []struct {
		in   string
		want state.VersionRef
		ok   bool
	}{
		{"2", state.VersionRef{Dataset: "d", Version: 2}, true},
		{"other@4", state.VersionRef{Dataset: "other", Version: 4}, true},
		{"x", state.VersionRef{}, false},
	}
	for _, tc := range parentCases {
		got, err := parseParent("d", tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("parseParent(%q) = %+v, %v", tc.in, got, err)
		}
	}
	paramCases := []struct {
		in   string
		want any
	}{
		{"10", 10.0}, {"0.5", 0.5}, {"true", true}, {"null", nil}, {"adam", "adam"}, {`"10"`, `"10"`}, {"[1]", "[1]"}, {"", ""},
	}
	for _, tc := range paramCases {
		if got := paramValue(tc.in); got != tc.want {
			t.Errorf("paramValue(%q) = %#v, want %#v", tc.in, got, tc.want)
		}
	}
	if k, v, err := splitKV("--label", "a=b=c"); err != nil || k != "a" || v != "b=c" {
		t.Errorf("splitKV(a=b=c) = %q, %q, %v", k, v, err)
	}
	if _, _, err := parseMetric("auc=NaNx"); err == nil {
		t.Error("parseMetric accepted a non-number")
	}
	if got := splitURLs(" tcp://a:1, ,ssl://b:2 "); len(got) != 2 || got[1] != "ssl://b:2" {
		t.Errorf("splitURLs: %q", got)
	}
}

func TestProblemOf(t *testing.T) {
	cases := []struct {
		status int
		body   string
		want   string
		class  error
	}{
		{404, `{"type":"t","title":"not found","status":404,"detail":"dataset x"}`, "404 not found: dataset x", ErrRefused},
		{400, `{"title":"invalid request","detail":"bad","field":"name"}`, "400 invalid request: bad (field: name)", ErrRefused},
		{502, `<html>bad gateway</html>`, "502 bad gateway: <html>bad gateway</html>", ErrUnavailable},
		{503, ``, "503 service unavailable", ErrUnavailable},
		{418, `{}`, "418 i'm a teapot: {}", ErrRefused},
	}
	for _, tc := range cases {
		e := problemOf(tc.status, []byte(tc.body))
		if e.Error() != tc.want || !errors.Is(e, tc.class) {
			t.Errorf("problemOf(%d, %q) = %q (%v), want %q", tc.status, tc.body, e.Error(), errors.Unwrap(e), tc.want)
		}
	}
}

func FuzzProblemOf(f *testing.F) {
	f.Add(404, []byte(`{"type":"t","title":"not found","status":404,"detail":"x","field":"f"}`))
	f.Add(500, []byte(`<html>`))
	f.Add(400, []byte(`{"title":1}`))
	f.Add(401, []byte{})
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 100 || status > 999 {
			status = 400 + (status%100+100)%100
		}
		e := problemOf(status, body)
		if e.Status != status || e.Error() == "" || !strings.HasPrefix(e.Error(), strconv.Itoa(status)) {
			t.Fatalf("problemOf(%d, %q) = %+v", status, body, e)
		}
		if len(e.Detail) > 310 && !strings.HasPrefix(string(body), "{") {
			t.Fatalf("detail of a non-problem body is not truncated: %d bytes", len(e.Detail))
		}
	})
}

func FuzzCommandArgs(f *testing.F) {
	for _, s := range []string{"temps@3", "a=b", "k-", "x@", "=v", "auc=0.9", "10", "other@2", "tcp://a:1,ssl://b:2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if name, v, err := parseRef("--trained-on", s); err == nil {
			if name == "" || v < 1 || !strings.HasPrefix(s, name+"@") {
				t.Fatalf("parseRef(%q) = %q, %d", s, name, v)
			}
		} else if !errors.Is(err, ErrUsage) {
			t.Fatalf("parseRef(%q): %v is not a usage error", s, err)
		}
		if r, err := parseParent("d", s); err == nil && (r.Dataset == "" || r.Version < 1) {
			t.Fatalf("parseParent(%q) = %+v", s, r)
		}
		if k, v, err := splitKV("x", s); err == nil && k+"="+v != s {
			t.Fatalf("splitKV(%q) = %q, %q", s, k, v)
		}
		_, _, _ = parseMetric(s)
		_ = paramValue(s)
		for _, u := range splitURLs(s) {
			if u == "" || strings.Contains(u, ",") {
				t.Fatalf("splitURLs(%q) gave %q", s, u)
			}
		}
		_, _ = brokerURLs("--broker", s)
	})
}
