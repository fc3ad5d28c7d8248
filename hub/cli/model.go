package cli

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/state"
)

// modelVersion is a model version as the API shows it (without chunks and manifest bytes).
type modelVersion struct {
	state.ModelVersion
	ChunkCount   int `json:"chunk_count"`
	ChunksStored int `json:"chunks_stored"`
	ChunksReused int `json:"chunks_reused"`
}

func (a *app) modelCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "model", Short: "Register, govern and fetch models"}
	cmd.AddCommand(a.modelCreate(), a.modelPush(), a.modelApprove(), a.modelDeprecate(), a.modelAlias(),
		a.modelTag(), a.modelShow(), a.modelList(), a.modelDownload(), a.modelOutputs())
	return cmd
}

func (a *app) modelCreate() *cobra.Command {
	return a.createCmd("model", "/api/v1/models", "what the model does")
}

func (a *app) modelPush() *cobra.Command {
	var artifact, codeRef, format string
	var trainedOn, metrics, params []string
	cmd := &cobra.Command{
		Use:   "push NAME --artifact FILE",
		Short: "Register a new model version: upload its artifact and metadata",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if artifact == "" {
				return usagef("model push needs --artifact FILE")
			}
			meta := api.VersionMetadata{TrainedOn: []state.VersionRef{}, Metrics: map[string]float64{}, Params: map[string]any{},
				CodeRef: codeRef, Format: format}
			for _, t := range trainedOn {
				ds, v, err := parseRef("--trained-on", t)
				if err != nil {
					return err
				}
				meta.TrainedOn = append(meta.TrainedOn, state.VersionRef{Dataset: ds, Version: v})
			}
			for _, m := range metrics {
				k, f, err := parseMetric(m)
				if err != nil {
					return err
				}
				meta.Metrics[k] = f
			}
			for _, p := range params {
				k, v, err := splitKV("--param", p)
				if err != nil {
					return err
				}
				meta.Params[k] = paramValue(v)
			}
			mb, err := jsonMarshal(meta)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			parts := []formPart{
				{name: "metadata", contentType: "application/json", data: mb},
				{name: "artifact", contentType: "application/octet-stream", file: artifact},
			}
			var mv modelVersion
			raw, err := c.upload(a.ctx, "/api/v1/models/"+seg(args[0])+"/versions", parts, a.stderr, &mv)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			fmt.Fprintf(a.stdout, "pushed model:%s@%d\n", mv.Model, mv.Version)
			return fields(a.stdout, "digest", mv.Digest, "size", strconv.FormatInt(mv.Size, 10),
				"chunks", fmt.Sprintf("%d (%d new, %d already on the hub)", mv.ChunkCount, mv.ChunksStored, mv.ChunksReused),
				"status", mv.Status)
		},
	}
	f := cmd.Flags()
	f.StringVar(&artifact, "artifact", "", "model file to upload (streamed; any size)")
	f.StringArrayVar(&trainedOn, "trained-on", nil, "dataset version the model was trained on, DATASET@VERSION; repeatable")
	f.StringArrayVar(&metrics, "metric", nil, "metric KEY=NUMBER; repeatable")
	f.StringArrayVar(&params, "param", nil, "parameter KEY=VALUE (numbers and booleans kept as such); repeatable")
	f.StringVar(&codeRef, "code-ref", "", "code reference, e.g. a git commit URL")
	f.StringVar(&format, "format", "", "artifact format, e.g. onnx, tflite, pickle")
	return cmd
}

// versionAction runs POST .../versions/{v}/{action} with an optional comment.
func (a *app) versionAction(action, verb string) *cobra.Command {
	var comment string
	cmd := &cobra.Command{
		Use: action + " NAME VERSION", Short: strings.ToUpper(verb[:1]) + verb[1:] + " a model version", Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := parseVersion("VERSION", args[1])
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var mv modelVersion
			raw, err := c.JSON(a.ctx, http.MethodPost, fmt.Sprintf("/api/v1/models/%s/versions/%d/%s", seg(args[0]), v, action),
				nil, api.ApproveRequest{Comment: comment}, &mv)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			_, err = fmt.Fprintf(a.stdout, "model:%s@%d is %s\n", mv.Model, mv.Version, mv.Status)
			return err
		},
	}
	cmd.Flags().StringVar(&comment, "comment", "", "why")
	return cmd
}

func (a *app) modelApprove() *cobra.Command   { return a.versionAction("approve", "approve (and sign)") }
func (a *app) modelDeprecate() *cobra.Command { return a.versionAction("deprecate", "deprecate") }

func (a *app) modelAlias() *cobra.Command {
	return &cobra.Command{
		Use: "alias NAME ALIAS VERSION", Short: "Point an alias (production, canary, ...) at a version", Args: exactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := parseVersion("VERSION", args[2])
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			raw, err := c.JSON(a.ctx, http.MethodPut, "/api/v1/models/"+seg(args[0])+"/aliases/"+seg(args[1]), nil, api.VersionRequest{Version: &v}, nil)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			_, err = fmt.Fprintf(a.stdout, "%s:%s -> version %d\n", args[0], args[1], v)
			return err
		},
	}
}

