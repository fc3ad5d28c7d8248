package pipeline

import (
	"errors"
	"fmt"
	"io"
	"iter"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/contract/rows"
	"github.com/driftline/driftline/shared/drift"
	"github.com/driftline/driftline/shared/profile"
)

// ErrBadInput wraps every reason an offline command cannot produce its report: an unreadable
// file, a refused contract (errors.As finds the *contract.ContractError with every problem),
// an undecodable profile, conflicting options. `driftline-agent` exits 2 on it.
var ErrBadInput = errors.New("bad input")

// CheckOptions are the inputs of `driftline-agent check`.
type CheckOptions struct {
	// Contract is the path of the Table Schema contract (required).
	Contract string
	// Reference is a CSV or JSONL file of reference rows, profiled with the contract.
	Reference string
	// Profile is an encoded reference profile (from `driftline-agent profile`). At most one of
	// Reference and Profile.
	Profile string
	// Calibrate, when positive, calibrates thresholds on windows of this many reference rows
	// (needs Reference); it overrides the contract's x-driftline.drift.calibrate settings.
	Calibrate int
	// Data is the CSV or JSONL file to check (required).
	Data string
}

// CheckReport is the report of `driftline-agent check`: the validation summary of the data
// and, when a reference was given, its drift against the reference (the whole file is one
// window).
type CheckReport struct {
	Summary
	// Passes says the valid share meets the contract's x-driftline.mostly (default: every row).
	Passes bool `json:"passes"`
	// Drift is nil (null) without a reference.
	Drift *drift.Report `json:"drift"`
}

// Clean reports whether the check found nothing: the rows pass and the dataset does not drift.
// `driftline-agent check` exits 0 when it is true, 1 otherwise.
func (r *CheckReport) Clean() bool {
	return r.Passes && (r.Drift == nil || !r.Drift.DatasetDrift)
}

// Check validates and profiles opts.Data against the contract and scores its drift against
// the reference. Errors wrap ErrBadInput.
func Check(opts CheckOptions) (*CheckReport, error) {
	if opts.Contract == "" || opts.Data == "" {
		return nil, fmt.Errorf("%w: a contract and a data file are required", ErrBadInput)
	}
	if opts.Reference != "" && opts.Profile != "" {
		return nil, fmt.Errorf("%w: give --reference or --profile, not both", ErrBadInput)
	}
	if opts.Calibrate < 0 || (opts.Calibrate > 0 && opts.Reference == "") {
		return nil, fmt.Errorf("%w: --calibrate needs --reference rows and a positive window", ErrBadInput)
	}
	s, err := LoadContract(opts.Contract)
	if err != nil {
		return nil, err
	}
	var ref *profile.Profile
	switch {
	case opts.Profile != "":
		if ref, err = LoadProfile(opts.Profile); err != nil {
			return nil, err
		}
	case opts.Reference != "":
		if ref, _, err = BuildProfile(s, opts.Reference, opts.Calibrate); err != nil {
			return nil, err
		}
	}
	cur, sum, err := profileFile(s, opts.Data)
	if err != nil {
		return nil, err
	}
	rep := &CheckReport{Summary: sum, Passes: s.Passes(sum.ValidRows, sum.Rows)}
	if ref != nil {
		dopts, ok, err := DriftOptions(s, ref)
		if err != nil || !ok {
			return nil, fmt.Errorf("%w: the reference profile shares no feature with the contract (%v)", ErrBadInput, err)
		}
		if rep.Drift, err = drift.Compare(ref, cur, dopts); err != nil {
			return nil, fmt.Errorf("%w: drift: %w", ErrBadInput, err)
		}
	}
	return rep, nil
}

// LoadContract reads and parses a contract file. Errors wrap ErrBadInput (and, for a refused
// contract, the *contract.ContractError listing every problem).
func LoadContract(path string) (*contract.Schema, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: contract: %w", ErrBadInput, err)
	}
	s, err := contract.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%w: contract %s: %w", ErrBadInput, path, err)
	}
	return s, nil
}

// maxProfileFile bounds a profile file read (an encoded profile is tens of KiB per column).
const maxProfileFile = 64 << 20

// LoadProfile reads and decodes an encoded profile file. Errors wrap ErrBadInput.
func LoadProfile(path string) (*profile.Profile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: profile: %w", ErrBadInput, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxProfileFile+1))
	if err != nil {
		return nil, fmt.Errorf("%w: profile %s: %w", ErrBadInput, path, err)
	}
	if len(b) > maxProfileFile {
		return nil, fmt.Errorf("%w: profile %s is over %d bytes", ErrBadInput, path, maxProfileFile)
	}
	p, err := profile.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("%w: profile %s: %w", ErrBadInput, path, err)
	}
	return p, nil
}

