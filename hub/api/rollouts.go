package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/rollout"
	"github.com/driftline/driftline/hub/state"
)

// Waves is the `waves` field of a rollout: a list of cumulative percentages ([1, 10, 50, 100])
// or {"counts": [1, 5, 20]} (cumulative device counts).
type Waves struct {
	Values []float64
	Counts bool
}

// UnmarshalJSON accepts both forms.
func (w *Waves) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '{' {
		var c struct {
			Counts []float64 `json:"counts"`
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return err
		}
		w.Values, w.Counts = c.Counts, true
		return nil
	}
	w.Counts = false
	return json.Unmarshal(b, &w.Values)
}

// MarshalJSON writes the form it was given.
func (w Waves) MarshalJSON() ([]byte, error) {
	if w.Counts {
		return json.Marshal(map[string][]float64{"counts": w.Values})
	}
	return json.Marshal(w.Values)
}

// RolloutRequest is the body of POST /api/v1/rollouts.
type RolloutRequest struct {
	Model         string      `json:"model"`
	Version       int         `json:"version"`
	Selector      string      `json:"selector"`
	Waves         *Waves      `json:"waves"`
	BakeSeconds   *int        `json:"bake_seconds"`
	Gates         state.Gates `json:"gates"`
	OnGateFailure string      `json:"on_gate_failure"`
	DeviceTimeout *int        `json:"device_timeout_seconds"`
	SetAlias      string      `json:"set_alias"`
}

// Rollout defaults.
const (
	DefaultBakeSeconds   = 300
	DefaultDeviceTimeout = 600
)

func (s *Server) rolloutCreate(c echo.Context) error {
	var req RolloutRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	bake, timeout, err := checkRolloutRequest(&req)
	if err != nil {
		return err
	}
	sel, err := state.ParseSelector(req.Selector)
	if err != nil {
		return badRequest("selector", "%v", err)
	}
	mv, err := s.read.ModelVersion(req.Model, req.Version)
	if err != nil {
		if errors.Is(err, state.ErrNotFound) {
			return badRequest("version", "%v", err)
		}
		return err
	}
	if mv.Status != state.StatusApproved {
		return badRequest("version", "model:%s@%d is %s: only approved versions roll out", req.Model, req.Version, mv.Status)
	}
	cands, err := s.rolloutCandidates(sel)
	if err != nil {
		return err
	}
	sizes, err := rollout.WaveSizes(req.Waves.Values, req.Waves.Counts, len(cands))
	if err != nil {
		field := "waves"
		if errors.Is(err, rollout.ErrNoDevices) {
			field = "selector"
		}
		return badRequest(field, "%v", err)
	}
	id := uuid.NewString()[:13]
	cmd := state.RolloutCreate{
		ID: id, Model: req.Model, Version: req.Version, Selector: req.Selector, Devices: rollout.Order(id, cands),
		WaveSizes: sizes, BakeSeconds: bake, Gates: req.Gates, OnGateFailure: req.OnGateFailure,
		DeviceTimeout: timeout, SetAlias: req.SetAlias,
	}
	res, err := s.apply(c, command.TypeRolloutCreate, cmd)
	var ce *state.ConflictError
	if errors.As(err, &ce) {
		e := problem(http.StatusConflict, ProblemConflict, "conflict", ce.Error())
		e.P.Extra = map[string]any{"rollout": ce.Rollout, "devices": ce.Devices}
		return e
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, res)
}

