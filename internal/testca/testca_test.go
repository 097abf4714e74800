package testca_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/pgrotate/rotating/internal/testca"
)

// TestIssue checks a server certificate without a server: it verifies for
// the names a client uses (sslmode=verify-full, an HTTPS client), and only
// for those, and only against the CA that signed it; its PEM forms parse.
func TestIssue(t *testing.T) {
	ca, leaf, err := testca.ForLoopback("test CA")
	if err != nil {
		t.Fatal(err)
	}
	other, err := testca.New("other CA")
	if err != nil {
		t.Fatal(err)
	}
	if blk, _ := pem.Decode(leaf.KeyPEM); blk == nil || blk.Type != "PRIVATE KEY" {
		t.Fatalf("key is not a PKCS #8 PEM block")
	}
	if _, err := tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM); err != nil {
		t.Fatalf("the PEM certificate and key are not a pair: %v", err)
	}
	blk, _ := pem.Decode(leaf.CertPEM)
	if blk == nil {
		t.Fatal("certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(leaf.TLS.Certificate[0], blk.Bytes) {
		t.Error("Leaf.TLS and Leaf.CertPEM hold different certificates")
	}
	pool := func(c *testca.CA) *x509.CertPool {
		p := x509.NewCertPool()
		if !p.AppendCertsFromPEM(c.CertPEM()) {
			t.Fatal("CertPEM does not parse")
		}
		return p
	}
	cases := []struct {
		name  string
		roots *x509.CertPool
		host  string
		ok    bool
	}{
		{"ip-SAN", pool(ca), "127.0.0.1", true},
		{"ipv6-SAN", pool(ca), "::1", true},
		{"dns-SAN", pool(ca), "localhost", true},
		{"Pool", ca.Pool(), "127.0.0.1", true},
		{"other-ip", pool(ca), "127.0.0.2", false},
		{"other-name", pool(ca), "example.com", false},
		{"other-CA", pool(other), "127.0.0.1", false},
		{"other-CA-Pool", other.Pool(), "localhost", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := cert.Verify(x509.VerifyOptions{Roots: tc.roots, DNSName: tc.host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			if (err == nil) != tc.ok {
				t.Errorf("Verify for %s: %v; want ok=%v", tc.host, err, tc.ok)
			}
		})
	}
}

// TestServeTLS runs a TLS handshake over a loopback connection with the
// server configuration: a client trusting the CA gets through for
// 127.0.0.1, one trusting another CA does not.
func TestServeTLS(t *testing.T) {
	ca, leaf, err := testca.ForLoopback("handshake CA")
	if err != nil {
		t.Fatal(err)
	}
	other, err := testca.New("other CA")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", leaf.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	for _, tc := range []struct {
		name  string
		roots *x509.CertPool
		ok    bool
	}{{"own CA", ca.Pool(), true}, {"other CA", other.Pool(), false}} {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: tc.roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
		if c != nil {
			c.Close()
		}
		if (err == nil) != tc.ok {
			t.Errorf("%s: handshake error %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// TestWriteCert writes the CA's certificate and reads it back.
func TestWriteCert(t *testing.T) {
	ca, err := testca.New("file CA")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.crt")
	if err := ca.WriteCert(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, ca.CertPEM()) {
		t.Error("the file does not hold CertPEM")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, %v; want 0644", fi.Mode().Perm(), err)
	}
	if ca.Certificate().Subject.CommonName != "file CA" || !ca.Certificate().IsCA {
		t.Errorf("Certificate(): CN %q, IsCA %v", ca.Certificate().Subject.CommonName, ca.Certificate().IsCA)
	}
	if err := ca.WriteCert(filepath.Join(t.TempDir(), "missing", "ca.crt")); err == nil {
		t.Error("WriteCert into a missing directory succeeded")
	}
}
