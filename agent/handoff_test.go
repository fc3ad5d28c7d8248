package agent

import (
	"bytes"
	"testing"
)

// TestHandoffBound: the handoff keeps chunks up to its byte limit, gives each back once, and
// frees room as the staging takes them; a nil handoff keeps nothing.
func TestHandoffBound(t *testing.T) {
	h := newHandoff(10)
	a, b, c := bytes.Repeat([]byte{'a'}, 6), bytes.Repeat([]byte{'b'}, 4), []byte("c")
	if !h.offer("a", a) || !h.offer("b", b) {
		t.Fatal("offers within the limit refused")
	}
	if h.offer("c", c) {
		t.Fatal("offer over the limit kept")
	}
	if h.offer("a", a) {
		t.Fatal("second offer of a held digest kept")
	}
	if got, ok := h.take("a"); !ok || !bytes.Equal(got, a) {
		t.Fatalf("take a = %q, %v", got, ok)
	}
	if _, ok := h.take("a"); ok {
		t.Fatal("a taken twice")
	}
	if !h.offer("c", c) {
		t.Fatal("offer refused after take made room")
	}
	var nilH *handoff
	if nilH.offer("a", a) {
		t.Fatal("nil handoff kept an offer")
	}
	if _, ok := nilH.take("a"); ok {
		t.Fatal("nil handoff gave something")
	}
}
