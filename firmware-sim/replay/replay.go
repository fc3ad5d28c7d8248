// Package replay reads a recorded sensor series (CSV with a timestamp column) and schedules it
// for replay at a chosen speed. Real series have gaps and clocks that step back (the NAB
// machine-temperature file has both): rows are replayed in file order, a step back costs no
// wait, and a gap waits at most MaxGap of series time. Offsets are therefore monotonic whatever
// the file holds.
package replay

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

var (
	// ErrFormat is a CSV that cannot be replayed: no header, a missing column, a bad timestamp.
	ErrFormat = errors.New("replay: bad series")
	// ErrTooLarge is a series over MaxRows rows.
	ErrTooLarge = errors.New("replay: series too large")
)

// MaxRows bounds the rows of one series (it is held in memory, shared by every device).
const MaxRows = 5_000_000

// Point is one row of a series: its timestamp and its values in the order of the requested
// fields. A value is a float64, a string (text that is not a number), or nil (empty cell).
type Point struct {
	// T is the row's timestamp as recorded.
	T time.Time
	// Values are the requested fields' values.
	Values []any
	// Line is the row's line in the file (the header is line 1).
	Line int
}

// Series is a parsed recording, in file order. It is read-only once built and may be shared.
type Series struct {
	// Fields are the value columns, in Values order.
	Fields []string
	// Points are the rows in file order.
	Points []Point
}

// timeLayouts are the timestamp forms ReadCSV accepts besides Unix seconds or milliseconds.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", "2006-01-02 15:04"}

// ReadCSV reads a series with a header row. timeColumn is the timestamp column; fields are the
// value columns to keep. Errors name the line.
func ReadCSV(r io.Reader, timeColumn string, fields []string) (*Series, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	cr.FieldsPerRecord = -1
	head, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty file", ErrFormat)
		}
		return nil, fmt.Errorf("%w: header: %v", ErrFormat, err)
	}
	col := map[string]int{}
	for i, h := range head {
		col[strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))] = i
	}
	tc, ok := col[timeColumn]
	if !ok {
		return nil, fmt.Errorf("%w: line 1: no time column %q (columns: %s)", ErrFormat, timeColumn, strings.Join(head, ","))
	}
	idx := make([]int, len(fields))
	for i, f := range fields {
		c, ok := col[f]
		if !ok {
			return nil, fmt.Errorf("%w: line 1: no column %q (columns: %s)", ErrFormat, f, strings.Join(head, ","))
		}
		idx[i] = c
	}
	s := &Series{Fields: append([]string(nil), fields...)}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil { // FieldPos panics after a failed Read; the csv error names the line
			return nil, fmt.Errorf("%w: %v", ErrFormat, err)
		}
		line, _ := cr.FieldPos(0)
		if len(s.Points) >= MaxRows {
			return nil, fmt.Errorf("%w: more than %d rows", ErrTooLarge, MaxRows)
		}
		if tc >= len(rec) {
			return nil, fmt.Errorf("%w: line %d: %d columns, no %q", ErrFormat, line, len(rec), timeColumn)
		}
		t, err := ParseTime(rec[tc])
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrFormat, line, err)
		}
		p := Point{T: t, Values: make([]any, len(idx)), Line: line}
		for i, c := range idx {
			if c < len(rec) {
				p.Values[i] = cell(rec[c])
			}
		}
		s.Points = append(s.Points, p)
	}
	if len(s.Points) == 0 {
		return nil, fmt.Errorf("%w: no rows", ErrFormat)
	}
	return s, nil
}

// cell reads a CSV cell: empty is nil, a finite number is float64, anything else the text.
func cell(v string) any {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
		return f
	}
	return v
}

// ParseTime reads RFC 3339, "2006-01-02 15:04:05" (UTC), or Unix seconds (or milliseconds,
// when the number is above 1e11).
func ParseTime(v string) (time.Time, error) {
	v = strings.TrimSpace(v)
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, v); err == nil {
			return t, nil
		}
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsNaN(f) && math.Abs(f) < 1e15 {
		if math.Abs(f) > 1e11 {
			return time.UnixMilli(int64(f)).UTC(), nil
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("bad timestamp %q", v)
}

// Schedule returns, for each point, when to send it from the start of the replay: the series
// time elapsed since the previous row divided by speed, where a step back counts as no time and
// a gap counts as at most maxGap (0: no cap). Offsets never decrease.
func (s *Series) Schedule(speed float64, maxGap time.Duration) []time.Duration {
	out := make([]time.Duration, len(s.Points))
	var at float64 // nanoseconds of replay time
	for i := 1; i < len(s.Points); i++ {
		d := s.Points[i].T.Sub(s.Points[i-1].T)
		if d < 0 {
			d = 0
		}
		if maxGap > 0 && d > maxGap {
			d = maxGap
		}
		at += float64(d) / speed
		out[i] = time.Duration(at)
	}
	return out
}

// Span is the replay time of one pass of the series: the last offset plus one typical step (the
// median step, so a loop restarts at a natural pace).
func (s *Series) Span(sched []time.Duration) time.Duration {
	if len(sched) < 2 {
		return time.Second
	}
	steps := make([]time.Duration, 0, len(sched)-1)
	for i := 1; i < len(sched); i++ {
		if d := sched[i] - sched[i-1]; d > 0 {
			steps = append(steps, d)
		}
	}
	step := time.Second
	if len(steps) > 0 {
		slices.Sort(steps)
		step = steps[len(steps)/2]
	}
	return sched[len(sched)-1] + step
}
