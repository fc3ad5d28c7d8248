package api

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
)

// WebhookRequest is the body of POST /api/v1/webhooks.
type WebhookRequest struct {
	// ID names the webhook; default: a random id.
	ID  string `json:"id,omitempty"`
	URL string `json:"url"`
	// Events are CloudEvents types to deliver (state.EventTypes); empty: all.
	Events []string `json:"events,omitempty"`
	// Secret signs the deliveries (at least 16 characters); default: a random one.
	Secret      string `json:"secret,omitempty"`
	Description string `json:"description,omitempty"`
}

// WebhookCreated answers POST /api/v1/webhooks: the secret is shown this once.
type WebhookCreated struct {
	state.Webhook
	Secret string `json:"secret"`
}

// WebhookTestQueued answers POST /api/v1/webhooks/{id}/test.
type WebhookTestQueued struct {
	Webhook string `json:"webhook"`
	EventID string `json:"event_id"`
	Seq     uint64 `json:"seq"`
}

func (s *Server) webhookRoutes(v1 *echo.Group) {
	r := []echo.MiddlewareFunc{s.allow(adminOnly...), s.strongRead}
	w := []echo.MiddlewareFunc{s.allow(adminOnly...), s.leaderOnly}
	v1.POST("/webhooks", s.webhookCreate, w...)
	v1.GET("/webhooks", s.webhookList, r...)
	v1.GET("/webhooks/:id", s.webhookGet, r...)
	v1.DELETE("/webhooks/:id", s.webhookDelete, w...)
	v1.POST("/webhooks/:id/test", s.webhookTest, w...)
	v1.GET("/webhooks/:id/deliveries", s.webhookDeliveries, r...)
	v1.GET("/webhooks/:id/pending", s.webhookPending, r...)
}

func (s *Server) webhookCreate(c echo.Context) error {
	var req WebhookRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	if req.ID == "" {
		req.ID = "wh-" + uuid.NewString()[:8]
	}
	if !state.ValidName(req.ID) {
		return badRequest("id", "webhook id %q: use 1-128 letters, digits, '.', '_' or '-'", req.ID)
	}
	if err := state.ValidWebhookURL(req.URL); err != nil {
		return badRequest("url", "%v", err)
	}
	for _, e := range req.Events {
		if !state.ValidEventType(e) {
			return badRequest("events", "unknown event type %q", e)
		}
	}
	if req.Secret == "" {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		req.Secret = "whsec_" + hex.EncodeToString(b)
	} else if len(req.Secret) < 16 {
		return badRequest("secret", "a webhook secret needs at least 16 characters")
	}
	stored := req.Secret
	if s.cfg.Seal != nil {
		// Sealed here, before the command: the Raft log, snapshots and backups hold only the
		// sealed form (docs/security.md).
		var err error
		if stored, err = s.cfg.Seal(req.Secret); err != nil {
			return err
		}
	}
	res, err := s.apply(c, command.TypeWebhookCreate, state.WebhookCreate{ID: req.ID, URL: req.URL, Events: req.Events,
		Secret: stored, Description: req.Description})
	if err != nil {
		return err
	}
	wh, ok := res.(state.Webhook)
	if !ok {
		return problem(http.StatusConflict, ProblemExists, "already exists", "this request already created a webhook")
	}
	return c.JSON(http.StatusCreated, WebhookCreated{Webhook: wh, Secret: req.Secret})
}

func (s *Server) webhookList(c echo.Context) error { return listPage(c, s.read.Webhooks) }

func (s *Server) webhookGet(c echo.Context) error {
	w, err := s.read.Webhook(c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, w)
}

func (s *Server) webhookDelete(c echo.Context) error {
	res, err := s.apply(c, command.TypeWebhookDelete, state.WebhookDelete{ID: c.Param("id")})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

func (s *Server) webhookTest(c echo.Context) error {
	res, err := s.apply(c, command.TypeWebhookTest, state.WebhookTest{ID: c.Param("id")})
	if err != nil {
		return err
	}
	d, ok := res.(state.WebhookDelivery)
	if !ok {
		return problem(http.StatusConflict, ProblemExists, "already exists", "this request already queued a test event")
	}
	return c.JSON(http.StatusAccepted, WebhookTestQueued{Webhook: d.Webhook, EventID: d.Event.ID, Seq: d.Seq})
}

func (s *Server) webhookDeliveries(c echo.Context) error {
	id := c.Param("id")
	if _, err := s.read.Webhook(id); err != nil {
		return err
	}
	return listPage(c, func(cursor string, limit int) (state.Page[state.WebhookLogEntry], error) {
		return s.read.WebhookLog(id, cursor, limit)
	})
}

func (s *Server) webhookPending(c echo.Context) error {
	id := c.Param("id")
	if _, err := s.read.Webhook(id); err != nil {
		return err
	}
	return listPage(c, func(cursor string, limit int) (state.Page[state.WebhookDelivery], error) {
		return s.read.PendingDeliveries(id, cursor, limit)
	})
}
