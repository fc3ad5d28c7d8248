package pipeline

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/contract/rows"
	"github.com/driftline/driftline/shared/drift"
	"github.com/driftline/driftline/shared/profile"
	"github.com/driftline/driftline/shared/reference"
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

// BuildProfile profiles the valid rows of a CSV or JSONL file as a reference with
// shared/reference.Build, as the hub does for a dataset push. With calibrate > 0, or
// x-driftline.drift.calibrate in the contract (schema level, or per field, which wins for its
// field), each scored feature's threshold is calibrated on windows of that many valid rows and
// stored in the profile; calibrate overrides the contract's settings. The file is read twice
// when calibrating, once otherwise. The summary counts the rows of the first pass (invalid rows
// are left out of the profile). A file without a valid row, or with too few valid rows to
// calibrate, is bad input.
func BuildProfile(s *contract.Schema, path string, calibrate int) (*profile.Profile, Summary, error) {
	res, sum, err := buildFile(s, path, reference.Options{Calibrate: calibrate})
	if err != nil {
		return nil, sum, err
	}
	return res.Profile, sum, nil
}

// profileFile validates every row of a file (uniqueness over the whole file) and profiles the
// valid ones, in constant memory. A file without a valid row gives an empty profile: it is
// data to check, not a reference.
func profileFile(s *contract.Schema, path string) (*profile.Profile, Summary, error) {
	res, sum, err := buildFile(s, path, reference.Options{Calibrate: -1, AllowNoValidRows: true})
	if err != nil {
		return nil, sum, err
	}
	return res.Profile, sum, nil
}

// buildFile runs reference.Build on a file, counting every row into a Summary. Errors wrap
// ErrBadInput.
func buildFile(s *contract.Schema, path string, opts reference.Options) (*reference.Result, Summary, error) {
	sum := newSummary()
	format, err := rows.FormatOf(filepath.Base(path))
	if err != nil {
		return nil, sum, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, sum, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	defer f.Close()
	opts.OnRow = sum.add
	res, err := reference.Build(s, f, format, opts)
	if err != nil {
		return nil, sum, fmt.Errorf("%w: %s: %w", ErrBadInput, path, err)
	}
	return res, sum, nil
}