// checkRolloutRequest checks a rollout request's fields (a 400 problem naming the first bad one)
// and fills in the defaults: waves [100 %], on_gate_failure pause. It returns the bake and device
// timeout in seconds, the defaults when the request has none.
func checkRolloutRequest(req *RolloutRequest) (bake, timeout int, err error) {
	if !state.ValidName(req.Model) {
		return 0, 0, badRequest("model", "model is required")
	}
	if req.Version < 1 {
		return 0, 0, badRequest("version", "version must be a positive integer")
	}
	if req.Waves == nil {
		req.Waves = &Waves{Values: []float64{100}}
	}
	bake, timeout = DefaultBakeSeconds, DefaultDeviceTimeout
	if req.BakeSeconds != nil {
		if bake = *req.BakeSeconds; bake < 0 {
			return 0, 0, badRequest("bake_seconds", "bake_seconds must be >= 0")
		}
	}
	if req.DeviceTimeout != nil {
		if timeout = *req.DeviceTimeout; timeout < 1 {
			return 0, 0, badRequest("device_timeout_seconds", "device_timeout_seconds must be >= 1")
		}
	}
	switch req.OnGateFailure {
	case "":
		req.OnGateFailure = "pause"
	case "pause", "rollback":
	default:
		return 0, 0, badRequest("on_gate_failure", "on_gate_failure must be pause or rollback")
	}
	if err := checkGates(req.Gates); err != nil {
		return 0, 0, err
	}
	if req.SetAlias != "" && !state.ValidName(req.SetAlias) {
		return 0, 0, badRequest("set_alias", "bad alias %q", req.SetAlias)
	}
	return bake, timeout, nil
}

// checkGates checks the gate thresholds: shares and rates between 0 and 1, the performance ratio
// between 0 and 10, the label count not negative.
func checkGates(g state.Gates) error {
	for name, v := range map[string]*float64{"gates.max_failure_rate": g.MaxFailureRate,
		"gates.max_drift_share": g.MaxDriftShare, "gates.max_invalid_rate": g.MaxInvalidRate,
		"gates.max_prediction_drift_share": g.MaxPredictionDriftShare} {
		if v != nil && (*v < 0 || *v > 1) {
			return badRequest(name, "%s must be between 0 and 1", name)
		}
	}
	if v := g.MinPerformance; v != nil && (*v < 0 || *v > 10) {
		return badRequest("gates.min_performance", "gates.min_performance is relative to the reference metric (1 = as good): give 0 to 10")
	}
	if g.MinPerformanceLabels < 0 {
		return badRequest("gates.min_performance_labels", "gates.min_performance_labels must not be negative")
	}
	return nil
}

// rolloutCandidates lists every device sel matches, canaries marked by the label canary=true.
func (s *Server) rolloutCandidates(sel state.Selector) ([]rollout.Candidate, error) {
	var cands []rollout.Candidate
	cursor := ""
	for {
		page, err := s.read.Devices(sel, cursor, state.MaxLimit)
		if err != nil {
			return nil, err
		}
		for _, d := range page.Items {
			cands = append(cands, rollout.Candidate{ID: d.ID, Canary: d.Labels["canary"] == "true"})
		}
		if page.NextCursor == nil {
			return cands, nil
		}
		cursor = *page.NextCursor
	}
}

func (s *Server) rolloutList(c echo.Context) error { return listPage(c, s.read.Rollouts) }

func (s *Server) rolloutGet(c echo.Context) error {
	r, err := s.read.Rollout(c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, r)
}

func (s *Server) rolloutDevices(c echo.Context) error {
	if _, err := s.read.Rollout(c.Param("id")); err != nil {
		return err
	}
	devs, err := s.read.RolloutDevices(c.Param("id"), 0)
	if err != nil {
		return err
	}
	if devs == nil {
		devs = []state.RolloutDevice{}
	}
	return c.JSON(http.StatusOK, state.Page[state.RolloutDevice]{Items: devs})
}

// ReasonRequest is the optional body of a rollout action.
type ReasonRequest struct {
	Reason string `json:"reason"`
}

func (s *Server) rolloutAction(c echo.Context) error {
	action := c.Param("action")
	switch action {
	case state.ActPause, state.ActResume, state.ActAbort, state.ActRollback:
	default:
		return &Error{P: Problem{Type: ProblemNotFound, Title: "not found", Status: 404,
			Detail: fmt.Sprintf("unknown rollout action %q: use pause, resume, abort or rollback", action)}}
	}
	var req ReasonRequest
	if c.Request().ContentLength != 0 {
		if err := s.decodeJSON(c, &req); err != nil {
			return err
		}
	}
	if req.Reason == "" {
		req.Reason = action + " by " + actor(c)
	}
	res, err := s.apply(c, command.TypeRolloutTransition, state.RolloutTransition{ID: c.Param("id"), Action: action, Reason: req.Reason})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}
