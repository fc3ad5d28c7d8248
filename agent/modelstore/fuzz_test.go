package modelstore

import (
	"encoding/json"
	"errors"
	"strconv"
	"testing"
)

func FuzzParseMarker(f *testing.F) {
	good, _ := json.Marshal(Marker{Name: "m", Version: 3, ManifestDigest: manifestDigest(3), FileDigest: fileDigest(3), Size: 10})
	f.Add(good)
	f.Add([]byte(`{"name":"m","version":1}`))
	f.Add([]byte(`{} {}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseMarker(b)
		if err != nil {
			if !errors.Is(err, ErrBadMarker) {
				t.Fatalf("error does not wrap ErrBadMarker: %v", err)
			}
			return
		}
		if ValidName(m.Name) != nil || m.Version < 1 || m.Size < 0 {
			t.Fatalf("accepted invalid marker %+v", m)
		}
	})
}

func FuzzParseJournal(f *testing.F) {
	good, _ := json.Marshal(journal{Name: "m", New: 2, Old: 1, Step: stepChecking, Attempts: 1})
	f.Add(good)
	f.Add([]byte(`{"name":"../x","new":1,"step":"checking"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		j, err := parseJournal(b)
		if err == nil && (ValidName(j.Name) != nil || j.New < 1 || j.Old < 0 || j.OldPrevious < 0) {
			t.Fatalf("accepted invalid journal %+v", j)
		}
	})
}

func FuzzNames(f *testing.F) {
	for _, s := range []string{"model", "..", ".tmp-1", "a/b", "0", "12", "-1", "007", "9999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidName(s) == nil {
			if s == "." || s == ".." || s[0] == '.' || len(s) > maxName {
				t.Fatalf("ValidName accepted %q", s)
			}
			for _, c := range s {
				if c == '/' || c == '\\' || c == 0 {
					t.Fatalf("ValidName accepted %q", s)
				}
			}
		}
		if v, err := parseVersion(s); err == nil && (v < 1 || strconv.Itoa(v) != s) {
			t.Fatalf("parseVersion(%q) = %d: not canonical", s, v)
		}
	})
}
