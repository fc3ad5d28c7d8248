package api_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/shared/trust"
)

// TestKeysOfflineRootRefused: a root posted for a rotation must chain from the cluster's
// current root; one from another root key is refused with 400, as is a malformed private key,
// and nothing changes: the served root stays version 1.
func TestKeysOfflineRootRefused(t *testing.T) {
	h := startHub(t, nil)
	_, next, _ := ed25519.GenerateKey(rand.Reader)
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	foreign, err := trust.New(stranger, []ed25519.PublicKey{next.Public().(ed25519.PublicKey)}, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	priv := base64.StdEncoding.EncodeToString(next)
	h.must(http.StatusBadRequest, "POST", "/api/v1/keys/rotate", h.admin, api.SignedRootRequest{Root: foreign, PrivateKey: priv}, nil)
	h.must(http.StatusBadRequest, "POST", "/api/v1/keys/rotate", h.admin, api.SignedRootRequest{Root: foreign, PrivateKey: "c2hvcnQ="}, nil)
	var root json.RawMessage
	h.must(http.StatusOK, "GET", "/api/v1/keys/root", h.admin, nil, &root)
	r, err := trust.Parse(root)
	if err != nil || r.Version() != 1 {
		t.Fatalf("served root: version %d, %v", r.Version(), err)
	}
}
