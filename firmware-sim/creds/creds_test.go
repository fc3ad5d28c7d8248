package creds

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want []Credential
		err  bool
	}{
		{"agent config", "device_id: d1\ntoken: t1\nbrokers: [tcp://127.0.0.1:1883]\ntrusted_keys: [abc]\n",
			[]Credential{{ID: "d1", Token: "t1", Brokers: []string{"tcp://127.0.0.1:1883"}}}, false},
		{"list", "- {id: d1, token: t1}\n- {device_id: d2, token: t2}\n", []Credential{{ID: "d1", Token: "t1"}, {ID: "d2", Token: "t2"}}, false},
		{"devices", "devices:\n  - {id: d1, token: t1}\n", []Credential{{ID: "d1", Token: "t1"}}, false},
		{"map", "d1: t1\nd2: t2\n", []Credential{{ID: "d1", Token: "t1"}, {ID: "d2", Token: "t2"}}, false},
		{"empty", "", nil, true},
		{"scalar", "hello\n", nil, true},
		{"no token", "- {id: d1}\n", nil, true},
		{"bad id", "- {id: a/b, token: t}\n", nil, true},
		{"map of lists", "d1: [t]\n", nil, true},
		{"devices not list", "devices: 3\n", nil, true},
		{"bad yaml", "- {id: d1\n", nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse([]byte(c.in))
			if c.err {
				if !errors.Is(err, ErrFormat) {
					t.Fatalf("err = %v, want ErrFormat", err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}

func TestLoadDirAndSave(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "b.yaml"), []byte("device_id: d2\ntoken: t2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("device_id: d1\ntoken: t1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	list := filepath.Join(t.TempDir(), "creds.yaml")
	if err := Save(list, []Credential{{ID: "d1", Token: "t1"}, {ID: "d3", Token: "t3"}}); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir, list)
	if err != nil {
		t.Fatal(err)
	}
	want := []Credential{{ID: "d1", Token: "t1"}, {ID: "d2", Token: "t2"}, {ID: "d3", Token: "t3"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v", got)
	}
	if err := Save(list, []Credential{{ID: "d1", Token: "other"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir, list); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("err = %v, want ErrDuplicate", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("device_id: d1\ntoken: t1\n")
	f.Add("- {id: d1, token: t1}\n")
	f.Add("devices:\n  - {id: d1, token: t1}\n")
	f.Add("d1: t1\n")
	f.Fuzz(func(t *testing.T, in string) {
		cs, err := Parse([]byte(in))
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("unclassified: %v", err)
			}
			return
		}
		for _, c := range cs {
			if c.ID == "" || c.Token == "" {
				t.Fatalf("empty credential %+v", c)
			}
		}
	})
}
