// Package reference builds a dataset's reference profile from its sample: one streaming pass
// validates every row against the contract and profiles the valid ones with the columns agents
// use (shared/drift.Columns), and, when the contract (or the caller) asks for calibration, a
// second pass cuts the valid rows into windows and learns each scored feature's threshold
// (shared/drift.Calibrator). The hub's dataset push and the agent's offline `profile` and
// `check` commands both call Build, so a reference is the same whoever computes it. See
// DESIGN.md.
package reference

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/contract/rows"
	"github.com/driftline/driftline/shared/drift"
	"github.com/driftline/driftline/shared/profile"
)

// ErrBadSample wraps every reason a sample cannot give a reference that is the sample's (or
// the contract's) fault: an unreadable CSV header or over-long line, no rows, no valid rows,
// too few valid rows to calibrate (also wrapping drift.ErrTooFewWindows). Other errors are
// I/O failures.
var ErrBadSample = errors.New("bad sample")

// Defaults of Options.
const (
	// DefaultMinValidShare is the share of valid rows below which Build warns.
	DefaultMinValidShare = 0.9
	// DefaultMaxViolations is how many violations Result.Violations quotes.
	DefaultMaxViolations = 5
)

// Options tunes Build. The zero value follows the contract.
type Options struct {
	// Calibrate, when positive, calibrates every scored feature on windows of this many valid
	// rows, overriding the contract's x-driftline.drift.calibrate; negative turns calibration
	// off (profiling data to check rather than a reference).
	Calibrate int
	// AllowNoValidRows accepts rows none of which is valid, or no rows at all, and returns an
	// empty profile: for data being checked, where that is the finding, not for a reference.
	AllowNoValidRows bool
	// OnRow, when set, is called once per row of the first pass, in order, with the row's
	// violations (none for a valid row); the slice is reused after the call.
	OnRow func(vs []contract.Violation)
	// MinValidShare is the share of valid rows below which Result.Warnings says so (default
	// DefaultMinValidShare; negative: never).
	MinValidShare float64
	// MaxViolations is how many violations Result.Violations keeps (default
	// DefaultMaxViolations).
	MaxViolations int
	// TempDir is where a sample that cannot seek is spooled for the calibration pass ("" is
	// os.TempDir()).
	TempDir string
}

// Result is a built reference.
type Result struct {
	// Profile is the reference profile of the valid rows, with calibrated thresholds.
	Profile *profile.Profile
	// Rows counts the sample's rows, InvalidRows those that broke the contract (left out of
	// the profile).
	Rows, InvalidRows int64
	// Violations are the first violations, in row order.
	Violations []contract.Violation
	// Calibrations are the learned thresholds, by feature name.
	Calibrations []drift.Calibration
	// Warnings say what a person should look at before using the reference (a low valid
	// share); they are also in Notes, prefixed "warning: ".
	Warnings []string
	// Notes describe the build for a person: invalid rows, warnings, calibration.
	Notes []string
}

// Build validates and profiles the rows of r (format f) against s and calibrates thresholds
// when asked. Memory stays flat whatever the sample's size: rows are read one at a time; the
// calibration pass, which needs the finished reference, seeks r back when it is an
// io.ReadSeeker and otherwise reads a temporary copy spooled during the first pass, scoring
// each window as it closes. Errors caused by the sample wrap ErrBadSample.
func Build(s *contract.Schema, r io.Reader, f rows.Format, opts Options) (*Result, error) {
	if opts.MinValidShare == 0 {
		opts.MinValidShare = DefaultMinValidShare
	}
	if opts.MaxViolations <= 0 {
		opts.MaxViolations = DefaultMaxViolations
	}
	cols := drift.Columns(s)
	ref, err := profile.New(cols)
	if err != nil {
		return nil, fmt.Errorf("%w: profile columns: %w", ErrBadSample, err)
	}
	var groups map[int][]string
	if opts.Calibrate >= 0 {
		groups = drift.CalibrationWindows(s, opts.Calibrate)
	}
	in, again, cleanup, err := rewindable(r, len(groups) > 0, opts.TempDir)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	res := &Result{Profile: ref}
	err = scan(in, s, f, func(out []contract.Value, vs []contract.Violation) error {
		res.Rows++
		if opts.OnRow != nil {
			opts.OnRow(vs)
		}
		if len(vs) > 0 {
			res.InvalidRows++
			for _, v := range vs {
				if len(res.Violations) < opts.MaxViolations {
					res.Violations = append(res.Violations, v)
				}
			}
			return nil
		}
		return ref.Add(out)
	})
	if err != nil {
		return nil, err
	}
	if err := res.judge(opts.MinValidShare, opts.AllowNoValidRows); err != nil {
		return nil, err
	}
	if len(groups) == 0 {
		return res, nil
	}
	second, err := again()
	if err != nil {
		return nil, err
	}
	if err := res.calibrate(s, f, second, groups); err != nil {
		return nil, err
	}
	return res, nil
}

