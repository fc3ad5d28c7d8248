package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/api"
	"github.com/driftline/driftline/hub/cluster"
	"github.com/driftline/driftline/hub/cluster/clustertest"
	"github.com/driftline/driftline/hub/command"
	"github.com/driftline/driftline/hub/state"
	"github.com/driftline/driftline/internal/testhelp"
)

// joinNode starts a node that joins n1 with tok and waits until it is a voter.
func joinNode(t *testing.T, n1 *Node, tok, id string) *Node {
	t.Helper()
	n, err := Start(context.Background(), Config{DataDir: t.TempDir(), NodeID: id, HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		Join: n1.URL(), JoinToken: tok, Logger: testhelp.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	testhelp.WaitFor(t, 20*time.Second, id+" a voter", func() bool {
		for _, nd := range n1.Store().Status().Nodes {
			if nd.ID == id && nd.Voter {
				return true
			}
		}
		return false
	})
	return n
}

// threeNodes starts a three-node cluster; n1 leads.
func threeNodes(t *testing.T) (n1, n2, n3 *Node, tok string) {
	t.Helper()
	n1, tok = testNode(t)
	n2 = joinNode(t, n1, tok, "n2")
	n3 = joinNode(t, n1, tok, "n3")
	return n1, n2, n3, tok
}

// forwarded reads a node's count of forwarded calls.
func forwarded(n *Node, call, outcome string) float64 {
	mfs, err := n.registry.Gather()
	if err != nil {
		return -1
	}
	for _, mf := range mfs {
		if mf.GetName() != api.MetricForwarded {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["call"] == call && labels["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// rawCommand posts an encoded command to a node's cluster service with tok ("" none) over cl.
func rawCommand(t *testing.T, cl *http.Client, base, tok string, env command.Envelope) (int, string) {
	t.Helper()
	b, err := command.Encode(env)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, base+cluster.PathApply, bytes.NewReader(b))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := cl.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

// evilToken is the raw command an attacker would submit: an admin token of its own choosing,
// created without the API's checks or audit identity.
func evilToken(t *testing.T, id string) command.Envelope {
	t.Helper()
	env, err := command.New(command.TypeTokenCreate, "", 0, "attacker",
		state.TokenCreate{ID: id, Name: id, Role: state.RoleAdmin, Hash: api.HashToken("attacker-secret")})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func tokenExists(t *testing.T, n *Node, id string) bool {
	t.Helper()
	p, err := n.Reader().PrincipalByTokenHash(api.HashToken("attacker-secret"))
	return err == nil && p.ID == id
}

// TestClusterServiceRefusesNonPeers is the attack on the raw-command endpoint: an admin token, a
// token of another role, no token at all, and (with a cluster CA) an admin token over TLS without
// the cluster certificate all fail to submit a raw command; a node's own credential (node token,
// or the cluster certificate) succeeds.
func TestClusterServiceRefusesNonPeers(t *testing.T) {
	n1, tok := testNode(t)
	var viewer api.TokenCreated
	call(t, n1, tok, http.MethodPost, "/api/v1/tokens", map[string]string{"name": "v", "role": "viewer"}, http.StatusCreated, &viewer)
	// An admin cannot make a node credential through the API: ids are the hub's.
	var made api.TokenCreated
	call(t, n1, tok, http.MethodPost, "/api/v1/tokens", map[string]string{"name": "node-n9", "role": "admin"}, http.StatusCreated, &made)
	if strings.HasPrefix(made.ID, api.NodeTokenIDPrefix) {
		t.Fatalf("POST /api/v1/tokens made a node credential: %+v", made)
	}
	cl := &http.Client{Timeout: 10 * time.Second}
	for _, c := range []struct{ who, tok string }{{"admin token", tok}, {"admin token named like a node", made.Token}, {"viewer token", viewer.Token}, {"no token", ""}} {
		code, body := rawCommand(t, cl, n1.URL(), c.tok, evilToken(t, "evil"))
		if code != http.StatusForbidden && code != http.StatusUnauthorized {
			t.Errorf("%s submitted a raw command: %d %s", c.who, code, body)
		}
	}
	if tokenExists(t, n1, "evil") {
		t.Fatal("a raw command from a non-peer was applied")
	}
	// A node's token (made with its promotion) is a node credential; so is the one the leader
	// makes for itself once it has a peer (the bootstrap node never joined).
	n2 := joinNode(t, n1, tok, "n2")
	if code, body := rawCommand(t, cl, n1.URL(), n2.peerToken(), evilToken(t, "node-made")); code != http.StatusOK {
		t.Fatalf("n2's node token: %d %s", code, body)
	}
	var own string
	testhelp.WaitFor(t, 10*time.Second, "n1's own node token", func() bool { own = n1.peerToken(); return own != "" })
	if p, err := n1.Reader().PrincipalByTokenHash(api.HashToken(own)); err != nil || !api.IsNodeCredential(p) {
		t.Fatalf("n1's own node token: %+v %v", p, err)
	}
	if !tokenExists(t, n1, "node-made") {
		t.Fatal("the node's raw command was not applied")
	}

	// With a cluster CA the certificate is the credential: an admin token over TLS is refused,
	// a peer's client (which presents the node certificate) is admitted.
	ca := clustertest.NewCA(t, t.TempDir(), "cluster")
	m1 := tlsNode(t, ca, "m1", nil, "")
	mtok := readToken(t, m1)
	caCl := caClient(t, ca)
	if code, body := rawCommand(t, caCl, m1.URL(), mtok, evilToken(t, "evil-tls")); code != http.StatusForbidden {
		t.Errorf("admin token without the cluster certificate: %d %s", code, body)
	}
	if tokenExists(t, m1, "evil-tls") {
		t.Fatal("a raw command without the cluster certificate was applied")
	}
	peerCl := &http.Client{Transport: m1.peers.Transport, Timeout: 10 * time.Second}
	if code, body := rawCommand(t, peerCl, m1.URL(), "", evilToken(t, "cert-made")); code != http.StatusOK {
		t.Fatalf("peer with the cluster certificate: %d %s", code, body)
	}
}

// readToken waits for a node's admin token file.
func readToken(t *testing.T, n *Node) string {
	t.Helper()
	var tok string
	testhelp.WaitFor(t, 10*time.Second, "admin token", func() bool {
		b, err := readFileTrim(n.AdminTokenPath())
		tok = b
		return err == nil && tok != ""
	})
	return tok
}

// TestFollowerWriteTyped: writes sent to a follower of a real three-node cluster land through the
// typed call (cluster.PathApply), not a proxy: the follower counts them, answers exactly as the
// leader would (a created token is shown, a rotated device token too), reads its own writes at
// once, and an artifact upload through it is stored in forwarded chunk batches.
func TestFollowerWriteTyped(t *testing.T) {
	n1, n2, _, tok := threeNodes(t)
	if !n1.Store().IsLeader() {
		t.Fatal("n1 should lead")
	}
	before := forwarded(n2, "apply", "ok")
	var tc api.TokenCreated
	call(t, n2, tok, http.MethodPost, "/api/v1/tokens", map[string]string{"name": "pub", "role": "publisher"}, http.StatusCreated, &tc)
	if tc.Token == "" || tc.Role != "publisher" {
		t.Fatalf("token created through the follower: %+v", tc)
	}
	var dev api.DeviceCreated
	call(t, n2, tok, http.MethodPost, "/api/v1/devices", map[string]any{"id": "d1"}, http.StatusCreated, &dev)
	call(t, n2, tok, http.MethodGet, "/api/v1/devices/d1", nil, http.StatusOK, nil) // read-your-writes
	var rot api.DeviceCreated
	call(t, n2, tok, http.MethodPost, "/api/v1/devices/d1/token", nil, http.StatusOK, &rot)
	if rot.Token == "" || rot.Token == dev.Token {
		t.Fatalf("rotated through the follower: %+v", rot)
	}
	call(t, n2, tok, http.MethodPost, "/api/v1/models", map[string]string{"name": "m"}, http.StatusCreated, nil)
	call(t, n2, tok, http.MethodPost, "/api/v1/models", map[string]string{"name": "m"}, http.StatusConflict, nil) // the leader's refusal
	data := make([]byte, 3<<20)
	rand.Read(data)
	v, _ := pushModelWith(t, &http.Client{Timeout: 60 * time.Second}, n2, tok, "m", data)
	if v != 1 {
		t.Fatalf("version %d", v)
	}
	if got := forwarded(n2, "apply", "ok") - before; got < 6 {
		t.Fatalf("the follower forwarded %v commands, want the writes above as typed calls", got)
	}
	if got := forwarded(n2, "relay", "ok"); got != 1 { // the approval: it needs the leader's node key
		t.Fatalf("relayed %v calls, want 1 (the approval)", got)
	}
	// A strong read through the follower: read index from the leader, then local.
	call(t, n2, tok, http.MethodGet, "/api/v1/models/m/versions/1?consistency=strong", nil, http.StatusOK, nil)
	if forwarded(n2, "read_index", "ok") < 1 {
		t.Fatal("the strong read did not use the leader's read index")
	}
}

// blackHole accepts connections and never answers: a leader that hangs.
func blackHole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// followerOf presents a node's store as a follower whose leader is at addr.
type followerOf struct {
	storeAdapter
	addr string
}

func (f followerOf) IsLeader() bool                     { return false }
func (f followerOf) LeaderHTTP() (string, string, bool) { return "gone", f.addr, true }

// TestForwardLeaderGone: a forwarded write whose leader does not answer (it hangs, or it is gone)
// ends in a retryable 503 with Retry-After, within the forward timeout, never a hang.
func TestForwardLeaderGone(t *testing.T) {
	n, tok := testNode(t)
	peers := *n.peers
	peers.Timeout = 2 * time.Second
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	for name, addr := range map[string]string{"hanging leader": blackHole(t), "leader gone": deadAddr} {
		srv := api.New(api.Config{Store: followerOf{storeAdapter{n.store}, addr}, Reader: n.Reader(), Peers: &peers,
			PeerToken: n.peerToken, Logger: n.log})
		ts := newTestServer(t, srv.Handler())
		start := time.Now()
		req, _ := http.NewRequest(http.MethodPost, ts+"/api/v1/models", strings.NewReader(`{"name":"x"}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
			t.Fatalf("%s: %d %q (Retry-After %q), want 503 with Retry-After", name, res.StatusCode, body, res.Header.Get("Retry-After"))
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("%s: answered after %v", name, d)
		}
	}
}

// TestForwardDuringLeaderChange: the leader of a three-node cluster goes away while writes are
// sent to a follower; every answer is a success or a retryable 503 with Retry-After (never
// another error, never a hang), and once a new leader is elected the writes succeed again.
func TestForwardDuringLeaderChange(t *testing.T) {
	n1, n2, n3, tok := threeNodes(t)
	stopped := make(chan struct{})
	go func() { defer close(stopped); n1.Close() }()
	cl := &http.Client{Timeout: 40 * time.Second}
	ok503, okAfter := 0, false
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		target := n2
		if i%2 == 1 {
			target = n3
		}
		req, _ := http.NewRequest(http.MethodPost, target.URL()+"/api/v1/models", strings.NewReader(`{"name":"m`+itoa(i)+`"}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		start := time.Now()
		res, err := cl.Do(req)
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if d := time.Since(start); d > cluster.ForwardTimeout+5*time.Second {
			t.Fatalf("write %d took %v", i, d)
		}
		switch res.StatusCode {
		case http.StatusCreated:
			select {
			case <-stopped: // a write after the old leader stopped: a new one took it
				okAfter = true
			default:
			}
		case http.StatusServiceUnavailable:
			if res.Header.Get("Retry-After") == "" {
				t.Fatalf("write %d: 503 without Retry-After: %s", i, body)
			}
			ok503++
		default:
			t.Fatalf("write %d during the leader change: %d %s", i, res.StatusCode, body)
		}
		if okAfter {
			break
		}
	}
	<-stopped
	if !okAfter {
		t.Fatalf("no write succeeded after the leader went away (%d retryable answers)", ok503)
	}
	t.Logf("%d retryable 503 answers during the change", ok503)
}

func itoa(i int) string { return strconv.Itoa(i) }

// readFileTrim reads a file, spaces trimmed.
func readFileTrim(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}

// newTestServer serves h on a free port for the test and returns its URL.
func newTestServer(t *testing.T, h http.Handler) string {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts.URL
}

// TestFollowerRelaysToOlderLeader: during a rolling upgrade the leader may be of a build without
// the cluster service (404 on /cluster/v1/): a follower then relays the write as a request,
// which such a leader takes, instead of failing it.
func TestFollowerRelaysToOlderLeader(t *testing.T) {
	n, tok := testNode(t)
	old := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/cluster/v1/") {
			http.NotFound(w, r) // what a build before the cluster service answers
			return
		}
		n.api.Handler().ServeHTTP(w, r)
	})
	leader := strings.TrimPrefix(newTestServer(t, old), "http://")
	srv := api.New(api.Config{Store: followerOf{storeAdapter{n.store}, leader}, Reader: n.Reader(), Peers: n.peers,
		PeerToken: n.peerToken, Logger: n.log})
	ts := newTestServer(t, srv.Handler())
	req, _ := http.NewRequest(http.MethodPost, ts+"/api/v1/models", strings.NewReader(`{"name":"via-old-leader"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("write through a follower of an older leader: %d %s", res.StatusCode, body)
	}
	if _, err := n.Reader().Model("via-old-leader"); err != nil {
		t.Fatalf("the relayed write did not land: %v", err)
	}
}
