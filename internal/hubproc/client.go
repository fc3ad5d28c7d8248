package hubproc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/driftline/driftline/internal/testhelp"
)

// Refused is Client.Do's status when the node refused the connection: the request was never
// sent. A request that got no answer otherwise has status 0.
const Refused = -1

// Client calls hub nodes' HTTP APIs with a bearer token.
type Client struct {
	// Token is the bearer token sent with every request (the admin token, usually).
	Token string
	// HTTP sends the requests.
	HTTP *http.Client
}

// NewClient returns a client for token with a 30 s request timeout.
func NewClient(token string) *Client {
	return &Client{Token: token, HTTP: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 128}}}
}

// Do sends one request to h (body JSON-encoded unless nil) and returns the status (Refused, or 0
// when the node did not answer) and the body (the error's text when there was no answer).
func (c *Client) Do(h *Hub, method, path string, body any) (int, []byte) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, []byte(err.Error())
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, h.URL()+path, r)
	if err != nil {
		return 0, []byte(err.Error())
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.HTTP.Do(req)
	if errors.Is(err, syscall.ECONNREFUSED) {
		return Refused, []byte(err.Error())
	}
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// Status is the part of GET /api/v1/cluster the harness reads.
type Status struct {
	Leader *struct {
		ID string `json:"id"`
	} `json:"leader"`
	Nodes []struct {
		ID    string `json:"id"`
		Voter bool   `json:"voter"`
	} `json:"nodes"`
	AppliedIndex uint64 `json:"applied_index"`
	CommitIndex  uint64 `json:"commit_index"`
}

// Voters is the number of voters in the configuration.
func (s Status) Voters() int {
	n := 0
	for _, nd := range s.Nodes {
		if nd.Voter {
			n++
		}
	}
	return n
}

// Status returns h's view of the cluster; false when h did not answer with one.
func (c *Client) Status(h *Hub) (Status, bool) {
	var st Status
	code, b := c.Do(h, http.MethodGet, "/api/v1/cluster", nil)
	return st, code == http.StatusOK && json.Unmarshal(b, &st) == nil
}

// Leader returns the hub of hubs that the first running one answering names as leader, or nil.
func (c *Client) Leader(hubs []*Hub) *Hub {
	for _, h := range hubs {
		if !h.Running() {
			continue
		}
		if st, ok := c.Status(h); ok && st.Leader != nil {
			for _, x := range hubs {
				if x.ID == st.Leader.ID {
					return x
				}
			}
		}
	}
	return nil
}

// WaitVoters waits up to 60 s until h's view of the configuration has n voters.
func (c *Client) WaitVoters(t testing.TB, h *Hub, n int) {
	t.Helper()
	testhelp.WaitFor(t, 60*time.Second, fmt.Sprintf("%d voters on %s", n, h.ID), func() bool {
		st, ok := c.Status(h)
		return ok && st.Voters() == n
	})
}
