// Package cluster is the hub's intra-cluster traffic: the mutual TLS every node presents to the
// others (Raft and node-to-node HTTP) and the client nodes call each other with.
//
// With a cluster CA (`--tls-ca`), a node accepts a Raft connection only from a peer whose
// certificate that CA signed, and presents its own (`--tls-cert`) when it dials: a peer without
// such a certificate cannot complete the handshake, so it can neither append entries nor force
// elections. Without a CA, Raft runs over plain TCP and is unauthenticated (development and
// demos; docs/security.md). See DESIGN.md.
package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// ErrConfig is returned when the TLS files cannot be used.
var ErrConfig = errors.New("cluster: invalid TLS config")

// TLS holds a node's certificate and the cluster CA that signs every node's certificate.
type TLS struct {
	cert tls.Certificate
	ca   *x509.CertPool
}

// LoadTLS reads the cluster CA (PEM, one or more certificates) and the node's certificate and
// key (PEM). The node's certificate must be signed by the CA: it is what peers check.
func LoadTLS(caFile, certFile, keyFile string) (*TLS, error) {
	if caFile == "" || certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("%w: the cluster CA needs the node's certificate and key (--tls-cert, --tls-key)", ErrConfig)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("%w: cluster CA: %v", ErrConfig, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: cluster CA %s holds no PEM certificate", ErrConfig, caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: node certificate: %v", ErrConfig, err)
	}
	t := &TLS{cert: cert, ca: pool}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("%w: node certificate: %v", ErrConfig, err)
	}
	if err := t.verify([]*x509.Certificate{leaf}); err != nil {
		return nil, fmt.Errorf("%w: the node certificate %s is not signed by the cluster CA %s: %v", ErrConfig, certFile, caFile, err)
	}
	return t, nil
}

// verify checks a peer's chain against the cluster CA. Host names are not checked: nodes dial
// each other by address, and membership in the cluster is what a CA-signed certificate proves.
func (t *TLS) verify(chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: t.ca, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

// VerifyPeer checks a certificate chain a peer presented (an HTTP request's
// TLS.PeerCertificates) against the cluster CA: nil means the caller is a member of the cluster.
func (t *TLS) VerifyPeer(chain []*x509.Certificate) error { return t.verify(chain) }

// PeerServerConfig is the TLS config of a listener only peers use (Raft): the client must present a
// certificate the cluster CA signed.
func (t *TLS) PeerServerConfig() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{t.cert},
		ClientAuth:   tls.RequireAnyClientCert,
		MinVersion:   tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return t.verify(cs.PeerCertificates)
		},
	}
}

// APIServerConfig is the TLS config of the HTTP API, which serves users and agents (with
// tokens) and peers: a client certificate is optional, but one that is given must be the
// cluster CA's.
func (t *TLS) APIServerConfig() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{t.cert},
		ClientAuth:   tls.RequestClientCert,
		MinVersion:   tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return nil
			}
			return t.verify(cs.PeerCertificates)
		},
	}
}

// ClientConfig is the TLS config a node dials peers with: it presents its certificate and
// accepts only a peer certificate the cluster CA signed.
func (t *TLS) ClientConfig() *tls.Config {
	return &tls.Config{
		Certificates:       []tls.Certificate{t.cert},
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // the chain is verified below, against the cluster CA only, without host names
		VerifyConnection: func(cs tls.ConnectionState) error {
			return t.verify(cs.PeerCertificates)
		},
	}
}
