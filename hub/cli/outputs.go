package cli

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/outputs"
)

// modelOutputs is `driftline model outputs NAME VERSION --contract FILE --sample FILE`.
func (a *app) modelOutputs() *cobra.Command {
	var contractPath, samplePath string
	cmd := &cobra.Command{
		Use:   "outputs NAME VERSION --contract FILE --sample FILE",
		Short: "Attach an output reference (output contract, validation predictions with labels) to a registered version",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := strconv.Atoi(args[1])
			if err != nil || v < 1 {
				return usagef("VERSION %q: want a positive integer", args[1])
			}
			if contractPath == "" || samplePath == "" {
				return usagef("model outputs needs --contract and --sample")
			}
			st, err := sampleType(samplePath)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var res struct {
				Version     state.ModelVersion  `json:"version"`
				Performance outputs.Performance `json:"performance"`
				Notes       []string            `json:"notes"`
			}
			raw, err := c.uploadMethod(a.ctx, http.MethodPut, "/api/v1/models/"+seg(args[0])+"/versions/"+strconv.Itoa(v)+"/outputs",
				[]formPart{{name: "contract", contentType: "application/json", file: contractPath},
					{name: "sample", contentType: st, file: samplePath}}, a.stderr, &res)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			o := res.Version.Output
			if o == nil {
				return fmt.Errorf("the hub answered without an output summary")
			}
			_, err = fmt.Fprintf(a.stdout, "model:%s@%d output reference %s: %s %s=%.4g on %d labelled predictions (prediction %q)\n",
				args[0], v, o.Digest, o.Task, o.Metric, o.Reference, o.Labels, o.Prediction)
			for _, n := range res.Notes {
				fmt.Fprintf(a.stdout, "  %s\n", n)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&contractPath, "contract", "", "output contract (Table Schema JSON: id primary key, a prediction and a label field)")
	cmd.Flags().StringVar(&samplePath, "sample", "", "validation predictions with their labels (CSV or JSONL)")
	return cmd
}
