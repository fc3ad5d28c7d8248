package broker

import (
	"slices"
	"testing"
)

// TestRetainedStoreMatching: MQTT topic matching of the retained store (MQTT 3.1.1 and 5
// section 4.7): `+` one level, `#` the rest including the parent level, first-level wildcards
// skip `$` topics, empty levels are levels; clearing prunes the trie.
func TestRetainedStoreMatching(t *testing.T) {
	s := &retainedStore{}
	topics := []string{"a", "a/b", "a/b/c", "a/c", "a//c", "/x", "$SYS/up", "$data/a", "b/b"}
	for _, tp := range topics {
		s.set(&retainedMsg{topic: tp, payload: []byte(tp)})
	}
	s.set(&retainedMsg{topic: "a/b", payload: []byte("again")}) // replaces
	if s.len() != len(topics) {
		t.Fatalf("len %d, want %d", s.len(), len(topics))
	}
	cases := map[string][]string{
		"a":       {"a"},
		"a/b":     {"a/b"},
		"a/+":     {"a/b", "a/c"},
		"a/#":     {"a", "a/b", "a/b/c", "a/c", "a//c"},
		"a/+/c":   {"a/b/c", "a//c"},
		"+/b":     {"a/b", "b/b"},
		"#":       {"a", "a/b", "a/b/c", "a/c", "a//c", "/x", "b/b"},
		"+":       {"a"},
		"+/+":     {"a/b", "a/c", "/x", "b/b"},
		"$SYS/#":  {"$SYS/up"},
		"$data/+": {"$data/a"},
		"/+":      {"/x"},
		"c/#":     nil,
		"a/b/c/d": nil,
		"a/b/c/#": {"a/b/c"},
		"a/b/+/#": {"a/b/c"}, // "+" is c, and "#" matches its parent level
		"+/+/+":   {"a/b/c", "a//c"},
		"a/+/+/+": nil,
		"nothing": nil,
	}
	for filter, want := range cases {
		live, expired := s.match(filter, 0)
		var got []string
		for _, m := range live {
			got = append(got, m.topic)
		}
		slices.Sort(got)
		w := slices.Clone(want)
		slices.Sort(w)
		if len(expired) != 0 || !slices.Equal(got, w) {
			t.Errorf("match(%q) = %v, want %v", filter, got, w)
		}
	}
	if m, ok := s.get("a/b"); !ok || string(m.payload) != "again" {
		t.Errorf("a/b not replaced")
	}
	if got := len(s.under("a/")); got != 4 {
		t.Errorf("under(a/) = %d messages, want 4", got)
	}
	for _, tp := range topics {
		if !s.clear(tp, nil) {
			t.Errorf("clear(%q) found nothing", tp)
		}
	}
	if s.len() != 0 || len(s.root.children) != 0 {
		t.Errorf("after clearing everything: len %d, %d top-level nodes left", s.len(), len(s.root.children))
	}
}

// TestRetainedStoreExpiry: a message whose MQTT 5 expiry passed is not delivered and is
// removed; a newer message on the same topic is not removed with it.
func TestRetainedStoreExpiry(t *testing.T) {
	s := &retainedStore{}
	old := &retainedMsg{topic: "a/x", expiry: 100}
	s.set(old)
	s.set(&retainedMsg{topic: "a/y", expiry: 0})
	live, expired := s.match("a/+", 101)
	if len(live) != 1 || live[0].topic != "a/y" || len(expired) != 1 {
		t.Fatalf("live %d expired %d, want 1 1", len(live), len(expired))
	}
	s.set(&retainedMsg{topic: "a/x"}) // replaced meanwhile
	if s.clear("a/x", old) {
		t.Error("clearing the expired message removed its replacement")
	}
}
