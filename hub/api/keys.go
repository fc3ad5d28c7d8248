package api

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/keys"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/shared/trust"
)

// keyView is one online key as GET /api/v1/keys lists it: never the private half.
type keyView struct {
	KeyID     string `json:"key_id"`
	PublicKey string `json:"public_key"`
	Status    string `json:"status"`
	Signer    bool   `json:"signer"`
	AddedAt   int64  `json:"added_at"`
	RetiredAt int64  `json:"retired_at,omitempty"`
}

// keysView is the answer of the key endpoints: the active keys first.
type keysView struct {
	Items       []keyView `json:"items"`
	RootVersion int64     `json:"root_version"`
	NextCursor  *string   `json:"next_cursor"`
}

func (s *Server) keysView() (keysView, error) {
	t, err := s.read.Trust()
	if errors.Is(err, state.ErrNotFound) {
		return keysView{Items: []keyView{}}, nil
	}
	if err != nil {
		return keysView{}, err
	}
	out := keysView{Items: []keyView{}, RootVersion: t.RootVersion}
	for _, st := range []string{state.KeyActive, state.KeyRetired} {
		for _, k := range t.Keys {
			if k.Status == st {
				out.Items = append(out.Items, keyView{KeyID: k.KeyID, PublicKey: k.PublicKey, Status: k.Status,
					Signer: k.KeyID == t.Signer, AddedAt: k.AddedAt, RetiredAt: k.RetiredAt})
			}
		}
	}
	return out, nil
}

// keys lists the cluster's online keys (GET /api/v1/keys).
func (s *Server) keys(c echo.Context) error {
	v, err := s.keysView()
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// keysRoot serves a root metadata document (GET /api/v1/keys/root[?version=N]): the newest by
// default. It is what agents are enrolled with (trusted_root).
func (s *Server) keysRoot(c echo.Context) error {
	roots, err := s.read.TrustRoots()
	if err != nil {
		return err
	}
	if len(roots) == 0 {
		return problem(http.StatusServiceUnavailable, ProblemNoLeader, "no root of trust yet",
			"the cluster's first leader has not created its root of trust yet; try again")
	}
	b := roots[len(roots)-1]
	if q := c.QueryParam("version"); q != "" {
		v, err := strconv.Atoi(q)
		if err != nil || v < 1 || v > len(roots) {
			return badRequest("version", "version must be from 1 to %d", len(roots))
		}
		b = roots[v-1]
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, b)
}

// SignedRootRequest is the optional body of POST /api/v1/keys/rotate and .../retire: a root
// version signed away from the hub with the offline root key (`driftline key rotate
// --root-key`), and for a rotation the new online key's private half (standard base64 of the
// 64-byte ed25519 key). Without a body the leader signs with the root key it holds.
type SignedRootRequest struct {
	Root       json.RawMessage `json:"root"`
	PrivateKey string          `json:"private_key,omitempty"`
}

// signedRoot reads the optional SignedRootRequest; nil when the body is empty.
func (s *Server) signedRoot(c echo.Context) (*SignedRootRequest, error) {
	if c.Request().ContentLength == 0 {
		return nil, nil
	}
	var req SignedRootRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return nil, err
	}
	if len(req.Root) == 0 {
		return nil, badRequest("root", "a signed root document is required")
	}
	return &req, nil
}

// keysRotate adds a fresh online key, makes it the signer, and certifies it in the next root
// version (POST /api/v1/keys/rotate). The old keys stay certified until retired.
func (s *Server) keysRotate(c echo.Context) error {
	req, err := s.signedRoot(c)
	if err != nil {
		return err
	}
	if req != nil {
		raw, err := base64.StdEncoding.Strict().DecodeString(req.PrivateKey)
		if err != nil || len(raw) != ed25519.PrivateKeySize {
			return badRequest("private_key", "want the standard base64 of a %d-byte ed25519 private key", ed25519.PrivateKeySize)
		}
		next := keys.ActiveKey(ed25519.PrivateKey(raw), time.Now())
		return s.changeTrust(c, true, func(t state.Trust, _ []byte, _ time.Time) (state.TrustSet, error) {
			return state.TrustSet{Root: req.Root, Signer: next.KeyID, Keys: append(append([]state.TrustKey(nil), t.Keys...), next)}, nil
		})
	}
	return s.changeTrust(c, false, func(t state.Trust, latest []byte, now time.Time) (state.TrustSet, error) {
		return keys.Rotate(t, latest, s.rootKey(), nil, now)
	})
}

