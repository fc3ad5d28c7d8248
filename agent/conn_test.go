package agent_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/driftline/driftline/agent"
	"github.com/driftline/driftline/agent/agenttest"
	"github.com/driftline/driftline/internal/freeport"
	"github.com/driftline/driftline/internal/testhelp"
	"github.com/driftline/driftline/shared/wire"
)

// TestBrokerFailover lists a broker that is down before one that is up: the agent connects to
// the second and says it is online there.
func TestBrokerFailover(t *testing.T) {
	const id = "dev-fo"
	online := make(chan wire.Status, 4)
	b := startBroker(t, 0, func(s *mqtt.Server) {
		s.Subscribe(wire.Default().Status(id), 1, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
			if st, err := wire.DecodeStatus(pk.Payload); err == nil {
				online <- st
			}
		})
	})
	down := "tcp://" + freeport.Addr(t) // nothing listens there
	cfg := agenttest.Config(t, id, "any", []string{down, b.url()}, []string{agenttest.Key(t)})
	a := agenttest.Start(t, cfg, agent.Options{})
	testhelp.WaitFor(t, 20*time.Second, "connected through the second broker", a.Connected)
	select {
	case st := <-online:
		if !st.Online || st.Reason != wire.ReasonConnect || st.AgentVersion != agent.Version {
			t.Fatalf("status %+v", st)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no online status")
	}
	a.Stop()
	select {
	case st := <-online:
		if st.Online || st.Reason != wire.ReasonStop {
			t.Fatalf("status on a clean stop %+v", st)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no offline status on a clean stop")
	}
}

// TestWillOnCrash: when the agent's connection dies without a clean stop, the broker publishes
// its Will: a status the hub's decoder accepts, online false.
func TestWillOnCrash(t *testing.T) {
	const id = "dev-will"
	statuses := make(chan wire.Status, 8)
	b := startBroker(t, 0, func(s *mqtt.Server) {
		s.Subscribe(wire.Default().Status(id), 1, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
			st, err := wire.DecodeStatus(pk.Payload)
			if err != nil {
				t.Errorf("status the hub would refuse: %v: %s", err, pk.Payload)
				return
			}
			statuses <- st
		})
	})
	cfg := agenttest.Config(t, id, "any", []string{b.url()}, []string{agenttest.Key(t)})
	a := agenttest.Start(t, cfg, agent.Options{})
	testhelp.WaitFor(t, 10*time.Second, "connected", a.Connected)
	if st := <-statuses; !st.Online {
		t.Fatalf("first status %+v", st)
	}
	// Cut the connection from the broker's side, as a crash or a network loss would.
	cl, ok := b.s.Clients.Get(id)
	if !ok {
		t.Fatal("client not found on the broker")
	}
	cl.Stop(fmt.Errorf("test: connection cut"))
	// The agent reconnects at once, so its next online status may overtake the Will.
	deadline := time.After(10 * time.Second)
	for {
		select {
		case st := <-statuses:
			if st.Online {
				continue
			}
			if st.Reason != wire.ReasonWill || st.AgentVersion != agent.Version || st.StartedTS == 0 {
				t.Fatalf("will %+v", st)
			}
			return
		case <-deadline:
			t.Fatal("no will published")
		}
	}
}

// TestTLSBroker connects over ssl:// to a broker whose certificate is signed by the configured
// CA, and refuses one it cannot verify.
func TestTLSBroker(t *testing.T) {
	dir := t.TempDir()
	caPEM, certPEM, keyPEM := selfSigned(t)
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, caPEM, 0o600)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	s := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	s.AddHook(new(auth.AllowHook), nil)
	ln := listeners.NewTCP(listeners.Config{ID: "tls", Address: "127.0.0.1:0",
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	if err := s.AddListener(ln); err != nil {
		t.Fatal(err)
	}
	addr := ln.Address() // bound by AddListener
	go s.Serve()
	t.Cleanup(func() { s.Close() })

	cases := []struct {
		name    string
		ca      string
		connect bool
	}{{"trusted CA", caFile, true}, {"system pool only", "", false}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := agenttest.Config(t, "dev-tls-"+tc.name[:3], "any", []string{"ssl://" + addr}, []string{agenttest.Key(t)})
			cfg.TLS.CAFile = tc.ca
			if tc.ca == "" {
				cfg.TLS.InsecureSkipVerify = false
				cfg.TLS.CertFile = "" // nothing set: system pool, which does not know our CA
			}
			a := agenttest.Start(t, cfg, agent.Options{})
			if tc.connect {
				testhelp.WaitFor(t, 10*time.Second, "TLS connection", a.Connected)
				return
			}
			time.Sleep(1500 * time.Millisecond)
			if a.Connected() {
				t.Fatal("connected to a broker whose certificate it cannot verify")
			}
		})
	}
}

// selfSigned returns a CA certificate and a 127.0.0.1 server certificate signed by it.
func selfSigned(t *testing.T) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "broker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}
