package api

import (
	"net/http"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
)

// TokenRequest is the body of POST /api/v1/tokens.
type TokenRequest struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

// TokenCreated answers POST /api/v1/tokens: the token is shown this once.
type TokenCreated struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Role      string `json:"role"`
	CreatedAt int64  `json:"created_at"`
	// ExpiresAt is when the token stops working (Unix ms); absent: never.
	ExpiresAt int64  `json:"expires_at,omitempty"`
	Token     string `json:"token"`
}

func (s *Server) tokenCreate(c echo.Context) error {
	var req TokenRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	if !state.ValidName(req.Name) {
		return badRequest("name", "token name %q: use 1-128 letters, digits, '.', '_' or '-'", req.Name)
	}
	if !state.ValidRole(req.Role) || req.Role == state.RoleDevice || req.Role == state.RoleJoin {
		return badRequest("role", "role must be admin, publisher, approver or viewer (device tokens come from POST /api/v1/devices, join tokens from POST /api/v1/cluster/join-tokens)")
	}
	tok := NewToken()
	res, err := s.apply(c, command.TypeTokenCreate, state.TokenCreate{ID: uuid.NewString()[:8], Name: req.Name, Role: req.Role, Hash: HashToken(tok)})
	if err != nil {
		return err
	}
	t, ok := res.(state.Token)
	if !ok {
		return problem(http.StatusConflict, ProblemExists, "already exists", "this request already created a token")
	}
	return c.JSON(http.StatusCreated, TokenCreated{ID: t.ID, Name: t.Name, Role: t.Role, CreatedAt: t.CreatedAt, Token: tok})
}

func (s *Server) tokenList(c echo.Context) error { return listPage(c, s.read.Tokens) }

func (s *Server) tokenDelete(c echo.Context) error {
	res, err := s.apply(c, command.TypeTokenDelete, state.TokenDelete{ID: c.Param("id")})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}
