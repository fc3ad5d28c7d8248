package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/driftline/driftline/hub/state"
)

// hubAPI is the little of the hub's HTTP API the demo reads and writes directly (the rest goes
// through the driftline CLI, as a user would).
type hubAPI struct {
	url, token string
	c          *http.Client
}

func (h *hubAPI) do(ctx context.Context, method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, h.url+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+h.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// device is the part of GET /api/v1/devices the demo reads.
type device struct {
	ID       string            `json:"id"`
	Labels   map[string]string `json:"labels"`
	Online   bool              `json:"online"`
	Reported struct {
		AgentVersion string `json:"agent_version"`
		Models       map[string]struct {
			Active *int   `json:"active"`
			State  string `json:"state"`
		} `json:"models"`
	} `json:"reported"`
	Health *struct {
		Version      int     `json:"version"`
		Rows         int64   `json:"rows"`
		Invalid      int64   `json:"invalid"`
		DatasetDrift bool    `json:"dataset_drift"`
		DriftShare   float64 `json:"drift_share"`
	} `json:"health"`
}

// gate is one gate's value in a rollout.
type gate struct {
	Value     float64 `json:"value"`
	Threshold float64 `json:"threshold"`
	Failed    bool    `json:"failed"`
	Evidence  int64   `json:"evidence"`
}

// rollout is the part of GET /api/v1/rollouts the demo reads.
type rollout struct {
	ID      string          `json:"id"`
	Model   string          `json:"model"`
	Version int             `json:"version"`
	State   string          `json:"state"`
	Wave    int             `json:"wave"`
	Reason  string          `json:"reason"`
	Gates   map[string]gate `json:"gates"`
	Devices map[string]int  `json:"devices"`
}

func (h *hubAPI) devices(ctx context.Context) ([]device, error) {
	var page struct {
		Items []device `json:"items"`
	}
	err := h.do(ctx, http.MethodGet, "/api/v1/devices?limit=1000", nil, &page)
	return page.Items, err
}

func (h *hubAPI) rollouts(ctx context.Context) ([]rollout, error) {
	var page struct {
		Items []rollout `json:"items"`
	}
	err := h.do(ctx, http.MethodGet, "/api/v1/rollouts?limit=1000", nil, &page)
	return page.Items, err
}

func (h *hubAPI) rollout(ctx context.Context, id string) (rollout, error) {
	var r rollout
	err := h.do(ctx, http.MethodGet, "/api/v1/rollouts/"+id, nil, &r)
	return r, err
}

func (h *hubAPI) datasetVersions(ctx context.Context, name string) ([]state.DatasetVersion, error) {
	var p struct {
		Items []state.DatasetVersion `json:"items"`
	}
	err := h.do(ctx, http.MethodGet, "/api/v1/datasets/"+name+"/versions", nil, &p)
	return p.Items, err
}
