package pgserver_test

import (
	"context"
	"crypto/x509"
	"database/sql"
	"encoding/pem"
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/pgrotate/rotating/internal/pgserver"
)

// startTLS starts a server of the test's own with Options.TLS, stopped when
// the test ends. An external server (ROTATING_TEST_PG_DSN) cannot be given
// the test CA, so this always starts a throwaway one.
func startTLS(t *testing.T) *pgserver.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := pgserver.Start(ctx, pgserver.Options{TLS: true, Logf: t.Logf})
	if errors.Is(err, pgserver.ErrNotInstalled) && os.Getenv("CI") != "true" {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("PostgreSQL server log (tail):\n%s", s.ServerLog())
		}
		if err := s.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return s
}

// sessionTLS logs in with dsn and reports whether the session is encrypted,
// as the server sees it.
func sessionTLS(ctx context.Context, dsn string) (bool, error) {
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return false, err
	}
	defer db.Close()
	var ssl bool
	err = db.QueryRowContext(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl)
	return ssl, err
}

func TestTLSServer(t *testing.T) {
	s := startTLS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The files: a CA certificate that parses, a key only its owner reads,
	// owned by the user the server runs as.
	root := s.RootCertPath()
	b, err := os.ReadFile(root)
	if err != nil {
		t.Fatalf("RootCertPath %q: %v", root, err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("RootCertPath %q holds no PEM block", root)
	}
	if ca, err := x509.ParseCertificate(blk.Bytes); err != nil || !ca.IsCA {
		t.Errorf("RootCertPath %q: not a CA certificate (%v)", root, err)
	}
	key, err := os.Stat(filepath.Join(s.Dir, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	if key.Mode().Perm() != 0o600 {
		t.Errorf("server key mode %v, want 0600", key.Mode().Perm())
	}
	if os.Geteuid() == 0 {
		pg, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		if uid := strconv.Itoa(int(key.Sys().(*syscall.Stat_t).Uid)); uid != pg.Uid {
			t.Errorf("server key owned by uid %s, want postgres (%s)", uid, pg.Uid)
		}
	}

	want := "sslmode='verify-full' sslrootcert='" + root + "'"
	if got := s.SSLParams(); got != want {
		t.Errorf("SSLParams() = %q, want %q", got, want)
	}
	if !strings.Contains(s.SuperDSN(), want) {
		t.Error("SuperDSN does not use verify-full with the server's CA")
	}
	var adminTLS bool
	if err := s.Admin().QueryRowContext(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&adminTLS); err != nil || !adminTLS {
		t.Errorf("Admin session: ssl = %v, %v; want true", adminTLS, err)
	}

	otherCA, err := pgserver.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	otherRoot := filepath.Join(t.TempDir(), "other.crt")
	if err := otherCA.WriteCert(otherRoot); err != nil {
		t.Fatal(err)
	}

	// swap returns the superuser DSN with one parameter's text replaced.
	swap := func(old, new string) string {
		if !strings.Contains(s.SuperDSN(), old) {
			t.Fatalf("SuperDSN lacks %q", old)
		}
		return strings.Replace(s.SuperDSN(), old, new, 1)
	}
	cases := []struct {
		name    string
		dsn     string
		wantErr func(error) bool // nil: the login must succeed, over TLS
	}{
		{name: "verify-full/127.0.0.1", dsn: s.SuperDSN()},
		{name: "verify-full/localhost", dsn: swap("host='127.0.0.1'", "host='localhost'")},
		{name: "no-TLS-refused-by-pg_hba", dsn: swap(s.SSLParams(), "sslmode='disable'"), wantErr: func(err error) bool {
			var pqErr *pq.Error
			return errors.As(err, &pqErr) && pqErr.SQLState() == "28000" && strings.Contains(pqErr.Message, "no encryption")
		}},
		{name: "wrong-CA", dsn: swap(root, otherRoot), wantErr: func(err error) bool {
			var unknown x509.UnknownAuthorityError
			return errors.As(err, &unknown)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ssl, err := sessionTLS(ctx, tc.dsn)
			if tc.wantErr != nil {
				if err == nil || !tc.wantErr(err) {
					t.Fatalf("login: %v; want it refused", err)
				}
				t.Logf("refused as expected: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("login: %v", err)
			}
			if !ssl {
				t.Error("pg_stat_ssl.ssl = false: the session is not encrypted")
			}
		})
	}

	// TLS survives a restart.
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if ssl, err := sessionTLS(ctx, s.SuperDSN()); err != nil || !ssl {
		t.Errorf("after Restart: ssl = %v, %v; want true", ssl, err)
	}
}

func TestTLSOptionChecks(t *testing.T) {
	for _, k := range []string{"ssl", "ssl_cert_file", "ssl_key_file", "ssl_ca_file"} {
		_, err := pgserver.Start(context.Background(), pgserver.Options{TLS: true, ExtraConf: map[string]string{k: "x"}})
		if err == nil || !strings.Contains(err.Error(), "conflicts with Options.TLS") {
			t.Errorf("Start with TLS and ExtraConf %q: %v, want a conflict error", k, err)
		}
	}
	// Without TLS nothing changes: the server does not use TLS.
	plain := &pgserver.Server{Host: "127.0.0.1", Port: 5433}
	if got := plain.SSLParams(); got != "sslmode='disable'" {
		t.Errorf("SSLParams() of a server without TLS = %q", got)
	}
	if plain.RootCertPath() != "" {
		t.Errorf("RootCertPath() of a server without TLS = %q", plain.RootCertPath())
	}
}
