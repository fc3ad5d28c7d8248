package cli

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
)

func TestProgressLine(t *testing.T) {
	var buf bytes.Buffer
	if p := newProgress(&buf, "x", 10); p != nil {
		t.Fatal("progress drawn on a writer that is not a terminal")
	}
	p := &progress{w: &buf, label: "upload m.bin", total: 2000, start: time.Now().Add(-time.Second)}
	n, err := io.Copy(io.Discard, p.reader(strings.NewReader(strings.Repeat("a", 1000))))
	if err != nil || n != 1000 {
		t.Fatal(n, err)
	}
	p.done()
	out := buf.String()
	for _, want := range []string{"\rupload m.bin  1.0 kB / 2.0 kB   50%", "B/s", "\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("progress output %q lacks %q", out, want)
		}
	}
	var nilP *progress
	nilP.add(1)
	nilP.done()
	nilP.status("x")
	if r := nilP.reader(strings.NewReader("a")); r == nil {
		t.Error("nil progress must pass the reader through")
	}
}
