package api

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/driftline/driftline/hub/state"
)

const principalKey = "driftline.principal"

// HashToken is how tokens are stored: hex sha256. Tokens are 32 random bytes, so a plain hash is
// enough (no dictionary to defend against).
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// principal returns the authenticated caller of c.
func principal(c echo.Context) state.Principal {
	p, _ := c.Get(principalKey).(state.Principal)
	return p
}

// actor is the identity recorded in commands and the audit log.
func actor(c echo.Context) string {
	p := principal(c)
	if p.Kind == "device" {
		return "device:" + p.ID
	}
	return p.Name
}

// tokenID is the id of the caller's API token ("" for a device): unique where names are not.
func tokenID(c echo.Context) string {
	if p := principal(c); p.Kind == "token" {
		return p.ID
	}
	return ""
}

// allow authenticates the bearer token and lets the request through when the caller's role is
// admin or one of roles.
func (s *Server) allow(roles ...string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			h := c.Request().Header.Get(echo.HeaderAuthorization)
			tok, ok := strings.CutPrefix(h, "Bearer ")
			if !ok || strings.TrimSpace(tok) == "" {
				return unauthorized("send Authorization: Bearer TOKEN")
			}
			p, err := s.read.PrincipalByTokenHash(HashToken(strings.TrimSpace(tok)))
			if errors.Is(err, state.ErrNotFound) {
				return unauthorized("unknown or revoked token")
			}
			if err != nil {
				return err
			}
			if p.ExpiresAt != 0 && time.Now().UnixMilli() >= p.ExpiresAt {
				return unauthorized("token expired")
			}
			c.Set(principalKey, p)
			if p.Role == state.RoleAdmin {
				return next(c)
			}
			for _, r := range roles {
				if p.Role == r {
					return next(c)
				}
			}
			return forbidden("role " + p.Role + " may not " + c.Request().Method + " " + c.Path())
		}
	}
}

// Role sets used by the routes.
var (
	anyRole   = []string{state.RoleViewer, state.RolePublisher, state.RoleApprover, state.RoleDevice}
	readers   = []string{state.RoleViewer, state.RolePublisher, state.RoleApprover}
	publisher = []string{state.RolePublisher}
	approver  = []string{state.RoleApprover}
	governor  = []string{state.RolePublisher, state.RoleApprover}
	adminOnly = []string{}
	joiners   = []string{state.RoleJoin}
)
