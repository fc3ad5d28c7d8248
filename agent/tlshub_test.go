package agent_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/hub/cluster/clustertest"
	"github.com/driftline/driftline/hub/node"
)

// TestAgentOnTLSHub: a hub started with --tls-cert serves MQTT over TLS only and advertises
// ssl:// URLs; an agent configured with what the hub advertises (as `driftline device add
// --agent-config` writes it) and the CA comes online, and the device token never crosses a
// plain listener.
func TestAgentOnTLSHub(t *testing.T) {
	dir := t.TempDir()
	ca := clustertest.NewCA(t, dir, "hub")
	cert, key := ca.Issue(t, "n1")
	n, err := node.Start(context.Background(), node.Config{DataDir: filepath.Join(dir, "data"), NodeID: "n1",
		HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", TLSCert: cert, TLSKey: key, TLSCA: ca.CertFile,
		Logger: testLogger(t, 0)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	pem, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	h := &hub{t: t, n: n, dir: filepath.Join(dir, "data"),
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}}
	waitFor(t, 20*time.Second, "admin token", func() bool {
		b, err := os.ReadFile(filepath.Join(h.dir, node.AdminTokenFile))
		h.tok = strings.TrimSpace(string(b))
		return err == nil && h.tok != ""
	})
	if n.MQTTAddr() != "" {
		t.Fatalf("a TLS hub has a plain MQTT listener at %s", n.MQTTAddr())
	}
	var st struct {
		AdvertiseMQTT []string `json:"advertise_mqtt"`
	}
	h.call(http.MethodGet, "/api/v1/cluster", nil, http.StatusOK, &st)
	if len(st.AdvertiseMQTT) == 0 || !strings.HasPrefix(st.AdvertiseMQTT[0], "ssl://") {
		t.Fatalf("the hub advertises %v, want ssl://", st.AdvertiseMQTT)
	}
	tok := h.enroll("tls-1")
	cfg := agentConfig(t, "tls-1", tok, st.AdvertiseMQTT, h.keys())
	cfg.TLS.CAFile = ca.CertFile
	startAgent(t, cfg, agent.Options{})
	waitFor(t, 20*time.Second, "device online over MQTTS", func() bool {
		online, _ := h.device("tls-1")
		return online
	})
}
