package replay

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestReadCSVAndSchedule(t *testing.T) {
	csv := "timestamp,value,other\n" +
		"2014-01-07 02:45:00,1.5,a\n" +
		"2014-01-07 02:50:00,2,b\n" + // 5 min
		"2014-01-07 02:55:00,,c\n" + // 5 min, empty value
		"2014-01-07 02:00:00,4,d\n" + // the clock steps back 55 min
		"2014-01-07 02:05:00,x,e\n" + // 5 min, text value
		"2014-01-07 06:05:00,6,f\n" // a 4 h gap
	s, err := ReadCSV(strings.NewReader(csv), "timestamp", []string{"value"})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Points) != 6 || s.Points[0].Line != 2 {
		t.Fatalf("points %+v", s.Points)
	}
	wantVals := []any{1.5, 2.0, nil, 4.0, "x", 6.0}
	for i, p := range s.Points {
		if p.Values[0] != wantVals[i] {
			t.Fatalf("row %d: %v, want %v", i, p.Values[0], wantVals[i])
		}
	}
	got := s.Schedule(300, time.Hour) // 5 min of series time = 1 s
	want := []time.Duration{0, time.Second, 2 * time.Second, 2 * time.Second, 3 * time.Second, 15 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("schedule %v, want %v", got, want)
		}
	}
	if span := s.Span(got); span != 16*time.Second {
		t.Fatalf("span %v", span)
	}
}

func TestReadCSVErrors(t *testing.T) {
	cases := []struct{ name, csv, want string }{
		{"empty", "", "empty"},
		{"no time column", "t,value\n1,2\n", `no time column "timestamp"`},
		{"no field", "timestamp,v\n1,2\n", `no column "value"`},
		{"bad time", "timestamp,value\n2014-01-01 00:00:00,1\nyesterday,2\n", "line 3: bad timestamp"},
		{"no rows", "timestamp,value\n", "no rows"},
		{"bad quote", "timestamp,value\n1,\"2\n", "extraneous"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReadCSV(strings.NewReader(c.csv), "timestamp", []string{"value"})
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

func TestParseTime(t *testing.T) {
	for in, want := range map[string]int64{
		"2014-01-07T02:00:00Z":      1389060000000,
		"2014-01-07 02:00:00":       1389060000000,
		"1389060000":                1389060000000,
		"1389060000500":             1389060000500,
		"1389060000.25":             1389060000250,
		"2014-01-07T03:00:00+01:00": 1389060000000,
	} {
		got, err := ParseTime(in)
		if err != nil || got.UnixMilli() != want {
			t.Fatalf("ParseTime(%q) = %v, %v; want %d", in, got.UnixMilli(), err, want)
		}
	}
}

// TestNAB replays the shipped NAB file: the step back costs no wait and offsets never decrease.
func TestNAB(t *testing.T) {
	f, err := os.Open("../scenarios/data/machine_temperature_system_failure.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := ReadCSV(f, "timestamp", []string{"value"})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Points) != 22695 {
		t.Fatalf("%d rows", len(s.Points))
	}
	sched := s.Schedule(600, time.Hour)
	backs := 0
	for i := 1; i < len(sched); i++ {
		if sched[i] < sched[i-1] {
			t.Fatalf("offset %d decreases", i)
		}
		if s.Points[i].T.Before(s.Points[i-1].T) {
			backs++
			if sched[i] != sched[i-1] {
				t.Fatalf("a step back at line %d waits %v", s.Points[i].Line, sched[i]-sched[i-1])
			}
		}
	}
	if backs != 1 {
		t.Fatalf("%d steps back, want 1", backs)
	}
}

func FuzzReadCSV(f *testing.F) {
	f.Add("timestamp,value\n2014-01-07 02:45:00,1.5\n")
	f.Add("timestamp,value\n1,2\n0,3\n")
	f.Add("timestamp\n\"")
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ReadCSV(strings.NewReader(in), "timestamp", []string{"value"})
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unclassified: %v", err)
			}
			return
		}
		sched := s.Schedule(10, time.Minute)
		for i := 1; i < len(sched); i++ {
			if sched[i] < sched[i-1] {
				t.Fatal("schedule decreases")
			}
		}
	})
}
