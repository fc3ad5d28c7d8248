package node

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/shared/contract"
	"github.com/driftline/driftline/shared/contract/rows"
	driftstat "github.com/driftline/driftline/shared/drift"
	"github.com/driftline/driftline/shared/profile"
)

// maxNotedViolations is how many violations of a sample the answer's notes quote.
const maxNotedViolations = 5

// NewSampleProcessor returns the SampleProcessor the API runs on a dataset version's upload.
// It parses the contract (a refused contract is an error wrapping api.ErrBadInput that lists
// every problem with its JSON path), streams the sample (format "csv" or "jsonl"; "jsonl" also
// reads a JSON array) through the contract's validator, profiles the valid rows into the
// reference profile with the columns agents use (shared/drift.Columns: every field), and, when the
// contract sets x-driftline.drift.calibrate, calibrates the thresholds of the scored features
// into it (fewer than two windows of valid rows is the client's error, as for the agent's
// offline `profile` command).
//
// Memory stays flat whatever the sample's size: rows are read one at a time, and calibration,
// which needs the finished reference before any window can be scored, spools the sample to a
// temporary file on the first pass and reads it again, scoring each window as it closes and
// keeping only running sums of the scores.
// Calibration spools the sample into spoolDir ("" means the system's temporary directory; the
// hub passes a directory inside its data dir).
func NewSampleProcessor(spoolDir string) api.SampleProcessor {
	return func(contractJSON []byte, sample io.Reader, format string) (api.SampleResult, error) {
		return processSampleIn(spoolDir, contractJSON, sample, format)
	}
}

// processSample is processSampleIn the system's temporary directory.
func processSample(contractJSON []byte, sample io.Reader, format string) (api.SampleResult, error) {
	return processSampleIn("", contractJSON, sample, format)
}

func processSampleIn(spoolDir string, contractJSON []byte, sample io.Reader, format string) (api.SampleResult, error) {
	schema, err := contract.Parse(contractJSON)
	if err != nil {
		var ce *contract.ContractError
		if errors.As(err, &ce) {
			msgs := make([]string, len(ce.Problems))
			for i, p := range ce.Problems {
				msgs[i] = p.String()
			}
			return api.SampleResult{}, fmt.Errorf("%w: contract refused (%d problems): %s", api.ErrBadInput, len(msgs), strings.Join(msgs, "; "))
		}
		return api.SampleResult{}, fmt.Errorf("%w: contract: %v", api.ErrBadInput, err)
	}
	var f rows.Format
	switch format {
	case "csv":
		f = rows.FormatCSV
	case "jsonl":
		f = rows.FormatJSON // JSONL, or a JSON array told apart by its first byte
	default:
		return api.SampleResult{}, fmt.Errorf("%w: sample format %q: send csv or jsonl", api.ErrBadInput, format)
	}
	res := api.SampleResult{ContractDigest: schema.Digest()}
	cols := driftstat.Columns(schema)
	windows := driftstat.CalibrationWindows(schema, 0)
	var spool *os.File
	var spoolBuf *bufio.Writer
	in := sample
	if len(windows) > 0 {
		if spool, err = os.CreateTemp(spoolDir, "driftline-calibrate-*"); err != nil {
			return api.SampleResult{}, fmt.Errorf("calibration spool: %w", err)
		}
		defer func() {
			spool.Close()
			os.Remove(spool.Name())
		}()
		spoolBuf = bufio.NewWriterSize(spool, 1<<20)
		in = io.TeeReader(sample, spoolBuf)
	}
	ref, err := profile.New(cols)
	if err != nil {
		return api.SampleResult{}, fmt.Errorf("%w: profile columns: %v", api.ErrBadInput, err)
	}
	n, bad, viol, err := scanSample(in, schema, f, ref.Add)
	if err != nil {
		return api.SampleResult{}, err
	}
	res.Rows, res.InvalidRows = n, bad
	res.Notes = violationNotes(n, bad, viol)
	if len(windows) > 0 {
		if err := spoolBuf.Flush(); err != nil {
			return api.SampleResult{}, fmt.Errorf("calibration spool: %w", err)
		}
		if _, err := spool.Seek(0, io.SeekStart); err != nil {
			return api.SampleResult{}, fmt.Errorf("calibration spool: %w", err)
		}
		notes, err := calibrate(bufio.NewReaderSize(spool, 1<<20), schema, f, cols, ref, windows)
		if err != nil {
			return api.SampleResult{}, err
		}
		res.Notes = append(res.Notes, notes...)
	}
	res.Profile = ref.Encode()
	return res, nil
}

// scanSample validates every row of r and passes each valid row's values (indexed like the
// schema's fields) to add. It returns the row count, the invalid row count and the first
// violations. Only a stream that cannot go on is an error (a bad CSV header, an over-long line
// or an empty sample is the client's).
func scanSample(r io.Reader, schema *contract.Schema, f rows.Format, add func([]contract.Value) error) (n, bad int64, first []contract.Violation, err error) {
	rd, err := rows.Open(r, f, schema)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("%w: %v", api.ErrBadInput, err)
	}
	v := contract.NewValidator(schema, contract.Options{})
	var raw contract.RawRow
	out := make([]contract.Value, len(schema.Fields))
	var dst []contract.Violation
	for {
		err := rd.Next(&raw)
		if err == io.EOF {
			if n == 0 {
				return 0, 0, nil, fmt.Errorf("%w: the sample has no rows", api.ErrBadInput)
			}
			return n, bad, first, nil
		}
		if errors.Is(err, rows.ErrBadHeader) || errors.Is(err, rows.ErrLineTooLong) {
			return n, bad, first, fmt.Errorf("%w: sample row %d: %v", api.ErrBadInput, n+1, err)
		}
		if err != nil {
			return n, bad, first, fmt.Errorf("read sample: %w", err)
		}
		n++
		var ok bool
		dst, ok = v.Validate(&raw, out, dst[:0])
		if !ok {
			bad++
			for _, vi := range dst {
				if len(first) < maxNotedViolations {
					first = append(first, vi)
				}
			}
			continue
		}
		if err := add(out); err != nil {
			return n, bad, first, fmt.Errorf("profile sample row %d: %w", n, err)
		}
	}
}

