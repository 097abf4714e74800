// Package pgtest gives tests a real PostgreSQL server from package pgserver.
//
// If the environment variable ROTATING_TEST_PG_DSN holds a superuser DSN,
// that existing server is used (see [pgserver.External]). Otherwise a
// throwaway server is started; if the PostgreSQL binaries are missing the
// test is skipped, or fails when CI=true.
//
// Server gives each test its own server. Shared gives every test in a test
// binary the same one; a package that uses Shared must have
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// so that the shared server is stopped when its tests are done.
//
// SharedTLS is Shared for a server that accepts TCP logins over TLS only
// (see [pgserver.Options.TLS]). It is always a throwaway server, even when
// ROTATING_TEST_PG_DSN is set, since only a server started here has the
// test CA.
//
// SharedMD5 is Shared for a server on which roles log in with md5, not
// SCRAM-SHA-256, for load tests whose subject is not the login method.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgrotate/rotating/internal/pgserver"
)

// EnvDSN names the environment variable that selects an existing server by
// its superuser DSN.
const EnvDSN = "ROTATING_TEST_PG_DSN"

// startTimeout bounds starting a server.
const startTimeout = 2 * time.Minute

// Server returns a server for t alone, stopped by t.Cleanup. If the test
// failed, the tail of the server log is logged first.
func Server(t testing.TB) *pgserver.Server {
	t.Helper()
	s, err := open(t.Logf)
	if err != nil {
		fail(t, err, externalHint)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if log := s.ServerLog(); log != "" {
				t.Logf("PostgreSQL server log (tail):\n%s", log)
			}
		}
		if err := s.Stop(); err != nil {
			t.Errorf("stop PostgreSQL server: %v", err)
		}
	})
	return s
}

// sharedServer is a server shared by the tests of a test binary, started by
// open on first use and stopped by Main.
type sharedServer struct {
	what string // for messages: "PostgreSQL server", "TLS PostgreSQL server"
	open func() (*pgserver.Server, error)
	hint string // for the skip message when the binaries are missing

	srv *pgserver.Server // guarded by sharedMu, as is err
	err error
}

// externalHint ends the skip message of a server that could have been an
// external one.
const externalHint = " (or set " + EnvDSN + " to a superuser DSN)"

var (
	mainActive atomic.Bool
	sharedMu   sync.Mutex // guards the srv and err of every sharedServer

	shared = &sharedServer{
		what: "PostgreSQL server",
		open: func() (*pgserver.Server, error) { return open(nil) },
		hint: externalHint,
	}
	sharedTLS = &sharedServer{what: "TLS PostgreSQL server", open: openTLS}
	sharedMD5 = &sharedServer{what: "md5 PostgreSQL server", open: openMD5, hint: externalHint}
)

// Shared returns the server shared by all tests of this test binary,
// starting it on first use. It may be used only in a package whose TestMain
// calls Main, which stops the server; otherwise it fails the test. Tests
// must not Stop or Restart the shared server.
func Shared(t testing.TB) *pgserver.Server {
	t.Helper()
	return shared.get(t, "pgtest.Shared")
}

// SharedTLS is Shared for a server started with [pgserver.Options.TLS]: it
// accepts TCP logins over TLS only, and clients verify it with
// sslmode=verify-full (see [pgserver.Server.SSLParams]). It is a second
// server, not Shared's, and always a throwaway one: an external server
// (ROTATING_TEST_PG_DSN) does not have the test CA.
func SharedTLS(t testing.TB) *pgserver.Server {
	t.Helper()
	return sharedTLS.get(t, "pgtest.SharedTLS")
}

// SharedMD5 is Shared for a server on which roles log in with md5 rather
// than SCRAM-SHA-256: password_encryption=md5 and md5 in pg_hba.conf (the
// superuser keeps its SCRAM password, which the md5 method still accepts).
// A SCRAM login costs the client thousands of HMAC rounds, which under the
// race detector make a load that logs in for every statement spend most
// of the machine's CPU on them; SharedMD5 is for tests whose subject is not
// the authentication method (a login with a dead password is refused with
// 28P01 either way). It is a third server, started on first use; with
// ROTATING_TEST_PG_DSN set it is Shared's external server, as that one is
// configured.
func SharedMD5(t testing.TB) *pgserver.Server {
	t.Helper()
	if os.Getenv(EnvDSN) != "" {
		return Shared(t)
	}
	return sharedMD5.get(t, "pgtest.SharedMD5")
}