// judge refuses a sample without rows or valid rows, and notes invalid rows and a low valid
// share.
func (res *Result) judge(minShare float64, allowEmpty bool) error {
	valid := res.Rows - res.InvalidRows
	switch {
	case allowEmpty && valid == 0:
		return nil
	case res.Rows == 0:
		return fmt.Errorf("%w: the sample has no rows", ErrBadSample)
	case valid == 0:
		return fmt.Errorf("%w: none of the sample's %d rows is valid, so there is nothing to profile; first problems: %s",
			ErrBadSample, res.Rows, strings.Join(Describe(res.Violations), "; "))
	}
	if res.InvalidRows == 0 {
		return nil
	}
	if share := float64(valid) / float64(res.Rows); share < minShare {
		w := fmt.Sprintf("only %d of %d rows (%.1f%%) are valid, below %.0f%%: the reference describes the valid rows only; check the sample's columns and the contract",
			valid, res.Rows, 100*share, 100*minShare)
		res.Warnings = append(res.Warnings, w)
		res.Notes = append(res.Notes, "warning: "+w)
	}
	res.Notes = append(res.Notes, fmt.Sprintf("%d of %d rows are invalid and are not in the reference profile", res.InvalidRows, res.Rows))
	for _, d := range Describe(res.Violations) {
		res.Notes = append(res.Notes, d)
	}
	return nil
}

// Describe renders violations for a person, one line each.
func Describe(vs []contract.Violation) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		switch {
		case v.Field == "":
			out[i] = fmt.Sprintf("row %d: %s (%s)", v.Row, v.Message, v.Rule)
		default:
			out[i] = fmt.Sprintf("row %d: field %q breaks %s (value %q)", v.Row, v.Field, v.Rule, v.Value)
		}
	}
	return out
}

// window is the open calibration window of one size.
type window struct {
	size int
	cur  *profile.Profile
	cal  *drift.Calibrator
	only []string
}

