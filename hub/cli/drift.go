package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"

	"github.com/spf13/cobra"
)

// driftView is the part of GET /api/v1/drift the human output reads.
type driftView struct {
	Model        string  `json:"model"`
	Version      int     `json:"version"`
	Devices      int     `json:"devices"`
	DatasetDrift bool    `json:"dataset_drift"`
	DriftShare   float64 `json:"drift_share"`
	Features     map[string]struct {
		Method    string   `json:"method"`
		Score     *float64 `json:"score"`
		Threshold *float64 `json:"threshold"`
		Drift     bool     `json:"drift"`
		PSI       *float64 `json:"psi"`
	} `json:"features"`
}

func (a *app) driftCmd() *cobra.Command {
	var model string
	var version int
	var predictions bool
	cmd := &cobra.Command{
		Use:   "drift --model M [--version V] [--predictions]",
		Short: "Fleet-wide drift of a model: the merged live profiles against its training reference",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if model == "" {
				return usagef("drift needs --model")
			}
			q := url.Values{"model": {model}}
			if version > 0 {
				q.Set("version", strconv.Itoa(version))
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			path := "/api/v1/drift"
			if predictions {
				path = "/api/v1/drift/predictions"
			}
			raw, err := c.JSON(a.ctx, http.MethodGet, path, q, nil, nil)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			var d driftView
			if err := json.Unmarshal(raw, &d); err != nil {
				return fmt.Errorf("%w: drift answer is not the expected JSON: %w", ErrUnavailable, err)
			}
			if err := fields(a.stdout, "model", fmt.Sprintf("%s@%d", d.Model, d.Version), "devices", strconv.Itoa(d.Devices),
				"dataset drift", strconv.FormatBool(d.DatasetDrift), "drift share", strconv.FormatFloat(d.DriftShare, 'f', 2, 64)); err != nil {
				return err
			}
			names := make([]string, 0, len(d.Features))
			for n := range d.Features {
				names = append(names, n)
			}
			sort.Strings(names)
			fmt.Fprintln(a.stdout)
			t := newTable(a.stdout, "FEATURE", "METHOD", "SCORE", "THRESHOLD", "DRIFT", "PSI")
			for _, n := range names {
				f := d.Features[n]
				t.row(n, dash(f.Method), fnum(f.Score), fnum(f.Threshold), strconv.FormatBool(f.Drift), fnum(f.PSI))
			}
			return t.flush()
		},
	}
	cmd.Flags().StringVar(&model, "model", "", "model name")
	cmd.Flags().IntVar(&version, "version", 0, "model version (default: every version the fleet runs)")
	cmd.Flags().BoolVar(&predictions, "predictions", false, "the model's predictions: merged prediction profiles against its output reference")
	return cmd
}