func (s *sharedServer) get(t testing.TB, fn string) *pgserver.Server {
	t.Helper()
	if !mainActive.Load() {
		t.Fatal(fn + " needs the package's TestMain to call pgtest.Main: " +
			"func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }")
	}
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if s.srv == nil && s.err == nil {
		s.srv, s.err = s.open()
	}
	if s.err != nil {
		fail(t, s.err, s.hint)
	}
	srv := s.srv
	t.Cleanup(func() {
		if t.Failed() {
			if log := srv.ServerLog(); log != "" {
				t.Logf("%s log (tail):\n%s", s.what, log)
			}
		}
	})
	return srv
}

// Main runs the tests and then stops the servers Shared and SharedTLS
// started, if any. It returns the exit code for os.Exit, made non-zero if
// stopping fails.
func Main(m *testing.M) int {
	mainActive.Store(true)
	code := m.Run()
	mainActive.Store(false)
	sharedMu.Lock()
	defer sharedMu.Unlock()
	for _, s := range []*sharedServer{shared, sharedTLS, sharedMD5} {
		if s.srv == nil {
			continue
		}
		if err := s.srv.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stop shared %s: %v\n", s.what, err)
			if code == 0 {
				code = 1
			}
		}
		s.srv = nil
	}
	return code
}

// UniqueName returns a fresh identifier, safe unquoted as a role or database
// name: prefix and the test name, lowercased and reduced to [a-z0-9_], then a
// random suffix; at most 40 characters, starting with a letter.
func UniqueName(t testing.TB, prefix string) string {
	t.Helper()
	var b strings.Builder
	for _, r := range strings.ToLower(prefix + "_" + t.Name()) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "_"):
			b.WriteByte('_')
		}
	}
	name := b.String()
	if name == "" || name[0] < 'a' {
		name = "t_" + name
	}
	rnd := make([]byte, 5)
	if _, err := rand.Read(rnd); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	const max, suffix = 40, 1 + 10 // "_" and 10 hex digits
	if len(name) > max-suffix {
		name = name[:max-suffix]
	}
	return strings.TrimSuffix(name, "_") + "_" + hex.EncodeToString(rnd)
}

// open returns the external server or starts one.
func open(logf func(string, ...any)) (*pgserver.Server, error) {
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		return pgserver.External(dsn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	return pgserver.Start(ctx, pgserver.Options{Logf: logf})
}

// openTLS starts a throwaway server with TLS.
func openTLS() (*pgserver.Server, error) {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	return pgserver.Start(ctx, pgserver.Options{TLS: true})
}

// openMD5 starts a throwaway server whose roles log in with md5.
func openMD5() (*pgserver.Server, error) {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	srv, err := pgserver.Start(ctx, pgserver.Options{ExtraConf: map[string]string{"password_encryption": "md5"}})
	if err != nil {
		return nil, err
	}
	err = srv.WriteHBA([]string{"local all all md5", "host all all 127.0.0.1/32 md5"})
	if err == nil {
		err = srv.ReloadConf(ctx)
	}
	if err != nil {
		_ = srv.Stop()
		return nil, err
	}
	return srv, nil
}

// fail skips or fails t for a server that could not be had; hint follows
// the skip message.
func fail(t testing.TB, err error, hint string) {
	t.Helper()
	if errors.Is(err, pgserver.ErrNotInstalled) && os.Getenv("CI") != "true" {
		t.Skipf("skipping: %v%s", err, hint)
	}
	t.Fatalf("pgtest: no PostgreSQL server: %v", err)
}

// RandomPassword returns a fresh, distinctive password ("pw-" and 32 hex
// digits), so that finding it in an error or a log line cannot be a
// coincidence.
func RandomPassword(t testing.TB) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "pw-" + hex.EncodeToString(b)
}

// NewRole creates a login role of the test's own with a random password on
// srv, dropped (with what it owns) when the test ends. Call it before
// opening pools, so that the role is dropped after they are closed.
func NewRole(t testing.TB, srv *pgserver.Server) (role, password string) {
	t.Helper()
	role, password = UniqueName(t, "r"), RandomPassword(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.CreateRole(ctx, role, password); err != nil {
		t.Fatalf("create role: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.DropRole(ctx, role); err != nil {
			t.Errorf("drop role: %v", err)
		}
	})
	return role, password
}