// calibrate reads the sample again and feeds each group's calibrator its windows of valid
// rows (a trailing partial window is dropped), then stores the thresholds in the profile.
func (res *Result) calibrate(s *contract.Schema, f rows.Format, r io.Reader, groups map[int][]string) error {
	base, err := drift.ContractOptions(s)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadSample, err)
	}
	cols := drift.Columns(s)
	var ws []*window
	for _, size := range slices.Sorted(maps.Keys(groups)) {
		o := base
		o.Only = groups[size]
		cal, err := drift.NewCalibrator(res.Profile, drift.CalibrateOptions{Factor: s.Driftline.Drift.Factor, Compare: o})
		if err != nil {
			return fmt.Errorf("%w: calibration: %w", ErrBadSample, err)
		}
		ws = append(ws, &window{size: size, cal: cal, only: o.Only})
	}
	err = scan(r, s, f, func(out []contract.Value, vs []contract.Violation) error {
		if len(vs) > 0 {
			return nil
		}
		for _, w := range ws {
			if w.cur == nil {
				var err error
				if w.cur, err = profile.New(cols); err != nil {
					return err
				}
			}
			if err := w.cur.Add(out); err != nil {
				return err
			}
			if w.cur.Rows() < uint64(w.size) {
				continue
			}
			if err := w.cal.Add(w.cur); err != nil {
				return fmt.Errorf("%w: %w", ErrBadSample, err)
			}
			w.cur = nil
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("calibration pass: %w", err)
	}
	factor := s.Driftline.Drift.Factor
	if factor <= 0 {
		factor = drift.DefaultFactor
	}
	for _, w := range ws {
		cals, err := w.cal.Result()
		if err != nil {
			return fmt.Errorf("%w: calibration on windows of %d rows needs at least 2 windows of valid rows, the sample has %d: %w",
				ErrBadSample, w.size, w.cal.Windows(), err)
		}
		res.Notes = append(res.Notes, fmt.Sprintf("calibration: %d windows of %d rows for %s (factor %g)", w.cal.Windows(), w.size, strings.Join(w.only, ", "), factor))
		done := map[string]bool{}
		for _, c := range cals {
			if err := res.Profile.SetThreshold(c.Feature, c.Threshold); err != nil {
				return fmt.Errorf("calibration: %w", err)
			}
			done[c.Feature] = true
			res.Calibrations = append(res.Calibrations, c)
			res.Notes = append(res.Notes, c.String())
		}
		for _, name := range w.only {
			if !done[name] {
				res.Notes = append(res.Notes, fmt.Sprintf("calibration: %s scored in fewer than 2 windows: default threshold kept", name))
			}
		}
	}
	slices.SortFunc(res.Calibrations, func(a, b drift.Calibration) int { return strings.Compare(a.Feature, b.Feature) })
	return nil
}

// rewindable returns the reader of the first pass and a function that returns a reader of the
// same bytes for the second: r itself sought back, or a spooled copy. Without a second pass it
// returns r as it is.
func rewindable(r io.Reader, twice bool, dir string) (first io.Reader, again func() (io.Reader, error), cleanup func(), err error) {
	noop := func() {}
	if !twice {
		return r, nil, noop, nil
	}
	if rs, ok := r.(io.ReadSeeker); ok {
		if start, err := rs.Seek(0, io.SeekCurrent); err == nil {
			return r, func() (io.Reader, error) {
				if _, err := rs.Seek(start, io.SeekStart); err != nil {
					return nil, fmt.Errorf("calibration: rewind the sample: %w", err)
				}
				return rs, nil
			}, noop, nil
		}
	}
	spool, err := os.CreateTemp(dir, "driftline-calibrate-*")
	if err != nil {
		return nil, nil, noop, fmt.Errorf("calibration spool: %w", err)
	}
	cleanup = func() {
		spool.Close()
		os.Remove(spool.Name())
	}
	buf := bufio.NewWriterSize(spool, 1<<20)
	return io.TeeReader(r, buf), func() (io.Reader, error) {
		if err := buf.Flush(); err != nil {
			return nil, fmt.Errorf("calibration spool: %w", err)
		}
		if _, err := spool.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("calibration spool: %w", err)
		}
		return bufio.NewReaderSize(spool, 1<<20), nil
	}, cleanup, nil
}

// scan reads and validates every row of r, calling fn with its values (indexed like the
// schema's fields) and violations. Only a stream that cannot go on is an error: an unreadable
// CSV header or an over-long CSV line is the sample's (ErrBadSample), anything else an I/O
// failure.
func scan(r io.Reader, s *contract.Schema, f rows.Format, fn func(out []contract.Value, vs []contract.Violation) error) error {
	rd, err := rows.Open(r, f, s)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadSample, err)
	}
	v := contract.NewValidator(s, contract.Options{})
	var raw contract.RawRow
	out := make([]contract.Value, len(s.Fields))
	var vs []contract.Violation
	for {
		err := rd.Next(&raw)
		if err == io.EOF {
			return nil
		}
		if errors.Is(err, rows.ErrBadHeader) || errors.Is(err, rows.ErrLineTooLong) {
			return fmt.Errorf("%w: after row %d: %w", ErrBadSample, raw.Num, err)
		}
		if err != nil {
			return fmt.Errorf("read sample: %w", err)
		}
		vs, _ = v.Validate(&raw, out, vs[:0])
		if err := fn(out, vs); err != nil {
			return err
		}
	}
}

// Scan reads and validates every row of r against s, calling fn with each row's values
// (indexed like s.Fields, reused after the call) and violations (none for a valid row). A
// stream that cannot go on is an error (ErrBadSample for an unreadable CSV header or an
// over-long line). shared/outputs scores a validation sample with it.
func Scan(r io.Reader, s *contract.Schema, f rows.Format, fn func(out []contract.Value, vs []contract.Violation) error) error {
	return scan(r, s, f, fn)
}
