package api

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/wire"
)

// NewToken returns a fresh bearer token: "dl_" and 32 random bytes, base64url.
func NewToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error()) // the OS has no entropy: nothing safe to do
	}
	return "dl_" + base64.RawURLEncoding.EncodeToString(b)
}

// DeviceRequest is the body of POST /api/v1/devices.
type DeviceRequest struct {
	ID     string            `json:"id"`
	Labels map[string]string `json:"labels"`
}

// DeviceCreated answers POST /api/v1/devices: the token is shown this once.
type DeviceCreated struct {
	DeviceView
	Token string `json:"token"`
}

// DeviceView is a device as the API shows it (SPEC section 2): "first_seen" and "last_seen" are
// null until the device first connects, and reported.models has an entry for every model the
// device is told to run, so reported.models.NAME.active reads null (state "pending", target the
// desired version) until the device reports on that model. The stored record is not changed:
// the pending entries exist only in the answer.
type DeviceView struct {
	state.Device
	FirstSeen *int64         `json:"first_seen"`
	LastSeen  *int64         `json:"last_seen"`
	Reported  state.Reported `json:"reported"`
	// Reports is what the hub holds of the device's numbered reports (GET /devices/{id} only;
	// absent before the first one).
	Reports *ReportsView `json:"reports,omitempty"`
}

// ReportsView shows a device's report cursor (state.ReportCursor): every numbered report of
// Epoch up to Through is stored, in order; Pending counts the reports held after a missing one.
type ReportsView struct {
	Epoch   uint64 `json:"epoch"`
	Through uint64 `json:"through"`
	Pending int    `json:"pending"`
}

// viewDevice renders d for an answer, its last_seen merged with when this node last heard it
// (Config.LastHeard): the replicated last_seen of a live device moves only every
// LastSeenInterval, this node's own sightings are fresher.
func (s *Server) viewDevice(d state.Device) DeviceView {
	if s.cfg.LastHeard != nil {
		if h := s.cfg.LastHeard(d.ID); h > d.LastSeen {
			d.LastSeen = h
			if d.FirstSeen == 0 {
				d.FirstSeen = h
			}
		}
	}
	v := DeviceView{Device: d, Reported: d.Reported}
	if d.FirstSeen != 0 {
		v.FirstSeen = &d.FirstSeen
	}
	if d.LastSeen != 0 {
		v.LastSeen = &d.LastSeen
	}
	v.Reported.Models = make(map[string]state.ReportedModel, len(d.Reported.Models)+len(d.Desired))
	for name, m := range d.Reported.Models {
		v.Reported.Models[name] = m
	}
	for name, want := range d.Desired {
		if _, ok := v.Reported.Models[name]; !ok {
			v.Reported.Models[name] = state.ReportedModel{State: string(wire.StatePending), Target: want.Version}
		}
	}
	return v
}

func (s *Server) deviceCreate(c echo.Context) error {
	var req DeviceRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	if !state.ValidName(req.ID) {
		return badRequest("id", "device id %q: use 1-128 letters, digits, '.', '_' or '-'", req.ID)
	}
	for k := range req.Labels {
		if !state.ValidName(k) {
			return badRequest("labels."+k, "label key %q: use 1-128 letters, digits, '.', '_' or '-'", k)
		}
	}
	tok := NewToken()
	res, err := s.apply(c, command.TypeDeviceCreate, state.DeviceCreate{ID: req.ID, Labels: req.Labels, TokenHash: HashToken(tok)})
	if err != nil {
		return err
	}
	d, ok := res.(state.Device)
	if !ok { // a retried request: the token of the first attempt cannot be shown again
		return problem(http.StatusConflict, ProblemExists, "already exists", "device "+req.ID+" was created by an earlier attempt of this request")
	}
	return c.JSON(http.StatusCreated, DeviceCreated{DeviceView: s.viewDevice(d), Token: tok})
}

