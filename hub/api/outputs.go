package api

import (
	"errors"
	"mime/multipart"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/artifact"
	"github.com/driftline/driftline/shared/contract/rows"
	"github.com/driftline/driftline/shared/outputs"
	"github.com/driftline/driftline/shared/wire"
	"github.com/driftline/driftline/shared/zstdx"
)

// MaxOutputSample bounds the validation sample of PUT .../outputs (read whole: it is read twice,
// once for the profile and once for the reference performance).
const MaxOutputSample = 64 << 20

// modelVersionOutputs attaches an output reference to a registered model version: multipart
// parts `contract` (the output contract) and `sample` (the validation set's predictions with
// their labels, CSV or JSONL).
func (s *Server) modelVersionOutputs(c echo.Context) error {
	v, err := versionParam(c)
	if err != nil {
		return err
	}
	name := c.Param("name")
	if _, err := s.read.ModelVersion(name, v); err != nil {
		return err
	}
	mr, err := s.multipart(c)
	if err != nil {
		return err
	}
	var doc, sample []byte
	format := rows.FormatCSV
	err = eachPart(mr, func(part *multipart.Part) (err error) {
		switch part.FormName() {
		case "contract":
			if doc, err = readPart(part, s.cfg.MaxBodyBytes, "contract"); err != nil {
				return err
			}
		case "sample":
			if sampleFormat(part) == "jsonl" {
				format = rows.FormatJSONL
			}
			if sample, err = readPart(part, MaxOutputSample, "sample"); err != nil {
				return err
			}
		default:
			return badRequest(part.FormName(), "unknown part %q: send contract and sample", part.FormName())
		}
		return nil
	})
	if err != nil {
		return err
	}
	if doc == nil || sample == nil {
		return badRequest("", "send the parts contract (output contract) and sample (validation predictions with labels)")
	}
	oc, err := outputs.ParseContract(doc)
	if err != nil {
		return badRequest("contract", "%v", err)
	}
	ref, err := outputs.Build(oc, sample, format)
	if errors.Is(err, outputs.ErrSample) {
		return problem(http.StatusBadRequest, ProblemInvalidSample, "invalid sample", err.Error())
	}
	if err != nil {
		return err
	}
	b, err := ref.Encode()
	if err != nil {
		return err
	}
	value, _ := ref.Performance.Value(oc.Metric)
	res, err := s.apply(c, command.TypeModelVersionOutputSet, state.ModelVersionOutputSet{Model: name, Version: v, Reference: b,
		Summary: state.OutputSummary{Digest: artifact.DigestOf(b), Task: oc.Task, Metric: oc.Metric, Reference: value,
			Labels: ref.Performance.Labels, Prediction: oc.Prediction}})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"version": res, "notes": ref.Notes, "performance": ref.Performance})
}

// modelVersionOutputsGet answers the output reference (JSON) of a model version.
func (s *Server) modelVersionOutputsGet(c echo.Context) error {
	v, err := versionParam(c)
	if err != nil {
		return err
	}
	b, err := s.read.OutputReference(c.Param("name"), v)
	if err != nil {
		return err
	}
	return c.JSONBlob(http.StatusOK, b)
}

// datasetVersionSample streams a candidate dataset version's rows (JSONL), reassembled from
// their chunks; with ?invalid=true the sampled invalid rows, as read. Only candidates keep their
// rows; a pushed version's sample is not stored (404).
func (s *Server) datasetVersionSample(c echo.Context) error {
	v, err := versionParam(c)
	if err != nil {
		return err
	}
	mb, err := s.read.CandidateRows(c.Param("name"), v, c.QueryParam("invalid") == "true")
	if err != nil {
		return err
	}
	m, err := artifact.DecodeManifest(mb)
	if err != nil {
		return err
	}
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "application/x-ndjson")
	w.Header().Set("Digest", "sha-256="+m.Digest)
	w.WriteHeader(http.StatusOK)
	var z, plain []byte
	for _, ch := range m.Chunks {
		if z, err = s.read.Chunk(z[:0], ch.Digest); err != nil {
			return err
		}
		if plain, err = zstdx.Decode(plain[:0], z, artifact.MaxChunkSize); err != nil {
			return err
		}
		if _, err := w.Write(plain); err != nil {
			return nil // the client went away
		}
	}
	return nil
}

// sampleStage stages a device's sample of a drifted window, as checked by the node that heard
// it (a follower forwards what its embedded broker received; docs: hub/samples).
func (s *Server) sampleStage(c echo.Context) error {
	var req state.SampleStage
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	if !state.ValidName(req.Sample.Device) || len(req.Sample.Rows)+len(req.Sample.InvalidRows) == 0 ||
		len(req.Sample.Rows) > wire.MaxSampleRows || len(req.Sample.InvalidRows) > wire.MaxSampleRows {
		return badRequest("sample", "a staged sample needs a valid device id and 1..%d rows", wire.MaxSampleRows)
	}
	res, err := s.apply(c, command.TypeSampleStage, req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

// OutputsView answers GET /api/v1/outputs: a model version's outputs across the fleet.
type OutputsView struct {
	Model   string `json:"model"`
	Version int    `json:"version"`
	// Reference is the version's output summary (metric, reference value), if it has one.
	Reference *state.OutputSummary `json:"reference"`
	// Devices counts devices reporting outputs of the version; PredictionDrifted those whose
	// latest prediction window drifted, PredictionDriftShare their share.
	Devices              int     `json:"devices"`
	PredictionDrifted    int     `json:"prediction_drifted"`
	PredictionDriftShare float64 `json:"prediction_drift_share"`
	// Labels and Relative: joined labels over the fleet and the label-weighted performance
	// relative to the reference (null without labels).
	Labels   int64                `json:"labels"`
	Relative *float64             `json:"relative"`
	Items    []DeviceOutputsEntry `json:"items"`
}

// DeviceOutputsEntry is one device's line of OutputsView.
type DeviceOutputsEntry struct {
	Device  string             `json:"device"`
	Outputs state.OutputHealth `json:"outputs"`
}

func (s *Server) outputsView(c echo.Context) error {
	model := c.QueryParam("model")
	if model == "" {
		return badRequest("model", "model is required")
	}
	version := 0
	if v := c.QueryParam("version"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return badRequest("version", "version must be a positive integer")
		}
		version = n
	}
	m, err := s.read.Model(model)
	if err != nil {
		return err
	}
	if version == 0 {
		version = m.LatestVersion
	}
	view := OutputsView{Model: model, Version: version, Items: []DeviceOutputsEntry{}}
	if mv, err := s.read.ModelVersion(model, version); err == nil {
		view.Reference = mv.Output
	}
	var relSum float64
	cursor := ""
	for {
		p, err := s.read.Devices(nil, cursor, state.MaxLimit)
		if err != nil {
			return err
		}
		for _, d := range p.Items {
			o := d.Outputs
			if o == nil || o.Model != model || o.Version != version {
				continue
			}
			view.Devices++
			if o.PredictionWindows > 0 && o.PredictionDrift {
				view.PredictionDrifted++
			}
			view.Labels += o.Labels
			relSum += o.RelativeSum
			view.Items = append(view.Items, DeviceOutputsEntry{Device: d.ID, Outputs: *o})
		}
		if p.NextCursor == nil {
			break
		}
		cursor = *p.NextCursor
	}
	if view.Devices > 0 {
		view.PredictionDriftShare = float64(view.PredictionDrifted) / float64(view.Devices)
	}
	if view.Labels > 0 {
		r := relSum / float64(view.Labels)
		view.Relative = &r
	}
	return c.JSON(http.StatusOK, view)
}
