package pgserver

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"testing"
)

// TestIssueServer checks the server certificate without a server: it
// verifies for the names a client uses with sslmode=verify-full, and only
// for those, and only against the CA that signed it.
func TestIssueServer(t *testing.T) {
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("other CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.issueServer([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	if blk, _ := pem.Decode(keyPEM); blk == nil || blk.Type != "PRIVATE KEY" {
		t.Fatalf("key is not a PKCS #8 PEM block")
	}
	blk, _ := pem.Decode(certPEM)
	if blk == nil {
		t.Fatal("certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := func(c *CA) *x509.CertPool {
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
		{"dns-SAN", pool(ca), "localhost", true},
		{"other-ip", pool(ca), "127.0.0.2", false},
		{"other-name", pool(ca), "example.com", false},
		{"other-CA", pool(other), "127.0.0.1", false},
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