// keysRetire drops a key from the next root version (POST /api/v1/keys/{id}/retire): agents
// that learn that root refuse its signatures from then on.
func (s *Server) keysRetire(c echo.Context) error {
	id := c.Param("id")
	req, err := s.signedRoot(c)
	if err != nil {
		return err
	}
	if req != nil {
		return s.changeTrust(c, true, func(t state.Trust, _ []byte, now time.Time) (state.TrustSet, error) {
			return keys.RetireSigned(t, req.Root, id, now)
		})
	}
	return s.changeTrust(c, false, func(t state.Trust, latest []byte, now time.Time) (state.TrustSet, error) {
		return keys.Retire(t, latest, s.rootKey(), id, now)
	})
}

// keysRootRotate installs a root version whose root role changed (POST /api/v1/keys/root): the
// body is a SignedRootRequest whose root was signed away from the hub by the old and the new
// root key (`driftline key rotate-root`). The online keys stay as they are; the state machine
// refuses a root that does not chain by TUF's rule (signed by the threshold of the current
// root's keys and of its own) or that certifies other online keys (400).
func (s *Server) keysRootRotate(c echo.Context) error {
	req, err := s.signedRoot(c)
	if err != nil {
		return err
	}
	if req == nil {
		return badRequest("root", "a root document signed by the old and the new root key is required (driftline key rotate-root)")
	}
	return s.changeTrust(c, true, func(t state.Trust, _ []byte, _ time.Time) (state.TrustSet, error) {
		return state.TrustSet{Root: req.Root, Signer: t.Signer, Keys: t.Keys}, nil
	})
}

func (s *Server) rootKey() []byte {
	if s.cfg.RootKey == nil {
		return nil
	}
	return s.cfg.RootKey()
}

// changeTrust builds the next TrustSet from the current trust state and applies it; the state
// machine refuses a root that does not chain (400). offline says the root was signed elsewhere,
// so this node need not hold the root key.
func (s *Server) changeTrust(c echo.Context, offline bool, build func(state.Trust, []byte, time.Time) (state.TrustSet, error)) error {
	if !offline && s.rootKey() == nil {
		return problem(http.StatusConflict, ProblemConflict, "root key not on this node",
			"the leader does not hold the root key (DATA/root.key or --root-key): sign the new root where the key is (driftline key rotate --root-key FILE), or make the node that holds it the leader")
	}
	if err := s.store.Barrier(c.Request().Context()); err != nil {
		return err
	}
	t, err := s.read.Trust()
	if errors.Is(err, state.ErrNotFound) {
		return problem(http.StatusServiceUnavailable, ProblemNoLeader, "no root of trust yet", keys.ErrNoTrust.Error())
	}
	if err != nil {
		return err
	}
	roots, err := s.read.TrustRoots()
	if err != nil {
		return err
	}
	latest := roots[len(roots)-1]
	if !offline {
		if r, err := trust.Parse(latest); err == nil && !r.HasRootKey(ed25519.PrivateKey(s.rootKey()).Public().(ed25519.PublicKey)) {
			return problem(http.StatusConflict, ProblemConflict, "root key rotated",
				"the root key this node holds is no longer the cluster's root key (driftline key rotate-root replaced it): sign with the current one (--root-key FILE)")
		}
	}
	set, err := build(t, latest, time.Now())
	switch {
	case errors.Is(err, keys.ErrKeyUnknown):
		return problem(http.StatusNotFound, ProblemNotFound, "no such key", err.Error())
	case errors.Is(err, keys.ErrLastKey):
		return problem(http.StatusConflict, ProblemConflict, "conflict", err.Error())
	case err != nil:
		return err
	}
	if _, err := s.apply(c, command.TypeTrustSet|command.IgnoreIfUnknown, set); err != nil {
		return err
	}
	v, err := s.keysView()
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// currentKey returns the cluster's signer, or a 503 before the first root exists.
func (s *Server) currentKey() (keys.Current, error) {
	if s.cfg.Keys == nil {
		return keys.Current{}, problem(http.StatusServiceUnavailable, ProblemNoLeader, "no signing key", "this node has no key source")
	}
	cur, err := s.cfg.Keys.Current()
	if errors.Is(err, keys.ErrNoTrust) {
		return keys.Current{}, problem(http.StatusServiceUnavailable, ProblemNoLeader, "no signing key yet",
			"the cluster's first leader has not created its root of trust yet; try again")
	}
	return cur, err
}
