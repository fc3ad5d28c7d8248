package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"

	"github.com/spf13/cobra"

	"github.com/driftline/driftline/agent/pipeline"
	"github.com/driftline/driftline/shared/contract"
)

func init() { Register(checkCmd) }

// Output formats of the offline commands.
const (
	outputJSON = "json"
	outputText = "text"
)

func checkCmd() *cobra.Command {
	var opts pipeline.CheckOptions
	var output string
	cmd := &cobra.Command{
		Use:   "check --contract C.json [--reference REF.csv | --profile P] [--calibrate ROWS] [-o json|text] DATA.csv|DATA.jsonl",
		Short: "Validate a data file against a contract and score its drift against a reference",
		Long: `check validates every row of DATA against the contract and, with --reference (rows,
profiled with the contract) or --profile (from "driftline-agent profile"), scores the drift of
DATA as one window against the reference. The report is JSON (-o json, the default when stdout
is not a terminal) or a readable summary (-o text).

Exit status: 0 when the rows pass and the dataset does not drift, 1 when rows are invalid
(below the contract's x-driftline.mostly share) or the dataset drifts, 2 on bad input.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := outputFormat(output, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			opts.Data = args[0]
			rep, err := pipeline.Check(opts)
			if err != nil {
				return badInput(cmd.ErrOrStderr(), err)
			}
			if format == outputJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				writeCheckText(cmd.OutOrStdout(), rep)
			}
			if !rep.Clean() {
				return ExitError{Code: ExitFailure, Err: errors.New("invalid rows or dataset drift found")}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Contract, "contract", "", "data contract (Table Schema JSON with x-driftline extensions); required")
	f.StringVar(&opts.Reference, "reference", "", "reference rows (CSV or JSONL) to profile with the contract")
	f.StringVar(&opts.Profile, "profile", "", "reference profile written by driftline-agent profile")
	f.IntVar(&opts.Calibrate, "calibrate", 0, "calibrate thresholds on windows of ROWS reference rows (needs --reference)")
	f.StringVarP(&output, "output", "o", "", "report format: json or text (default json unless stdout is a terminal)")
	return cmd
}

// outputFormat resolves -o: explicit, or json unless w is a terminal.
func outputFormat(flag string, w io.Writer) (string, error) {
	switch flag {
	case outputJSON, outputText:
		return flag, nil
	case "":
		if isTerminal(w) {
			return outputText, nil
		}
		return outputJSON, nil
	}
	return "", fmt.Errorf("%w: -o %q: want json or text", ErrUsage, flag)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// badInput prints every problem of a refused contract, one per line, and returns the error
// that exits 2.
func badInput(stderr io.Writer, err error) error {
	var ce *contract.ContractError
	if errors.As(err, &ce) {
		fmt.Fprintf(stderr, "the contract has %d problem(s):\n", len(ce.Problems))
		for _, p := range ce.Problems {
			fmt.Fprintf(stderr, "  %s\n", p)
		}
	}
	return ExitError{Code: ExitUsage, Err: err}
}

func writeCheckText(w io.Writer, r *pipeline.CheckReport) {
	verdict := "clean"
	if !r.Clean() {
		verdict = "NOT CLEAN"
	}
	fmt.Fprintf(w, "%s: %d rows, %d valid, %d invalid\n", verdict, r.Rows, r.ValidRows, r.InvalidRows)
	for _, field := range slices.Sorted(maps.Keys(r.ViolationCounts)) {
		for _, rule := range slices.Sorted(maps.Keys(r.ViolationCounts[field])) {
			name := field
			if name == "" {
				name = "(row)"
			}
			fmt.Fprintf(w, "  %-20s %-18s %d\n", name, rule, r.ViolationCounts[field][rule])
		}
	}
	for i, v := range r.Violations {
		if i == 10 {
			fmt.Fprintf(w, "  ... (%d listed in -o json)\n", len(r.Violations))
			break
		}
		fmt.Fprintf(w, "  row %d: %s %s %q\n", v.Row, v.Field, v.Rule, v.Value)
	}
	if r.Drift == nil {
		fmt.Fprintln(w, "drift: no reference given")
		return
	}
	fmt.Fprintf(w, "drift: dataset drift %v, share %.2f (%d of %d features, threshold %.2f)\n",
		r.Drift.DatasetDrift, r.Drift.DriftShare, r.Drift.Drifted, r.Drift.Scored, r.Drift.ShareThreshold)
	for _, name := range slices.Sorted(maps.Keys(r.Drift.Features)) {
		fr := r.Drift.Features[name]
		if fr.Skipped != "" {
			fmt.Fprintf(w, "  %-20s skipped: %s\n", name, fr.Skipped)
			continue
		}
		mark := ""
		if fr.Drift {
			mark = "  DRIFT"
		}
		fmt.Fprintf(w, "  %-20s %-13s %s %.4g threshold %.4g%s\n", name, fr.Method, fr.ScoreType, fr.Score, fr.Threshold, mark)
	}
}
