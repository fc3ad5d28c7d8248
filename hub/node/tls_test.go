package node

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/hashicorp/raft"

	"github.com/driftline/driftline/hub/cluster/clustertest"
	"github.com/driftline/driftline/internal/testhelp"
)

// tlsNode starts a node with the cluster CA's certificate for name; join is a node to join.
func tlsNode(t *testing.T, ca *clustertest.CA, name string, join *Node, joinToken string) *Node {
	t.Helper()
	cert, key := ca.Issue(t, name)
	cfg := Config{DataDir: t.TempDir(), NodeID: name, HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0",
		TLSCert: cert, TLSKey: key, TLSCA: ca.CertFile,
		Logger: testhelp.Logger(t)}
	if join != nil {
		cfg.Join, cfg.JoinToken = join.URL(), joinToken
	}
	n, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// caClient is an HTTPS client trusting the CA.
func caClient(t *testing.T, ca *clustertest.CA) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

// TestRaftPortAttack: on a hub without a cluster CA anyone who reaches the Raft port gets
// answers (documented: dev and demo only); with one, a plain TCP client and a client with a
// foreign certificate get nothing, and a TLS cluster still joins, replicates and approves.
func TestRaftPortAttack(t *testing.T) {
	plain, _ := testNode(t)
	attacker, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, 2*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer attacker.Close()
	vote := func(addr string) error {
		var resp raft.RequestVoteResponse
		return attacker.RequestVote("attacker", raft.ServerAddress(addr), &raft.RequestVoteRequest{
			RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("attacker"), Addr: []byte("127.0.0.1:1")},
		}, &resp)
	}
	if err := vote(plain.Store().RaftAddr()); err != nil {
		t.Fatalf("without a cluster CA the raft port should answer anyone (unauthenticated, documented): %v", err)
	}

	dir := t.TempDir()
	ca := clustertest.NewCA(t, dir, "cluster")
	n1 := tlsNode(t, ca, "n1", nil, "")
	if err := vote(n1.Store().RaftAddr()); err == nil {
		t.Fatal("a plain TCP client's RequestVote was answered by a TLS hub")
	}
	foreign := clustertest.NewCA(t, dir, "foreign")
	fc, fk := foreign.Issue(t, "intruder")
	cert, err := tls.LoadX509KeyPair(fc, fk)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", n1.Store().RaftAddr(), &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true})
	if err == nil {
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("a foreign certificate completed a connection to the raft port: %v", err)
	}

	// The TLS cluster works: a second node joins over https with mutual TLS, and an approval's
	// replication check (https) sees it.
	cl := caClient(t, ca)
	var tok string
	testhelp.WaitFor(t, 10*time.Second, "admin token", func() bool {
		b, err := os.ReadFile(filepath.Join(n1.cfg.DataDir, AdminTokenFile))
		tok = strings.TrimSpace(string(b))
		return err == nil && tok != ""
	})
	n2 := tlsNode(t, ca, "n2", n1, tok)
	testhelp.WaitFor(t, 20*time.Second, "two voters", func() bool {
		st := n1.Store().Status()
		return len(st.Nodes) == 2 && st.Nodes[0].Voter && st.Nodes[1].Voter
	})
	callWith(t, cl, n1, tok, http.MethodPost, "/api/v1/models", map[string]string{"name": "m"}, http.StatusCreated, nil)
	data := make([]byte, 10<<10)
	rand.Read(data)
	start := time.Now()
	pushModelWith(t, cl, n1, tok, "m", data)
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("registering and approving took %v: the replication check did not reach n2", d)
	}
	// A write through the follower is forwarded to the leader over mutual TLS.
	callWith(t, cl, n2, tok, http.MethodPost, "/api/v1/models", map[string]string{"name": "m2"}, http.StatusCreated, nil)

	// MQTT: only MQTTS, advertised as ssl://.
	if n1.MQTTAddr() != "" || !strings.HasPrefix(n1.MQTTURL(), "ssl://") {
		t.Fatalf("TLS hub: plain listener %q, advertised %q", n1.MQTTAddr(), n1.MQTTURL())
	}
	var st struct {
		AdvertiseMQTT []string `json:"advertise_mqtt"`
	}
	callWith(t, cl, n1, tok, http.MethodGet, "/api/v1/cluster", nil, http.StatusOK, &st)
	if len(st.AdvertiseMQTT) == 0 || !strings.HasPrefix(st.AdvertiseMQTT[0], "ssl://") {
		t.Fatalf("advertised %v, want ssl://", st.AdvertiseMQTT)
	}
	_ = paho.NewClientOptions
}

// callWith is call over client cl.
func callWith(t *testing.T, cl *http.Client, n *Node, tok, method, path string, body any, want int, out any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, n.URL()+path, r)
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		t.Fatalf("%s %s: got %d want %d: %s", method, path, res.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
	}
}
