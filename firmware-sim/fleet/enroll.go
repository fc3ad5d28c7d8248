package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
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

// newHubClient is the client fleet mode enrols through: its transport keeps enrollConcurrency
// idle connections to the hub, so the concurrent creates reuse theirs.
func newHubClient(hubURL, token string) *hubClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = enrollConcurrency // keep the enrolment's connections
	return &hubClient{url: strings.TrimRight(hubURL, "/"), token: token, c: &http.Client{Transport: tr}}
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
// its identity across runs) when the hub knows the device, the others are created on the hub.
// A kept device the hub does not know (the state dir was used against another hub, or the hub
// was reset) is enrolled again: its kept token would be refused forever. The credentials are
// saved as they change.
func enroll(ctx context.Context, h *hubClient, store *credStore, ids []string, labels map[string]string, log *slog.Logger) ([]creds.Credential, error) {
	var onHub map[string]bool
	if store.len() > 0 {
		var err error
		if onHub, err = hubDeviceIDs(ctx, h); err != nil {
			return nil, err
		}
	}
	out := make([]creds.Credential, len(ids))
	var todo []int // indexes of ids to create on the hub
	again := 0
	for i, id := range ids {
		if tok, ok := store.get(id); ok && onHub[id] {
			out[i] = creds.Credential{ID: id, Token: tok}
			continue
		} else if ok {
			again++
		}
		todo = append(todo, i)
	}
	// Creates go out enrollConcurrency at a time: each is a Raft commit, and the leader writes
	// the commits that wait together in one synced append, so one at a time cost a disk sync per
	// device (~5 ms: 10,000 devices took ~50 s of bench-fleet's "all online"). Every
	// enrollBatch the tokens so far are saved, so a run stopped part-way keeps what it enrolled.
	for len(todo) > 0 {
		batch := todo[:min(enrollBatch, len(todo))]
		todo = todo[len(batch):]
		if err := enrollBatchOf(ctx, h, store, ids, batch, labels, out); err != nil {
			return nil, err
		}
		if err := store.flush(); err != nil {
			return nil, err
		}
	}
	if again > 0 {
		log.Warn("the hub does not know devices whose tokens fleet mode kept (another or a reset hub): enrolled them again",
			"devices", again, "credentials", store.path)
	}
	return out, store.flush()
}

// enrollConcurrency is how many device creates are in flight at once; enrollBatch how many are
// enrolled between two saves of the credentials file.
const (
	enrollConcurrency = 32
	enrollBatch       = 512
)

// enrollBatchOf creates the devices ids[i] for i in batch, enrollConcurrency at a time, records
// their tokens in store and out[i], and returns the first error.
func enrollBatchOf(ctx context.Context, h *hubClient, store *credStore, ids []string, batch []int, labels map[string]string, out []creds.Credential) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range min(enrollConcurrency, len(batch)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				tok, err := enrollOne(ctx, h, store.path, ids[i], labels)
				if err != nil {
					once.Do(func() { first = err; cancel() })
					continue
				}
				store.set(ids[i], tok)
				out[i] = creds.Credential{ID: ids[i], Token: tok}
			}
		}()
	}
feed:
	for _, i := range batch {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}

// enrollOne creates device id on the hub and returns its token. A device that exists already
// is an ErrIdentity: fleet mode does not hold its token, and will not delete a device it may not
// own.
func enrollOne(ctx context.Context, h *hubClient, credPath, id string, labels map[string]string) (string, error) {
	var resp struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	code, err := h.do(ctx, http.MethodPost, "/api/v1/devices", map[string]any{"id": id, "labels": labels}, &resp)
	if code == http.StatusConflict {
		return "", fmt.Errorf("%w: %s exists on the hub but its token is not in %s (remove the device, or use another --id-pattern)", ErrIdentity, id, credPath)
	}
	if err != nil {
		return "", err
	}
	if resp.Token == "" {
		return "", fmt.Errorf("%w: enrolment of %s returned no token", ErrHub, id)
	}
	return resp.Token, nil
}

// hubDeviceIDs lists the ids of every device the hub knows.
func hubDeviceIDs(ctx context.Context, h *hubClient) (map[string]bool, error) {
	ids := map[string]bool{}
	q := url.Values{"limit": {"1000"}}
	for {
		var page struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
			NextCursor *string `json:"next_cursor"`
		}
		if _, err := h.do(ctx, http.MethodGet, "/api/v1/devices?"+q.Encode(), nil, &page); err != nil {
			return nil, err
		}
		for _, d := range page.Items {
			ids[d.ID] = true
		}
		if page.NextCursor == nil || *page.NextCursor == "" || *page.NextCursor == q.Get("cursor") {
			return ids, nil
		}
		q.Set("cursor", *page.NextCursor)
	}
}

// deviceExists asks the hub whether it knows device id.
func deviceExists(ctx context.Context, h *hubClient, id string) (bool, error) {
	code, err := h.do(ctx, http.MethodGet, "/api/v1/devices/"+url.PathEscape(id), nil, nil)
	if code == http.StatusNotFound {
		return false, nil
	}
	return err == nil, err
}

// credStore is the credentials file of a fleet, in memory, saved by flush.
type credStore struct {
	path  string
	mu    sync.Mutex
	list  []creds.Credential
	index map[string]int
	dirty bool
}

// openCredStore loads path (a missing file is an empty store).
func openCredStore(path string) (*credStore, error) {
	s := &credStore{path: path, index: map[string]int{}}
	if _, err := os.Stat(path); err == nil {
		cs, err := creds.Load(path)
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			s.index[c.ID] = len(s.list)
			s.list = append(s.list, c)
		}
	}
	return s, nil
}

func (s *credStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.list)
}

func (s *credStore) get(id string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.index[id]
	if !ok {
		return "", false
	}
	return s.list[i].Token, true
}

// set records id's token (replacing a kept one); flush saves it.
func (s *credStore) set(id, tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.index[id]; ok {
		s.list[i].Token = tok
	} else {
		s.index[id] = len(s.list)
		s.list = append(s.list, creds.Credential{ID: id, Token: tok})
	}
	s.dirty = true
}

// flush saves the file if anything changed.
func (s *credStore) flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.dirty {
		return nil
	}
	if err := creds.Save(s.path, s.list); err != nil {
		return err
	}
	s.dirty = false
	return nil
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
