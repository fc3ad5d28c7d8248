package api

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
)

// scopeKind says which registry object a route reads, for deviceScoped.
type scopeKind int

const (
	scopeModelVersion scopeKind = iota + 1 // :name and :v name a model version
	scopeModel                             // :name names a model (its aliases)
	scopeDataset                           // :name and :v name a dataset version
)

// deviceScoped lets a device token read only the registry objects of its scope
// (state.DeviceScope): the model versions it is told to run and the dataset versions they were
// trained on. Anything else answers 404, as if it did not exist, so a device cannot probe the
// registry. Other principals pass.
func (s *Server) deviceScoped(kind scopeKind) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			p := principal(c)
			if p.Kind != "device" {
				return next(c)
			}
			sc, err := s.read.DeviceScope(p.ID)
			if err != nil {
				return err
			}
			name := c.Param("name")
			v, _ := strconv.Atoi(c.Param("v"))
			ok := false
			switch kind {
			case scopeModelVersion:
				ok = sc.Model(name, v)
			case scopeModel:
				ok = sc.ModelName(name)
			case scopeDataset:
				ok = sc.Dataset(name, v)
			}
			if !ok {
				return problem(http.StatusNotFound, ProblemNotFound, "not found", "not found in this device's scope: a device reads only the model versions it is told to run and their training data")
			}
			return next(c)
		}
	}
}
