package cli

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/driftline/driftline/hub/api"
)

func (a *app) clusterCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Raft cluster status and membership"}
	cmd.AddCommand(a.clusterStatus(), a.clusterJoin(), a.clusterRemove(), a.clusterJoinToken())
	return cmd
}

func (a *app) clusterJoinToken() *cobra.Command {
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "join-token [--ttl 1h]",
		Short: "Create a join token: it lets a new node join (hub serve --join-token) and nothing else, and expires",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ttl <= 0 || ttl > api.MaxJoinTokenTTL {
				return usagef("--ttl must be within 1s..%s", api.MaxJoinTokenTTL)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var out api.TokenCreated
			raw, err := c.JSON(a.ctx, http.MethodPost, "/api/v1/cluster/join-tokens", nil, api.JoinTokenRequest{TTLSeconds: int64(ttl / time.Second)}, &out)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			_, err = fmt.Fprintf(a.stdout, "join token: %s\nexpires: %s\n(shown once; pass it to `driftline hub serve --join URL --join-token TOKEN`)\n",
				out.Token, time.UnixMilli(out.ExpiresAt).UTC().Format(time.RFC3339))
			return err
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", api.DefaultJoinTokenTTL, "how long the token works (at most 168h)")
	return cmd
}

func (a *app) clusterStatus() *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use: "status [--wait D]", Short: "Show the leader, the nodes, the term and the commit and applied index", Args: exactArgs(0),
		Long: "status shows the cluster as the hub sees it. --wait D retries until the hub answers with a leader\n" +
			"(a hub just started in the background, its admin token not yet written) or D has passed.",
		RunE: func(cmd *cobra.Command, args []string) error {
			var st api.ClusterStatus
			raw, err := a.clusterStatusWait(wait, &st)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			leader := "none"
			if st.Leader != nil && st.Leader.ID != "" {
				leader = st.Leader.ID + " (" + st.Leader.HTTP + ")"
			}
			if err := fields(a.stdout, "leader", leader, "term", strconv.FormatUint(st.Term, 10),
				"commit index", strconv.FormatUint(st.CommitIndex, 10), "applied index", strconv.FormatUint(st.AppliedIndex, 10)); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout)
			t := newTable(a.stdout, "ID", "STATE", "VOTER", "RAFT", "HTTP")
			for _, n := range st.Nodes {
				t.row(n.ID, dash(n.State), strconv.FormatBool(n.Voter), n.Raft, n.HTTP)
			}
			return t.flush()
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", 0, "retry until the hub answers with a leader, at most this long (e.g. 30s)")
	return cmd
}

// clusterStatusWait reads GET /api/v1/cluster into st, retrying for up to wait until the hub
// answers with a leader. The client is made anew each try, so an admin token file that the hub
// writes on its first start is found once it exists.
func (a *app) clusterStatusWait(wait time.Duration, st *api.ClusterStatus) ([]byte, error) {
	deadline := time.Now().Add(wait)
	for {
		raw, err := func() ([]byte, error) {
			c, err := a.client()
			if err != nil {
				return nil, err
			}
			return c.JSON(a.ctx, http.MethodGet, "/api/v1/cluster", nil, nil, st)
		}()
		if errors.Is(err, ErrUsage) || (err == nil && (st.Leader != nil || wait == 0)) {
			return raw, err
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("%w: the hub answers but knows no leader after %s", ErrUnavailable, wait)
			}
			return nil, err
		}
		select {
		case <-a.ctx.Done():
			return nil, a.ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (a *app) clusterJoin() *cobra.Command {
	var id, raftAddr string
	var nonvoter bool
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "join URL --id ID --raft ADDR",
		Short: "Ask the hub at --hub to add the node whose API is at URL",
		Long: "join adds a node that is running but not yet a member (started with `hub serve --join` it does this\n" +
			"itself). The node is added as a non-voter; once its /readyz reports it has applied the log up to the\n" +
			"commit index the leader named, it is promoted to voter (skip that with --nonvoter).",
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if id == "" || raftAddr == "" {
				return usagef("cluster join needs --id and --raft")
			}
			nodeURL := strings.TrimRight(args[0], "/")
			node, err := newClient(nodeURL, "")
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			httpAddr := strings.TrimPrefix(strings.TrimPrefix(nodeURL, "http://"), "https://")
			req := api.JoinRequest{ID: id, Raft: raftAddr, HTTP: httpAddr}
			var res api.JoinResponse
			if _, err := c.JSON(a.ctx, http.MethodPost, "/api/v1/cluster/join", nil, req, &res); err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "%s added as non-voter; it must apply index %d\n", id, res.CommitIndex)
			if !nonvoter {
				if err := a.waitApplied(node, res.CommitIndex, wait); err != nil {
					return err
				}
				req.Promote = true
				if _, err := c.JSON(a.ctx, http.MethodPost, "/api/v1/cluster/join", nil, req, &res); err != nil {
					return err
				}
			}
			if a.jsonOut() {
				b, err := jsonMarshal(res)
				if err != nil {
					return err
				}
				return printRaw(a.stdout, b)
			}
			_, err = fmt.Fprintf(a.stdout, "node %s joined (voter: %t)\n", id, res.Voter)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&id, "id", "", "the new node's id")
	f.StringVar(&raftAddr, "raft", "", "the new node's Raft address (HOST:PORT)")
	f.BoolVar(&nonvoter, "nonvoter", false, "leave the node a non-voter")
	f.DurationVar(&wait, "wait", 2*time.Minute, "how long the node may take to catch up")
	return cmd
}

// waitApplied polls the node's /readyz until its applied index reaches index.
func (a *app) waitApplied(node *client, index uint64, wait time.Duration) error {
	prog := newProgress(a.stderr, "catching up", 0)
	deadline := time.Now().Add(wait)
	for {
		var rz struct {
			AppliedIndex uint64 `json:"applied_index"`
		}
		req, err := node.request(a.ctx, http.MethodGet, "/readyz", nil, nil, "")
		if err != nil {
			return err
		}
		if res, err := node.send(req); err == nil {
			_, _ = readAnswer(res, &rz) // 503 while not ready: the body still has applied_index
			prog.status(fmt.Sprintf("applied %d of %d", rz.AppliedIndex, index))
			if rz.AppliedIndex >= index {
				prog.done()
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: node %s did not reach index %d within %s", ErrUnavailable, node.base, index, wait)
		}
		select {
		case <-a.ctx.Done():
			return fmt.Errorf("%w: %w", ErrUnavailable, a.ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (a *app) clusterRemove() *cobra.Command {
	return &cobra.Command{
		Use: "remove ID", Short: "Take a node out of the cluster", Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			raw, err := c.JSON(a.ctx, http.MethodDelete, "/api/v1/cluster/nodes/"+seg(args[0]), nil, nil, nil)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return printRaw(a.stdout, raw)
			}
			_, err = fmt.Fprintf(a.stdout, "removed node %s\n", args[0])
			return err
		},
	}
}