func (a *app) modelTag() *cobra.Command {
	return &cobra.Command{
		Use:   "tag NAME VERSION k=v... k2-...",
		Short: "Set tags (k=v) and remove them (k-) on a model version",
		Args:  minArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := parseVersion("VERSION", args[1])
			if err != nil {
				return err
			}
			edits, err := parseEdits("tag", args[2:])
			if err != nil {
				return err
			}
			tags := make(map[string]string, len(edits))
			for k, val := range edits {
				tags[k] = "" // an empty value removes the tag (API)
				if val != nil {
					if *val == "" {
						return usagef("tag %q: an empty value would remove the tag; write %s- for that", k+"=", k)
					}
					tags[k] = *val
				}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var mv state.ModelVersion
			raw, err := c.JSON(a.ctx, http.MethodPut, fmt.Sprintf("/api/v1/models/%s/versions/%d/tags", seg(args[0]), v), nil, api.TagsRequest{Tags: tags}, &mv)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			_, err = fmt.Fprintf(a.stdout, "%s@%d tags: %s\n", args[0], v, labels(mv.Tags))
			return err
		},
	}
}

func (a *app) modelShow() *cobra.Command {
	return &cobra.Command{
		Use: "show NAME [VERSION]", Short: "Show a model and its versions, or one version", Args: rangeArgs(1, 2),
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
				var mv modelVersion
				raw, err := c.JSON(a.ctx, http.MethodGet, fmt.Sprintf("/api/v1/models/%s/versions/%d", seg(name), v), nil, nil, &mv)
				if err != nil {
					return err
				}
				if a.jsonOut() {
					return printRaw(a.stdout, raw)
				}
				return showModelVersion(a, mv)
			}
			var m state.Model
			raw, err := c.JSON(a.ctx, http.MethodGet, "/api/v1/models/"+seg(name), nil, nil, &m)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			items, err := c.listAll(a.ctx, "/api/v1/models/"+seg(name)+"/versions", nil)
			if err != nil {
				return err
			}
			vs, err := decodeItems[modelVersion](items)
			if err != nil {
				return err
			}
			if err := fields(a.stdout, "name", m.Name, "description", dash(m.Description), "created", when(m.CreatedAt)+" by "+m.CreatedBy,
				"latest version", strconv.Itoa(m.LatestVersion), "aliases", labels(m.Aliases)); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout)
			byVersion := map[int][]string{}
			for al, v := range m.Aliases {
				byVersion[v] = append(byVersion[v], al)
			}
			t := newTable(a.stdout, "VERSION", "STATUS", "ALIASES", "SIZE", "DIGEST", "TRAINED ON", "CREATED")
			for _, v := range vs {
				al := byVersion[v.Version]
				sort.Strings(al)
				t.row(strconv.Itoa(v.Version), v.Status, dash(strings.Join(al, ",")), strconv.FormatInt(v.Size, 10),
					shortDigest(v.Digest), refs(v.TrainedOn), when(v.CreatedAt))
			}
			return t.flush()
		},
	}
}

func showModelVersion(a *app, mv modelVersion) error {
	approvals := make([]string, len(mv.Approvals))
	for i, ap := range mv.Approvals {
		approvals[i] = ap.By + " at " + when(ap.At)
		if ap.Comment != "" {
			approvals[i] += " (" + ap.Comment + ")"
		}
	}
	sigs := make([]string, len(mv.Signatures))
	for i, s := range mv.Signatures {
		sigs[i] = s.KeyID
		if s.Kind == "" { // the node key's manifest signature, for agents of the previous release
			sigs[i] += " (legacy)"
		}
	}
	return fields(a.stdout, "model", fmt.Sprintf("%s@%d", mv.Model, mv.Version), "status", mv.Status,
		"digest", mv.Digest, "size", strconv.FormatInt(mv.Size, 10), "format", dash(mv.Format), "file", dash(mv.Filename),
		"chunks", strconv.Itoa(mv.ChunkCount), "trained on", refs(mv.TrainedOn), "metrics", labels(mv.Metrics),
		"params", labels(mv.Params), "code ref", dash(mv.CodeRef), "tags", labels(mv.Tags),
		"approvals", dash(strings.Join(approvals, "; ")), "signed by", dash(strings.Join(sigs, ",")),
		"created", when(mv.CreatedAt)+" by "+mv.CreatedBy)
}

func (a *app) modelList() *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List models", Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return listTable(a, "/api/v1/models", nil, []string{"NAME", "LATEST", "ALIASES", "CREATED", "DESCRIPTION"},
				func(m state.Model) []string {
					return []string{m.Name, strconv.Itoa(m.LatestVersion), labels(m.Aliases), when(m.CreatedAt), dash(m.Description)}
				})
		},
	}
}