// deviceRotateToken gives a device a new token (shown this once) and stops accepting the old
// one; the device keeps everything else, its desired revision history included. Its MQTT
// sessions made with the old token are closed by every node's broker (hub/node).
func (s *Server) deviceRotateToken(c echo.Context) error {
	id := c.Param("id")
	tok := NewToken()
	res, err := s.apply(c, command.TypeDeviceRekey, state.DeviceRekey{ID: id, TokenHash: HashToken(tok)})
	if err != nil {
		return err
	}
	d, ok := res.(state.Device)
	if !ok || d.TokenHash != HashToken(tok) {
		return problem(http.StatusConflict, ProblemExists, "already rotated", "this request rotated the token already; its token cannot be shown again")
	}
	return c.JSON(http.StatusOK, DeviceCreated{DeviceView: s.viewDevice(d), Token: tok})
}

func (s *Server) deviceList(c echo.Context) error {
	sel, err := state.ParseSelector(c.QueryParam("selector"))
	if err != nil {
		return badRequest("selector", "%v", err)
	}
	cursor, limit, err := pageParams(c)
	if err != nil {
		return err
	}
	p, err := s.read.Devices(sel, cursor, limit)
	if err != nil {
		return err
	}
	items := make([]DeviceView, len(p.Items))
	for i, d := range p.Items {
		items[i] = s.viewDevice(d)
	}
	return c.JSON(http.StatusOK, state.Page[DeviceView]{Items: items, NextCursor: p.NextCursor})
}

// selfOrReader lets a device read only its own record.
func selfOrReader(c echo.Context, id string) error {
	p := principal(c)
	if p.Role == state.RoleDevice && p.ID != id {
		return forbidden("a device may read only its own record")
	}
	return nil
}

func (s *Server) deviceGet(c echo.Context) error {
	if err := selfOrReader(c, c.Param("id")); err != nil {
		return err
	}
	d, err := s.read.Device(c.Param("id"))
	if err != nil {
		return err
	}
	v := s.viewDevice(d)
	rc, err := s.read.ReportCursor(d.ID)
	if err != nil {
		return err
	}
	if rc.Epoch != 0 {
		v.Reports = &ReportsView{Epoch: rc.Epoch, Through: rc.Through, Pending: len(rc.Pending)}
	}
	return c.JSON(http.StatusOK, v)
}

// PatchRequest is the body of PATCH /api/v1/devices/{id}: labels merge, a null removes one.
type PatchRequest struct {
	Labels map[string]*string `json:"labels"`
}

func (s *Server) devicePatch(c echo.Context) error {
	var req PatchRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	for k := range req.Labels {
		if !state.ValidName(k) {
			return badRequest("labels."+k, "label key %q", k)
		}
	}
	res, err := s.apply(c, command.TypeDevicePatch, state.DevicePatch{ID: c.Param("id"), Labels: req.Labels})
	if err != nil {
		return err
	}
	if d, ok := res.(state.Device); ok {
		return c.JSON(http.StatusOK, s.viewDevice(d))
	}
	return c.JSON(http.StatusOK, res)
}

func (s *Server) deviceDelete(c echo.Context) error {
	id := c.Param("id")
	res, err := s.apply(c, command.TypeDeviceDelete, state.DeviceDelete{ID: id})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

func (s *Server) deviceDesiredSet(c echo.Context) error {
	var req VersionRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	v, err := req.get()
	if err != nil {
		return err
	}
	id := c.Param("id")
	res, err := s.apply(c, command.TypeDeviceDesiredSet, state.DeviceDesiredSet{ID: id, Model: c.Param("name"), Version: v})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

// deviceTelemetry applies a batch of device observations a follower's MQTT side gathered (hub
// nodes forward their batches to the leader here; see hub/protocol).
func (s *Server) deviceTelemetry(c echo.Context) error {
	var req state.DeviceTelemetry
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	for i, o := range req.Devices {
		if !state.ValidName(o.ID) {
			return badRequest("devices["+strconv.Itoa(i)+"].id", "bad device id %q", o.ID)
		}
	}
	res, err := s.apply(c, command.TypeDeviceTelemetry, req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}
