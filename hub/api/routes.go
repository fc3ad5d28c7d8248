package api

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// routes registers every endpoint. Writes pass leaderOnly (on a follower their commands are
// forwarded to the leader), the few calls only the leader can answer leaderBound (relayed);
// reads pass strongRead (local unless ?consistency=strong). Each route names the roles it admits; admin is
// always admitted.
func (s *Server) routes() {
	e := s.echo
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	g := s.cfg.Gatherer
	if g == nil {
		g = prometheus.DefaultGatherer
	}
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(g, promhttp.HandlerOpts{})))
	// The cluster service: node-to-node only (cluster peers; see forward.go).
	e.Any("/cluster/v1/*", echo.WrapHandler(s.clusterService()))

	v1 := e.Group("/api/v1")
	r := func(roles ...string) []echo.MiddlewareFunc {
		return []echo.MiddlewareFunc{s.allow(roles...), s.strongRead}
	}
	w := func(roles ...string) []echo.MiddlewareFunc {
		return []echo.MiddlewareFunc{s.allow(roles...), s.leaderOnly}
	}
	// lb is w for a call only the leader can answer (forward.go: leaderBound).
	lb := func(roles ...string) []echo.MiddlewareFunc {
		return []echo.MiddlewareFunc{s.allow(roles...), s.leaderBound}
	}
	// rs is r for a registry read a device token may make only within its scope (scope.go).
	rs := func(kind scopeKind, roles ...string) []echo.MiddlewareFunc {
		return []echo.MiddlewareFunc{s.allow(roles...), s.deviceScoped(kind), s.strongRead}
	}

	v1.GET("/cluster", s.clusterStatus, r(readers...)...)
	v1.GET("/cluster/digest", s.clusterDigest, r(readers...)...)
	v1.POST("/cluster/join", s.clusterJoin, w(joiners...)...)
	v1.POST("/cluster/join-tokens", s.clusterJoinToken, w(adminOnly...)...)
	v1.DELETE("/cluster/nodes/:id", s.clusterRemove, w(adminOnly...)...)
	s.opsRoutes(v1) // backup, leadership transfer, node report (ops.go)

	v1.POST("/datasets", s.datasetCreate, w(publisher...)...)
	v1.GET("/datasets", s.datasetList, r(readers...)...)
	v1.GET("/datasets/:name", s.datasetGet, r(readers...)...)
	v1.POST("/datasets/:name/versions", s.datasetVersionCreate, w(publisher...)...)
	v1.GET("/datasets/:name/versions", s.datasetVersionList, r(readers...)...)
	v1.GET("/datasets/:name/versions/:v", s.datasetVersionGet, rs(scopeDataset, anyRole...)...)
	v1.GET("/datasets/:name/versions/:v/contract", s.datasetVersionContract, rs(scopeDataset, anyRole...)...)
	v1.GET("/datasets/:name/versions/:v/profile", s.datasetVersionProfile, rs(scopeDataset, anyRole...)...)
	v1.GET("/datasets/:name/versions/:v/sample", s.datasetVersionSample, rs(scopeDataset, readers...)...)

	v1.POST("/models", s.modelCreate, w(publisher...)...)
	v1.GET("/models", s.modelList, r(readers...)...)
	v1.GET("/models/:name", s.modelGet, r(readers...)...)
	v1.POST("/models/:name/versions", s.modelVersionCreate, w(publisher...)...)
	v1.GET("/models/:name/versions", s.modelVersionList, r(readers...)...)
	v1.GET("/models/:name/versions/:v", s.modelVersionGet, rs(scopeModelVersion, anyRole...)...)
	v1.GET("/models/:name/versions/:v/artifact", s.modelVersionArtifact, rs(scopeModelVersion, anyRole...)...)
	v1.POST("/models/:name/versions/:v/approve", s.modelVersionApprove, lb(approver...)...)
	v1.POST("/models/:name/versions/:v/deprecate", s.modelVersionDeprecate, w(approver...)...)
	v1.PUT("/models/:name/versions/:v/tags", s.modelVersionTags, w(governor...)...)
	v1.PUT("/models/:name/versions/:v/outputs", s.modelVersionOutputs, w(publisher...)...)
	v1.GET("/models/:name/versions/:v/outputs", s.modelVersionOutputsGet, rs(scopeModelVersion, anyRole...)...)
	v1.PUT("/models/:name/aliases/:alias", s.aliasSet, w(governor...)...)
	v1.GET("/models/:name/aliases/:alias", s.aliasGet, rs(scopeModel, anyRole...)...)

	v1.POST("/devices", s.deviceCreate, w(adminOnly...)...)
	v1.GET("/devices", s.deviceList, r(readers...)...)
	v1.GET("/devices/:id", s.deviceGet, r(anyRole...)...)
	v1.PATCH("/devices/:id", s.devicePatch, w(adminOnly...)...)
	v1.DELETE("/devices/:id", s.deviceDelete, w(adminOnly...)...)
	v1.POST("/devices/:id/token", s.deviceRotateToken, w(adminOnly...)...)
	v1.PUT("/devices/:id/models/:name", s.deviceDesiredSet, w(adminOnly...)...)
	v1.POST("/devices/telemetry", s.deviceTelemetry, w(adminOnly...)...)
	v1.POST("/devices/samples", s.sampleStage, w(adminOnly...)...)

	v1.POST("/rollouts", s.rolloutCreate, w(approver...)...)
	v1.GET("/rollouts", s.rolloutList, r(readers...)...)
	v1.GET("/rollouts/:id", s.rolloutGet, r(readers...)...)
	v1.GET("/rollouts/:id/devices", s.rolloutDevices, r(readers...)...)
	v1.POST("/rollouts/:id/:action", s.rolloutAction, w(approver...)...)

	v1.POST("/tokens", s.tokenCreate, w(adminOnly...)...)
	v1.GET("/tokens", s.tokenList, r(adminOnly...)...)
	v1.DELETE("/tokens/:id", s.tokenDelete, w(adminOnly...)...)

	v1.GET("/outputs", s.outputsView, r(readers...)...)
	v1.GET("/lineage", s.lineage, r(readers...)...)
	v1.POST("/lineage", s.openLineageIngest, w(publisher...)...)
	v1.POST("/lineage/batch", s.openLineageIngest, w(publisher...)...)
	v1.POST("/openlineage", s.openLineageIngest, w(publisher...)...)
	v1.GET("/openlineage/events", s.openLineageExport, r(readers...)...)
	v1.GET("/audit", s.audit, r(readers...)...)
	v1.GET("/audit/checkpoint", s.auditCheckpoint, r(readers...)...)
	v1.POST("/audit/prune", s.auditPrune, w(adminOnly...)...)
	v1.GET("/keys", s.keys, r(anyRole...)...)
	v1.GET("/keys/root", s.keysRoot, r(anyRole...)...)
	v1.POST("/keys/rotate", s.keysRotate, lb(adminOnly...)...)
	v1.POST("/keys/root", s.keysRootRotate, lb(adminOnly...)...)
	v1.POST("/keys/:id/retire", s.keysRetire, lb(adminOnly...)...)

	s.webhookRoutes(v1)
}

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"status": "ok"})
}

func (s *Server) readyz(c echo.Context) error {
	id, addr, _ := s.store.LeaderHTTP()
	body := map[string]any{
		"ready": s.store.Ready(), "applied_index": s.store.AppliedIndex(),
		"leader": map[string]string{"id": id, "http": addr},
	}
	if !s.store.Ready() {
		c.Response().Header().Set("Retry-After", "1")
		return c.JSON(http.StatusServiceUnavailable, body)
	}
	return c.JSON(http.StatusOK, body)
}
