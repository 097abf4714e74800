package pgserver

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// certLifetime is how long the certificates a CA issues stay valid. A
// throwaway server lives for one test run; a week leaves room for a demo
// left running, and a clock that is off by a few hours.
const certLifetime = 7 * 24 * time.Hour

// CA is a throwaway certificate authority: an ECDSA P-256 key that lives
// only in memory and its self-signed certificate. Start uses one for a
// server with Options.TLS; a test makes another one to hand a client a CA
// that did not sign the server's certificate.
type CA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
}

// NewCA generates a CA whose certificate's common name is name.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pgserver: generate CA key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"pgserver throwaway test CA"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pgserver: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pgserver: parse CA certificate: %w", err)
	}
	return &CA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// Certificate returns the CA's certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPEM returns the CA's certificate in PEM form, as sslrootcert expects.
func (ca *CA) CertPEM() []byte { return append([]byte(nil), ca.pem...) }

// WriteCert writes the CA's certificate in PEM form to path, readable by
// all: it is public, and a client running as another user reads it.
func (ca *CA) WriteCert(path string) error {
	if err := os.WriteFile(path, ca.pem, 0o644); err != nil {
		return fmt.Errorf("pgserver: write CA certificate: %w", err)
	}
	return nil
}

// issueServer returns a PEM certificate and PKCS #8 PEM key for a TLS server
// reachable as the given DNS names and IP addresses, signed by ca.
func (ca *CA) issueServer(dnsNames []string, ips []net.IP) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pgserver: generate server key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: dnsNames[0]},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("pgserver: create server certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("pgserver: encode server key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), nil
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("pgserver: certificate serial number: %w", err)
	}
	return n, nil
}

// The files writeTLSFiles writes into a server's Dir.
const (
	rootCertFile   = "root.crt"
	serverCertFile = "server.crt"
	serverKeyFile  = "server.key"
)

// writeTLSFiles generates a CA and a certificate signed by it for 127.0.0.1
// and localhost, and writes the CA's certificate, the server's certificate
// and its key into Dir. The server's files belong to the user the server
// runs as, and the key has mode 0600: PostgreSQL refuses a key that its
// group or others can read. The CA's key is never written.
func (s *Server) writeTLSFiles() error {
	ca, err := NewCA("pgserver test CA " + filepath.Base(s.Dir))
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := ca.issueServer([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	root, cert, key := filepath.Join(s.Dir, rootCertFile), filepath.Join(s.Dir, serverCertFile), filepath.Join(s.Dir, serverKeyFile)
	if err := ca.WriteCert(root); err != nil {
		return err
	}
	if err := os.WriteFile(cert, certPEM, 0o644); err != nil {
		return fmt.Errorf("pgserver: write server certificate: %w", err)
	}
	if err := os.WriteFile(key, keyPEM, 0o600); err != nil {
		return fmt.Errorf("pgserver: write server key: %w", err)
	}
	if err := s.chown(cert, key); err != nil {
		return err
	}
	s.rootCert = root
	return nil
}