func violationNotes(n, bad int64, first []contract.Violation) []string {
	var notes []string
	if bad > 0 {
		notes = append(notes, fmt.Sprintf("%d of %d rows are invalid and are not in the reference profile", bad, n))
		for _, v := range first {
			notes = append(notes, fmt.Sprintf("row %d: field %q breaks %s (value %q)", v.Row, v.Field, v.Rule, v.Value))
		}
	}
	return notes
}

// scoreStats is Welford's running mean and variance of one feature's window scores.
type scoreStats struct {
	method driftstat.Method
	n      int
	mean   float64
	m2     float64
}

func (s *scoreStats) add(x float64) {
	s.n++
	d := x - s.mean
	s.mean += d / float64(s.n)
	s.m2 += d * (x - s.mean)
}

// calibrate reads the sample again, cuts its valid rows into consecutive windows of each
// requested size (a trailing partial window is dropped), scores each window against the
// finished reference as it closes, and stores mean + factor*sd (distances) or
// max(0, mean - factor*sd) (p-values) per feature in ref: drift.Calibrate's rule, computed
// from running sums so that no window outlives its scoring.
func calibrate(r io.Reader, schema *contract.Schema, f rows.Format, cols []profile.Column, ref *profile.Profile, windows map[int][]string) ([]string, error) {
	factor := schema.Driftline.Drift.Factor
	if factor <= 0 {
		factor = driftstat.DefaultFactor
	}
	sizes := make([]int, 0, len(windows))
	for size := range windows {
		sizes = append(sizes, size)
	}
	sort.Ints(sizes)
	base, err := driftstat.ContractOptions(schema)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", api.ErrBadInput, err)
	}
	base.IgnoreCalibration = true
	type group struct {
		size  int
		cur   *profile.Profile
		opts  driftstat.Options
		count int
	}
	groups := make([]*group, len(sizes))
	for i, size := range sizes {
		o := base
		o.Only = windows[size]
		groups[i] = &group{size: size, opts: o}
	}
	stats := map[string]*scoreStats{}
	var scoreErr error
	_, _, _, err = scanSample(r, schema, f, func(row []contract.Value) error {
		for _, g := range groups {
			if g.cur == nil {
				var err error
				if g.cur, err = profile.New(cols); err != nil {
					return err
				}
			}
			if err := g.cur.Add(row); err != nil {
				return err
			}
			if g.cur.Rows() < uint64(g.size) {
				continue
			}
			rep, err := driftstat.Compare(ref, g.cur, g.opts)
			if err != nil {
				scoreErr = fmt.Errorf("%w: calibration window %d of %d rows: %v", api.ErrBadInput, g.count+1, g.size, err)
				return scoreErr
			}
			g.count++
			g.cur = nil
			for name, fr := range rep.Features {
				if fr.Skipped != "" || math.IsNaN(fr.Score) || math.IsInf(fr.Score, 0) {
					continue
				}
				st := stats[name]
				if st == nil {
					st = &scoreStats{method: fr.Method}
					stats[name] = st
				}
				st.add(fr.Score)
			}
		}
		return nil
	})
	if scoreErr != nil {
		return nil, scoreErr
	}
	if err != nil {
		return nil, fmt.Errorf("calibration pass: %w", err)
	}
	var notes []string
	for _, g := range groups {
		if g.count < 2 {
			return nil, fmt.Errorf("%w: calibration on windows of %d rows needs at least 2 windows of valid rows, the sample has %d: %w",
				api.ErrBadInput, g.size, g.count, driftstat.ErrTooFewWindows)
		}
		notes = append(notes, fmt.Sprintf("calibration: %d windows of %d rows for %s (factor %g)", g.count, g.size, strings.Join(g.opts.Only, ", "), factor))
	}
	asked := map[string]bool{}
	for _, names := range windows {
		for _, name := range names {
			asked[name] = true
		}
	}
	for _, c := range cols {
		name := c.Name
		st := stats[name]
		if st == nil || st.n < 2 {
			if asked[name] {
				notes = append(notes, fmt.Sprintf("calibration: %s scored in fewer than 2 windows: default threshold kept", name))
			}
			continue
		}
		sd := math.Sqrt(st.m2 / float64(st.n-1))
		t := st.mean + factor*sd
		if st.method.IsPValue() {
			t = max(0, st.mean-factor*sd)
		}
		if err := ref.SetThreshold(name, profile.Threshold{Method: string(st.method), Value: t}); err != nil {
			return nil, fmt.Errorf("calibration: %w", err)
		}
		notes = append(notes, fmt.Sprintf("calibration: %s threshold %s %.6g (mean %.6g, sd %.6g over %d windows)", name, st.method, t, st.mean, sd, st.n))
	}
	return notes, nil
}
