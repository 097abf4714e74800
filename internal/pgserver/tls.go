package pgserver

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/pgrotate/rotating/internal/testca"
)

// CA is a throwaway certificate authority (see [testca.CA]). Start uses one
// for a server with Options.TLS; a test makes another one to hand a client
// a CA that did not sign the server's certificate.
type CA = testca.CA

// NewCA generates a CA whose certificate's common name is name.
func NewCA(name string) (*CA, error) { return testca.New(name) }

// The files writeTLSFiles writes into a server's Dir.
const (
	rootCertFile   = "root.crt"
	serverCertFile = "server.crt"
	serverKeyFile  = "server.key"
)

// writeTLSFiles generates a CA and a certificate signed by it for 127.0.0.1,
// ::1 and localhost, and writes the CA's certificate, the server's certificate
// and its key into Dir. The server's files belong to the user the server
// runs as, and the key has mode 0600: PostgreSQL refuses a key that its
// group or others can read. The CA's key is never written.
func (s *Server) writeTLSFiles() error {
	ca, leaf, err := testca.ForLoopback("pgserver test CA " + filepath.Base(s.Dir))
	if err != nil {
		return err
	}
	root, cert, key := filepath.Join(s.Dir, rootCertFile), filepath.Join(s.Dir, serverCertFile), filepath.Join(s.Dir, serverKeyFile)
	if err := ca.WriteCert(root); err != nil {
		return err
	}
	if err := os.WriteFile(cert, leaf.CertPEM, 0o644); err != nil {
		return fmt.Errorf("pgserver: write server certificate: %w", err)
	}
	if err := os.WriteFile(key, leaf.KeyPEM, 0o600); err != nil {
		return fmt.Errorf("pgserver: write server key: %w", err)
	}
	if err := s.chown(cert, key); err != nil {
		return err
	}
	s.rootCert = root
	return nil
}
