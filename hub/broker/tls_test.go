package broker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/driftline/driftline/hub/cluster/clustertest"
)

// selfSigned writes a certificate for 127.0.0.1 and its key into dir and returns the files and
// a pool that trusts the certificate.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "driftline-test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLSListenerBesidePlain(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t, t.TempDir())
	b := startBroker(t, Config{TLSAddr: "127.0.0.1:0", TLSCertFile: certFile, TLSKeyFile: keyFile})
	if b.TLSAddr() == "" || b.TLSAddr() == b.Addr() {
		t.Fatalf("TLSAddr %q beside Addr %q", b.TLSAddr(), b.Addr())
	}

	secure := clientOpts("ssl://"+b.TLSAddr(), userDevA, userDevA).SetTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	dev := mustConnect(t, secure)
	rec := &recorder{}
	subscribe(t, dev, "dl/v1/dev/dev-a/desired", 1, rec.handle)
	if err := b.Publish("dl/v1/dev/dev-a/desired", []byte(`{"rev":1}`), true, 1); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, "dl/v1/dev/dev-a/desired", []byte(`{"rev":1}`))

	// The same ACL applies on the TLS listener, and the plain one still serves.
	if code := subscribe(t, dev, "dl/v1/dev/dev-b/#", 1, rec.handle); code != 0x80 {
		t.Fatalf("cross-device subscription over TLS granted %#x", code)
	}
	mustConnect(t, clientOpts(b.url, userDevB, userDevB))

	// A client that does not trust the certificate cannot connect.
	untrusting := clientOpts("ssl://"+b.TLSAddr(), cid(userViewer, ""), userViewer).SetTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12})
	if _, err := connect(t, untrusting); err == nil {
		t.Fatal("connected without trusting the certificate")
	}
}

// TestDeviceMutualTLS: with TLSClientCAFile the MQTTS listener requires a client certificate the
// CA signed (and the token still): no certificate and a foreign one are refused.
func TestDeviceMutualTLS(t *testing.T) {
	dir := t.TempDir()
	hubCA := clustertest.NewCA(t, dir, "hub")
	devCA := clustertest.NewCA(t, dir, "devices")
	other := clustertest.NewCA(t, dir, "other")
	sc, sk := hubCA.Issue(t, "broker")
	b := startBroker(t, Config{TLSAddr: "127.0.0.1:0", TLSCertFile: sc, TLSKeyFile: sk, TLSClientCAFile: devCA.CertFile})
	pem, err := os.ReadFile(hubCA.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tc := func(ca *clustertest.CA) *tls.Config {
		c := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if ca != nil {
			cf, kf := ca.Issue(t, "dev-a-cert")
			cert, err := tls.LoadX509KeyPair(cf, kf)
			if err != nil {
				t.Fatal(err)
			}
			c.Certificates = []tls.Certificate{cert}
		}
		return c
	}
	url := "ssl://" + b.TLSAddr()
	if _, err := connect(t, clientOpts(url, userDevA, userDevA).SetTLSConfig(tc(nil))); err == nil {
		t.Fatal("a device without a client certificate connected")
	}
	if _, err := connect(t, clientOpts(url, userDevA, userDevA).SetTLSConfig(tc(other))); err == nil {
		t.Fatal("a device with a foreign client certificate connected")
	}
	if _, err := connect(t, clientOpts(url, userDevA, userDevA).SetTLSConfig(tc(devCA)).SetPassword("wrong")); err == nil {
		t.Fatal("a device certificate replaced the token")
	}
	mustConnect(t, clientOpts(url, userDevA, userDevA).SetTLSConfig(tc(devCA)))
}
