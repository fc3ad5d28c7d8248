package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/devicedb"
	"github.com/driftline/driftline/agent/quarantine"
)

func init() { Register(quarantineCmd) }

func quarantineCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "quarantine list|export --state-dir DIR",
		Short: "Show the invalid rows the agent quarantined",
		Long: `quarantine reads the quarantine of a stopped agent's state directory (badger allows one
process at a time). list prints a table, one line per violation; export writes one JSON object
per quarantined row (JSONL) with seq, time, source, row and violations (field, rule, value).`,
	}
	cmd.AddCommand(quarantineSub("list", "Print quarantined rows as a table", writeQuarantineTable),
		quarantineSub("export", "Write quarantined rows as JSONL", writeQuarantineJSONL))
	return cmd
}

func quarantineSub(name, short string, write func(io.Writer, *quarantine.Store) error) *cobra.Command {
	var stateDir string
	cmd := &cobra.Command{
		Use:   name + " --state-dir DIR",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if stateDir == "" {
				return fmt.Errorf("%w: --state-dir is required", ErrUsage)
			}
			if _, err := os.Stat(stateDir); err != nil {
				return fmt.Errorf("%w: state directory: %v", ErrUsage, err)
			}
			db, err := devicedb.Open(stateDir)
			if err != nil {
				return fmt.Errorf("%w (is the agent still running?)", err)
			}
			defer db.Close()
			q, err := quarantine.Open(agent.ExtensionState(db.Root()).Sub(quarantine.Namespace), quarantine.Options{})
			if err != nil {
				return err
			}
			return write(cmd.OutOrStdout(), q)
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", "", "the agent's state directory; required")
	return cmd
}

func writeQuarantineJSONL(w io.Writer, q *quarantine.Store) error {
	enc := json.NewEncoder(w)
	skipped, err := q.Iterate(func(e quarantine.Entry) error { return enc.Encode(e) })
	if err != nil {
		return err
	}
	if skipped > 0 {
		return fmt.Errorf("%d corrupt entries skipped", skipped)
	}
	return nil
}

func writeQuarantineTable(w io.Writer, q *quarantine.Store) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tSOURCE\tROW\tFIELD\tRULE\tVALUE")
	skipped, err := q.Iterate(func(e quarantine.Entry) error {
		for _, v := range e.Violations {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%q\n", e.Seq, e.Time.Format(time.RFC3339), e.Source, e.Row, v.Field, v.Rule, v.Value)
		}
		if e.Truncated > 0 {
			fmt.Fprintf(tw, "%d\t\t\t\t(%d more)\t\t\n", e.Seq, e.Truncated)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	st := q.Stats()
	fmt.Fprintf(w, "%d rows held, %d evicted for space\n", st.Rows, st.Evicted)
	if skipped > 0 {
		return fmt.Errorf("%d corrupt entries skipped", skipped)
	}
	return nil
}
