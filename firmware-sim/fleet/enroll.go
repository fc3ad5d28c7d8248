package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/driftline/driftline/firmware-sim/creds"
)

// CredentialsFile is the file under the state dir where fleet mode keeps its devices' tokens
// (the hub shows a token only once), mode 0600.
const CredentialsFile = "credentials.yaml"

// hubClient is the little of the hub API fleet mode needs.
type hubClient struct {
	url, token string
	c          *http.Client
}

func (h *hubClient) do(ctx context.Context, method, path string, body, out any) (int, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		r = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, h.url+path, r)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+h.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrHub, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%w: %v", ErrHub, err)
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("%w: %s %s: %s: %s", ErrHub, method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%w: %s %s: %v", ErrHub, method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// enroll returns credentials for ids: those already in the state dir are kept (a device keeps
// its identity across runs), the others are created on the hub and saved at once.
func enroll(ctx context.Context, h *hubClient, stateDir string, ids []string, labels map[string]string) ([]creds.Credential, error) {
	path := filepath.Join(stateDir, CredentialsFile)
	known := map[string]creds.Credential{}
	var saved []creds.Credential
	if _, err := os.Stat(path); err == nil {
		cs, err := creds.Load(path)
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			known[c.ID] = c
		}
		saved = cs
	}
	out := make([]creds.Credential, 0, len(ids))
	dirty := false
	for i, id := range ids {
		if c, ok := known[id]; ok {
			out = append(out, c)
			continue
		}
		var resp struct {
			ID    string `json:"id"`
			Token string `json:"token"`
		}
		code, err := h.do(ctx, http.MethodPost, "/api/v1/devices", map[string]any{"id": id, "labels": labels}, &resp)
		if code == http.StatusConflict {
			return nil, fmt.Errorf("%w: %s exists on the hub but its token is not in %s (remove the device, or use another --id-pattern)", ErrIdentity, id, path)
		}
		if err != nil {
			return nil, err
		}
		if resp.Token == "" {
			return nil, fmt.Errorf("%w: enrolment of %s returned no token", ErrHub, id)
		}
		c := creds.Credential{ID: id, Token: resp.Token}
		out = append(out, c)
		saved = append(saved, c)
		dirty = true
		if (i+1)%100 == 0 { // keep what is enrolled even if the run stops part-way
			if err := creds.Save(path, saved); err != nil {
				return nil, err
			}
			dirty = false
		}
	}
	if dirty {
		if err := creds.Save(path, saved); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// hubFacts reads the cluster's root of trust and the advertised broker URLs.
func hubFacts(ctx context.Context, h *hubClient) (root string, brokers []string, err error) {
	var raw json.RawMessage
	if _, err := h.do(ctx, http.MethodGet, "/api/v1/keys/root", nil, &raw); err != nil {
		return "", nil, err
	}
	var st map[string]json.RawMessage
	if _, err := h.do(ctx, http.MethodGet, "/api/v1/cluster", nil, &st); err == nil {
		for _, k := range []string{"advertise_mqtt", "mqtt", "brokers"} {
			var urls []string
			if raw, ok := st[k]; ok && json.Unmarshal(raw, &urls) == nil && len(urls) > 0 {
				brokers = urls
				break
			}
		}
	}
	if len(raw) == 0 {
		return "", nil, errors.New("fleet: the hub serves no root of trust")
	}
	return string(raw), brokers, nil
}
