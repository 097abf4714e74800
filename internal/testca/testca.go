// Package testca makes throwaway certificate authorities for the local
// servers that tests run (PostgreSQL, the Key Vault and Vault test
// servers): an ECDSA P-256 key that lives only in memory, its self-signed
// certificate, and server certificates it signs. A CA of a server's own,
// rather than httptest's built-in certificate (whose key is published in
// Go's source), means only clients handed this CA trust the server.
package testca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"
)

// Lifetime is how long the certificates stay valid: a throwaway server
// lives for one test run or one development session; a week leaves room
// for a demo left running and a clock that is off by hours. They are valid
// from an hour before they are made, for the same reason.
const Lifetime = 7 * 24 * time.Hour

// CA is a throwaway certificate authority.
type CA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
	pool *x509.CertPool
}

// New generates a CA whose certificate's common name is name.
func New(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testca: generate CA key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"throwaway test CA"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(Lifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("testca: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("testca: parse CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pool: pool}, nil
}

// Certificate returns the CA's certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPEM returns a copy of the CA's certificate in PEM form, as
// sslrootcert, VAULT_CACERT and the like expect.
func (ca *CA) CertPEM() []byte { return append([]byte(nil), ca.pem...) }

// WriteCert writes the CA's certificate in PEM form to path, readable by
// all: it is public, and a client running as another user reads it.
func (ca *CA) WriteCert(path string) error {
	if err := os.WriteFile(path, ca.pem, 0o644); err != nil {
		return fmt.Errorf("testca: write CA certificate: %w", err)
	}
	return nil
}

// Pool returns a new pool that holds the CA's certificate only.
func (ca *CA) Pool() *x509.CertPool { return ca.pool.Clone() }

// Leaf is a server certificate and its key.
type Leaf struct {
	// TLS is the certificate and key for a tls.Config.
	TLS tls.Certificate
	// CertPEM and KeyPEM are the certificate and its PKCS #8 key in PEM
	// form, for a server that reads files.
	CertPEM, KeyPEM []byte
}

// Issue returns a server certificate signed by ca for the given DNS names
// (the first is also its common name) and IP addresses.
func (ca *CA) Issue(dnsNames []string, ips []net.IP) (*Leaf, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testca: generate server key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	cn := ""
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	} else if len(ips) > 0 {
		cn = ips[0].String()
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(Lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("testca: create server certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("testca: encode server key: %w", err)
	}
	return &Leaf{
		TLS:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
	}, nil
}

// ForLoopback generates a CA named name and a server certificate it signed
// for the names a loopback server is reached by: localhost, 127.0.0.1 and
// ::1.
func ForLoopback(name string) (*CA, *Leaf, error) {
	ca, err := New(name)
	if err != nil {
		return nil, nil, err
	}
	leaf, err := ca.Issue([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback})
	if err != nil {
		return nil, nil, err
	}
	return ca, leaf, nil
}

// ServerConfig returns a TLS configuration (TLS 1.2 and up) that presents
// leaf.
func (leaf *Leaf) ServerConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, MinVersion: tls.VersionTLS12}
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("testca: certificate serial number: %w", err)
	}
	return n, nil
}
