package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/driftline/driftline/hub/state"
)

func (a *app) datasetCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "dataset", Short: "Create, version and inspect datasets"}
	cmd.AddCommand(a.datasetCreate(), a.datasetPush(), a.datasetShow(), a.datasetList())
	return cmd
}

func (a *app) datasetCreate() *cobra.Command {
	return a.createCmd("dataset", "/api/v1/datasets", "what the dataset holds")
}

// sampleType is the Content-Type a sample file is sent with, from its extension.
func sampleType(path string) (string, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		return "text/csv", nil
	case ".jsonl", ".ndjson", ".json":
		return "application/x-ndjson", nil
	}
	return "", usagef("--sample %s: want a .csv or .jsonl file", path)
}

func (a *app) datasetPush() *cobra.Command {
	var contract, sample, sourceURI string
	var parents []string
	cmd := &cobra.Command{
		Use: "push NAME --contract C.json --sample S.csv|S.jsonl", Short: "Push a new dataset version: contract and training sample",
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if contract == "" || sample == "" {
				return usagef("dataset push needs --contract and --sample")
			}
			ct, err := sampleType(sample)
			if err != nil {
				return err
			}
			cb, err := os.ReadFile(contract)
			if err != nil {
				return usagef("--contract: %v", err)
			}
			if !json.Valid(cb) {
				return usagef("--contract %s is not JSON", contract)
			}
			// The contract goes first, so the hub profiles the sample as it streams in.
			parts := []formPart{{name: "contract", contentType: "application/json", data: cb}}
			if sourceURI != "" {
				parts = append(parts, formPart{name: "source_uri", data: []byte(sourceURI)})
			}
			if len(parents) > 0 {
				refs := make([]state.VersionRef, 0, len(parents))
				for _, p := range parents {
					r, err := parseParent(name, p)
					if err != nil {
						return err
					}
					refs = append(refs, r)
				}
				pb, _ := json.Marshal(refs)
				parts = append(parts, formPart{name: "parents", contentType: "application/json", data: pb})
			}
			parts = append(parts, formPart{name: "sample", contentType: ct, file: sample})
			c, err := a.client()
			if err != nil {
				return err
			}
			var dv state.DatasetVersion
			raw, err := c.upload(a.ctx, "/api/v1/datasets/"+seg(name)+"/versions", parts, a.stderr, &dv)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			fmt.Fprintf(a.stdout, "pushed dataset:%s@%d\n", dv.Dataset, dv.Version)
			err = fields(a.stdout, "rows", strconv.FormatInt(dv.SampleRows, 10), "invalid rows", strconv.FormatInt(dv.InvalidRows, 10),
				"sample", dv.SampleSHA256, "contract", dash(dv.ContractHash), "profile", dash(dv.ProfileDigest))
			for _, n := range dv.Notes {
				fmt.Fprintln(a.stdout, "note: "+n)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&contract, "contract", "", "data contract file (Frictionless Table Schema JSON)")
	f.StringVar(&sample, "sample", "", "training sample (.csv or .jsonl)")
	f.StringVar(&sourceURI, "source-uri", "", "where the sample came from")
	f.StringArrayVar(&parents, "parent", nil, "parent version: N (this dataset) or NAME@N; repeatable")
	return cmd
}

func (a *app) datasetShow() *cobra.Command {
	return &cobra.Command{
		Use: "show NAME [VERSION]", Short: "Show a dataset and its versions, or one version", Args: rangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			name := args[0]
			if len(args) == 2 {
				v, err := parseVersion("VERSION", args[1])
				if err != nil {
					return err
				}
				var dv state.DatasetVersion
				raw, err := c.JSON(a.ctx, http.MethodGet, fmt.Sprintf("/api/v1/datasets/%s/versions/%d", seg(name), v), nil, nil, &dv)
				if err != nil {
					return err
				}
				if a.jsonOut() {
					return printRaw(a.stdout, raw)
				}
				return showDatasetVersion(a, dv)
			}
			var d state.Dataset
			raw, err := c.JSON(a.ctx, http.MethodGet, "/api/v1/datasets/"+seg(name), nil, nil, &d)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			items, err := c.listAll(a.ctx, "/api/v1/datasets/"+seg(name)+"/versions", nil)
			if err != nil {
				return err
			}
			vs, err := decodeItems[state.DatasetVersion](items)
			if err != nil {
				return err
			}
			if err := fields(a.stdout, "name", d.Name, "description", dash(d.Description), "created", when(d.CreatedAt)+" by "+d.CreatedBy,
				"latest version", strconv.Itoa(d.LatestVersion)); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout)
			t := newTable(a.stdout, "VERSION", "ROWS", "INVALID", "SAMPLE", "PARENTS", "CREATED")
			for _, v := range vs {
				t.row(strconv.Itoa(v.Version), strconv.FormatInt(v.SampleRows, 10), strconv.FormatInt(v.InvalidRows, 10),
					shortDigest(v.SampleSHA256), refs(v.Parents), when(v.CreatedAt))
			}
			return t.flush()
		},
	}
}

func showDatasetVersion(a *app, dv state.DatasetVersion) error {
	return fields(a.stdout, "dataset", fmt.Sprintf("%s@%d", dv.Dataset, dv.Version),
		"rows", strconv.FormatInt(dv.SampleRows, 10), "invalid rows", strconv.FormatInt(dv.InvalidRows, 10),
		"sample", fmt.Sprintf("%s (%d bytes)", dash(dv.SampleSHA256), dv.SampleBytes),
		"contract", dash(dv.ContractHash), "profile", dash(dv.ProfileDigest), "source", dash(dv.SourceURI),
		"parents", refs(dv.Parents), "created", when(dv.CreatedAt)+" by "+dv.CreatedBy)
}

func (a *app) datasetList() *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List datasets", Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return listTable(a, "/api/v1/datasets", nil, []string{"NAME", "LATEST", "CREATED", "DESCRIPTION"},
				func(d state.Dataset) []string {
					return []string{d.Name, strconv.Itoa(d.LatestVersion), when(d.CreatedAt), dash(d.Description)}
				})
		},
	}
}

// refs renders version references as NAME@V, comma-separated.
func refs(rs []state.VersionRef) string {
	if len(rs) == 0 {
		return "-"
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		n := r.Dataset
		if n == "" {
			n = r.Model
		}
		parts[i] = fmt.Sprintf("%s@%d", n, r.Version)
	}
	return strings.Join(parts, ",")
}

// shortDigest shortens "sha256:HEX" to its first 12 hex digits for tables.
func shortDigest(d string) string {
	h := strings.TrimPrefix(d, "sha256:")
	if len(h) > 12 {
		return h[:12]
	}
	return dash(h)
}