// BuildProfile profiles the valid rows of a CSV or JSONL file as a reference. With calibrate
// > 0, or x-driftline.drift.calibrate in the contract (schema level, or per field, which wins
// for its field), each feature's threshold is calibrated on windows of that many rows and
// stored in the profile; calibrate overrides the contract's settings. The file is read once,
// plus once per distinct calibration window size. The summary counts the rows of the first
// pass (invalid rows are left out of the profile).
func BuildProfile(s *contract.Schema, path string, calibrate int) (*profile.Profile, Summary, error) {
	ref, sum, err := profileFile(s, path)
	if err != nil {
		return nil, sum, err
	}
	groups := drift.CalibrationWindows(s, calibrate)
	if len(groups) == 0 {
		return ref, sum, nil
	}
	dopts, ok, err := DriftOptions(s, ref)
	if err != nil || !ok {
		return nil, sum, fmt.Errorf("%w: calibration: no feature to calibrate (%v)", ErrBadInput, err)
	}
	factor := s.Driftline.Drift.Factor
	if factor == 0 {
		factor = drift.DefaultFactor
	}
	for _, size := range slices.Sorted(maps.Keys(groups)) {
		co := dopts
		co.Only = groups[size]
		th, err := calibrateStream(s, path, ref, size, factor, co)
		if err != nil {
			return nil, sum, err
		}
		if err := drift.Apply(ref, th); err != nil {
			return nil, sum, fmt.Errorf("%w: calibration: %w", ErrBadInput, err)
		}
	}
	return ref, sum, nil
}

// openRows opens a data file by its extension.
func openRows(s *contract.Schema, path string) (rows.Reader, io.Closer, error) {
	format, err := rows.FormatOf(filepath.Base(path))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	r, err := rows.Open(f, format, s)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%w: %s: %w", ErrBadInput, path, err)
	}
	return r, f, nil
}

// profileFile validates every row of a file (uniqueness over the whole file) and profiles the
// valid ones, in constant memory.
func profileFile(s *contract.Schema, path string) (*profile.Profile, Summary, error) {
	sum := newSummary()
	p, err := profile.New(drift.Columns(s))
	if err != nil {
		return nil, sum, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	err = eachRow(s, path, func(out []contract.Value, vs []contract.Violation) error {
		sum.add(vs)
		if len(vs) == 0 {
			return p.Add(out)
		}
		return nil
	})
	return p, sum, err
}

// calibrateStream scores each consecutive window of size valid rows of the file against ref
// (a trailing partial window is dropped) and returns per feature mean + factor x sd of the
// scores (max(0, mean - factor x sd) for p-values), as drift.Calibrate does. It keeps only the
// scores, not the windows, so memory stays flat however many windows the file holds (a test
// checks it agrees with drift.CalibrateRows).
func calibrateStream(s *contract.Schema, path string, ref *profile.Profile, size int, factor float64, co drift.Options) (map[string]profile.Threshold, error) {
	co.IgnoreCalibration = true
	cols := drift.Columns(s)
	scores := map[string][]float64{}
	methods := map[string]drift.Method{}
	windows := 0
	var cur *profile.Profile
	var readErr error
	for row := range validRows(s, path, &readErr) {
		if cur == nil {
			var err error
			if cur, err = profile.New(cols); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrBadInput, err)
			}
		}
		if err := cur.Add(row); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadInput, err)
		}
		if cur.Rows() < uint64(size) {
			continue
		}
		rep, err := drift.Compare(ref, cur, co)
		if err != nil {
			return nil, fmt.Errorf("%w: calibration window %d: %w", ErrBadInput, windows, err)
		}
		for name, fr := range rep.Features {
			if fr.Skipped == "" {
				scores[name] = append(scores[name], fr.Score)
				methods[name] = fr.Method
			}
		}
		windows++
		cur = nil
	}
	if readErr != nil {
		return nil, readErr
	}
	if windows < 2 {
		return nil, fmt.Errorf("%w: calibration on windows of %d rows: %w: got %d", ErrBadInput, size, drift.ErrTooFewWindows, windows)
	}
	out := map[string]profile.Threshold{}
	for name, sc := range scores {
		if len(sc) < 2 {
			continue
		}
		var mean, ss float64
		for _, v := range sc {
			mean += v
		}
		mean /= float64(len(sc))
		for _, v := range sc {
			ss += (v - mean) * (v - mean)
		}
		sd := math.Sqrt(ss / float64(len(sc)-1))
		t := mean + factor*sd
		if methods[name].IsPValue() {
			t = max(0, mean-factor*sd)
		}
		out[name] = profile.Threshold{Method: string(methods[name]), Value: t}
	}
	return out, nil
}

// validRows yields the valid rows of a file; a read failure ends the sequence and is stored
// in *errp.
func validRows(s *contract.Schema, path string, errp *error) iter.Seq[[]contract.Value] {
	return func(yield func([]contract.Value) bool) {
		stop := errors.New("stop")
		err := eachRow(s, path, func(out []contract.Value, vs []contract.Violation) error {
			if len(vs) == 0 && !yield(out) {
				return stop
			}
			return nil
		})
		if err != nil && !errors.Is(err, stop) {
			*errp = err
		}
	}
}

// eachRow reads and validates every row of a file, calling fn with its values and violations.
func eachRow(s *contract.Schema, path string, fn func(out []contract.Value, vs []contract.Violation) error) error {
	r, c, err := openRows(s, path)
	if err != nil {
		return err
	}
	defer c.Close()
	v := contract.NewValidator(s, contract.Options{})
	out := make([]contract.Value, len(s.Fields))
	var row contract.RawRow
	var vs []contract.Violation
	for {
		err := r.Next(&row)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %s after row %d: %w", ErrBadInput, path, row.Num, err)
		}
		vs, _ = v.Validate(&row, out, vs[:0])
		if err := fn(out, vs); err != nil {
			return err
		}
	}
}
