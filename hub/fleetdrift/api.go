package fleetdrift

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/driftline/driftline/hub/state"
)

// Register mounts the drift routes on g (the /api/v1 group), each behind mw (the caller's
// authentication and role checks):
//
//	GET /drift?model=M[&version=V][&since=T]  fleet drift of a model version (FleetView)
//	GET /devices/:id/drift                  one device's drift (DeviceView)
//	GET /drift/heatmap?model=M[&version=V]   devices x features latest scores (HeatmapView)
//	GET /drift/distribution?model=M[&version=V]&feature=F
//	                                        reference vs current distribution (DistributionView)
//
// Without version, the version this node received profiles for last is shown, else the
// model's latest version. since is Unix milliseconds or RFC 3339. Errors are *echo.HTTPError (400, 404), which the
// hub's error handler renders as problem+json.
func Register(g *echo.Group, s *Service, mw ...echo.MiddlewareFunc) {
	g.GET("/drift", s.handleFleet, mw...)
	g.GET("/devices/:id/drift", s.handleDevice, mw...)
	g.GET("/drift/heatmap", s.handleHeatmap, mw...)
	g.GET("/drift/distribution", s.handleDistribution, mw...)
}

// RegisterPredictions mounts the routes of the fleet view of predictions (a Service with
// Config.Predictions) on g, each behind mw:
//
//	GET /drift/predictions?model=M[&version=V][&since=T]   merged prediction profiles of a
//	                                                       model version against its output
//	                                                       reference (FleetView)
//	GET /drift/predictions/distribution?model=M[&version=V]&feature=PREDICTION
//	                                                       reference vs current predictions
func RegisterPredictions(g *echo.Group, s *Service, mw ...echo.MiddlewareFunc) {
	g.GET("/drift/predictions", s.handleFleet, mw...)
	g.GET("/drift/predictions/distribution", s.handleDistribution, mw...)
}

func (s *Service) handleFleet(c echo.Context) error {
	key, err := s.modelKey(c)
	if err != nil {
		return err
	}
	since, err := parseSince(c.QueryParam("since"))
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	v, err := s.Fleet(key, since)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

func (s *Service) handleHeatmap(c echo.Context) error {
	key, err := s.modelKey(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.Heatmap(key))
}

func (s *Service) handleDistribution(c echo.Context) error {
	key, err := s.modelKey(c)
	if err != nil {
		return err
	}
	feature := c.QueryParam("feature")
	if feature == "" {
		return echo.NewHTTPError(http.StatusBadRequest, "feature: give ?feature=NAME")
	}
	v, err := s.Distribution(key, feature)
	if errors.Is(err, ErrNoReference) || errors.Is(err, ErrUnknownFeature) {
		return echo.NewHTTPError(http.StatusNotFound, err.Error())
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// modelKey reads ?model=M[&version=V] and checks the version exists. Without version: the
// version this node received profiles for last, else the model's latest version.
func (s *Service) modelKey(c echo.Context) (ModelKey, error) {
	model := c.QueryParam("model")
	if model == "" || !state.ValidName(model) {
		return ModelKey{}, echo.NewHTTPError(http.StatusBadRequest, "model: give ?model=NAME")
	}
	var version int
	if q := c.QueryParam("version"); q != "" {
		v, err := strconv.Atoi(q)
		if err != nil || v < 1 {
			return ModelKey{}, echo.NewHTTPError(http.StatusBadRequest, "version: give ?version=N (a positive integer)")
		}
		version = v
	} else if v, ok := s.LatestVersion(model); ok {
		version = v
	} else {
		m, err := s.cfg.Registry.Model(model)
		if errors.Is(err, state.ErrNotFound) {
			return ModelKey{}, echo.NewHTTPError(http.StatusNotFound, fmt.Sprintf("model %s not found", model))
		}
		if err != nil {
			return ModelKey{}, err
		}
		if m.LatestVersion < 1 {
			return ModelKey{}, echo.NewHTTPError(http.StatusNotFound, fmt.Sprintf("model %s has no versions", model))
		}
		version = m.LatestVersion
	}
	if _, err := s.cfg.Registry.ModelVersion(model, version); err != nil {
		if errors.Is(err, state.ErrNotFound) {
			return ModelKey{}, echo.NewHTTPError(http.StatusNotFound, fmt.Sprintf("model:%s@%d not found", model, version))
		}
		return ModelKey{}, err
	}
	return ModelKey{Model: model, Version: version}, nil
}

func (s *Service) handleDevice(c echo.Context) error {
	v, err := s.Device(c.Param("id"))
	if errors.Is(err, state.ErrNotFound) {
		return echo.NewHTTPError(http.StatusNotFound, fmt.Sprintf("device %q not found", c.Param("id")))
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// parseSince reads a since parameter: empty (everything), Unix milliseconds, or RFC 3339.
func parseSince(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		if ms < 0 {
			return 0, fmt.Errorf("since: %d is negative", ms)
		}
		return ms, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return 0, fmt.Errorf("since: %q is neither Unix milliseconds nor RFC 3339", s)
	}
	return t.UnixMilli(), nil
}
