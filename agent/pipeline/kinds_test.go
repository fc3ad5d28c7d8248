package pipeline

import "testing"

// FuzzSplitEnvelope: any data payload is an envelope or plain rows, never a panic; an envelope
// has a kind and rows.
func FuzzSplitEnvelope(f *testing.F) {
	f.Add([]byte(`{"kind":"labels","rows":[{"id":"p1","label":"a"}]}`))
	f.Add([]byte(`{"kind":"inputs","rows":[],"x":1}`))
	f.Add([]byte(`{"kind":5,"rows":[]}`))
	f.Add([]byte(`[{"kind":"labels"}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		kind, rows, ok := splitEnvelope(b)
		if ok && (kind == "" || rows == nil) {
			t.Fatalf("envelope %q without kind or rows", b)
		}
	})
}

func TestSplitEnvelope(t *testing.T) {
	for raw, want := range map[string]string{
		`{"kind":"labels","rows":[{"id":"p1"}]}`:   "labels",
		`{"kind":"labels","rows":[],"id":"x"}`:     "", // a third key: an input row
		`{"kind":"temp","value":1}`:                "", // an input row with a field named kind
		`[{"kind":"labels","rows":[]}]`:            "",
		` {"rows":[{"a":1}],"kind":"predictions"}`: "predictions",
	} {
		kind, _, ok := splitEnvelope([]byte(raw))
		if (want != "") != ok || kind != want {
			t.Errorf("%s: kind %q ok %v, want %q", raw, kind, ok, want)
		}
	}
}
