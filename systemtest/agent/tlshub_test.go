package agent_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/agenttest"
	"github.com/driftline/driftline/hub/cluster/clustertest"
	"github.com/driftline/driftline/hub/node"
	"github.com/driftline/driftline/hub/node/nodetest"
	"github.com/driftline/driftline/internal/testhelp"
)

// TestAgentOnTLSHub: a hub started with --tls-cert serves MQTT over TLS only and advertises
// ssl:// URLs; an agent configured with what the hub advertises (as `driftline device add
// --agent-config` writes it) and the CA comes online, and the device token never crosses a
// plain listener.
func TestAgentOnTLSHub(t *testing.T) {
	dir := t.TempDir()
	ca := clustertest.NewCA(t, dir, "hub")
	cert, key := ca.Issue(t, "n1")
	h := nodetest.Start(t, func(c *node.Config) { c.TLSCert, c.TLSKey, c.TLSCA = cert, key, ca.CertFile })
	pem, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	h.Client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	if h.MQTTAddr() != "" {
		t.Fatalf("a TLS hub has a plain MQTT listener at %s", h.MQTTAddr())
	}
	var st struct {
		AdvertiseMQTT []string `json:"advertise_mqtt"`
	}
	h.Call(http.MethodGet, "/api/v1/cluster", nil, http.StatusOK, &st)
	if len(st.AdvertiseMQTT) == 0 || !strings.HasPrefix(st.AdvertiseMQTT[0], "ssl://") {
		t.Fatalf("the hub advertises %v, want ssl://", st.AdvertiseMQTT)
	}
	tok := enroll(h, "tls-1")
	cfg := agenttest.Config(t, "tls-1", tok, st.AdvertiseMQTT, h.Keys())
	cfg.TLS.CAFile = ca.CertFile
	agenttest.Start(t, cfg, agent.Options{})
	testhelp.WaitFor(t, 20*time.Second, "device online over MQTTS", func() bool {
		online, _ := device(h, "tls-1")
		return online
	})
}
