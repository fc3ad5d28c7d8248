package api

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"time"
)

// waitReplicated waits until every node of the cluster reports (GET /readyz) an applied index
// of at least index, or until ctx ends. It returns the ids of the nodes still behind. Approval
// uses it so that every hub node holds every chunk of an approved version before the approval
// answers (SPEC section 2): Raft's commit alone guarantees only a majority.
func (s *Server) waitReplicated(ctx context.Context, index uint64) []string {
	st := s.store.Cluster()
	behind := map[string]string{}
	for _, n := range st.Nodes {
		if n.ID != st.Self && n.HTTP != "" {
			behind[n.ID] = n.HTTP
		}
	}
	for len(behind) > 0 {
		for id, addr := range behind {
			if s.appliedAt(ctx, addr) >= index {
				delete(behind, id)
			}
		}
		if len(behind) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			out := make([]string, 0, len(behind))
			for id := range behind {
				out = append(out, id)
			}
			sort.Strings(out)
			return out
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

func (s *Server) appliedAt(ctx context.Context, addr string) uint64 {
	scheme := s.cfg.PeerScheme
	if scheme == "" {
		scheme = "http"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+addr+"/readyz", nil)
	if err != nil {
		return 0
	}
	res, err := s.client.Do(req)
	if err != nil {
		return 0
	}
	defer res.Body.Close()
	var body struct {
		AppliedIndex uint64 `json:"applied_index"`
	}
	if json.NewDecoder(res.Body).Decode(&body) != nil {
		return 0
	}
	return body.AppliedIndex
}
