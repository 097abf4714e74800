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
		fail(t, err)
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

var (
	mainActive atomic.Bool
	sharedMu   sync.Mutex
	shared     *pgserver.Server
	sharedErr  error
)

// Shared returns the server shared by all tests of this test binary,
// starting it on first use. It may be used only in a package whose TestMain
// calls Main, which stops the server; otherwise it fails the test. Tests
// must not Stop or Restart the shared server.
func Shared(t testing.TB) *pgserver.Server {
	t.Helper()
	if !mainActive.Load() {
		t.Fatal("pgtest.Shared needs the package's TestMain to call pgtest.Main: " +
			"func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }")
	}
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil && sharedErr == nil {
		shared, sharedErr = open(nil)
	}
	if sharedErr != nil {
		fail(t, sharedErr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if log := shared.ServerLog(); log != "" {
				t.Logf("PostgreSQL server log (tail):\n%s", log)
			}
		}
	})
	return shared
}

// Main runs the tests and then stops the server Shared started, if any. It
// returns the exit code for os.Exit, made non-zero if stopping fails.
func Main(m *testing.M) int {
	mainActive.Store(true)
	code := m.Run()
	mainActive.Store(false)
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stop shared PostgreSQL server: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
		shared = nil
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

// fail skips or fails t for a server that could not be had.
func fail(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, pgserver.ErrNotInstalled) && os.Getenv("CI") != "true" {
		t.Skipf("skipping: %v (or set %s to a superuser DSN)", err, EnvDSN)
	}
	t.Fatalf("pgtest: no PostgreSQL server: %v", err)
}
