package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/driftline/driftline/agent/pipeline"
	"github.com/driftline/driftline/shared/contract"
)

func init() { Register(profileCmd) }

func profileCmd() *cobra.Command {
	var contractPath, out string
	var calibrate int
	cmd := &cobra.Command{
		Use:   "profile DATA.csv|DATA.jsonl -o P [--contract C.json] [--calibrate ROWS]",
		Short: "Write the reference profile of a data file",
		Long: `profile reads DATA once (streaming, in constant memory) and writes the mergeable profile
of its valid rows to P, the reference "check --profile" and the agent compare windows with.
Without --contract the column types are guessed from the first 1,000 rows. --calibrate ROWS
(or x-driftline.drift.calibrate in the contract) stores per-feature thresholds calibrated on
windows of ROWS rows. Invalid rows are counted on stderr and left out.

Exit status: 0 when the profile is written, 2 on bad input.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("%w: -o P is required", ErrUsage)
			}
			var s *contract.Schema
			var err error
			if contractPath != "" {
				s, err = pipeline.LoadContract(contractPath)
			} else {
				s, err = pipeline.InferContract(args[0])
			}
			if err != nil {
				return badInput(cmd.ErrOrStderr(), err)
			}
			p, sum, err := pipeline.BuildProfile(s, args[0], calibrate)
			if err != nil {
				return badInput(cmd.ErrOrStderr(), err)
			}
			if err := writeFileAtomic(out, p.Encode()); err != nil {
				return ExitError{Code: ExitUsage, Err: err}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "profiled %d valid rows of %d (%d invalid, left out) into %s\n",
				sum.ValidRows, sum.Rows, sum.InvalidRows, out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&out, "output", "o", "", "profile file to write; required")
	f.StringVar(&contractPath, "contract", "", "data contract (default: types guessed from the data)")
	f.IntVar(&calibrate, "calibrate", 0, "calibrate thresholds on windows of ROWS rows")
	return cmd
}

// writeFileAtomic writes b to path through a temporary file and a rename.
func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
