package pgtest_test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestShared(t *testing.T) {
	a, b := pgtest.Shared(t), pgtest.Shared(t)
	if a != b {
		t.Fatal("Shared returned two servers")
	}
	role := pgtest.UniqueName(t, "shared")
	if err := a.CreateRole(context.Background(), role, "pw"); err != nil {
		t.Fatal(err)
	}
	if err := a.DropRole(context.Background(), role); err != nil {
		t.Fatal(err)
	}
}

func TestUniqueName(t *testing.T) {
	safe := regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)
	seen := map[string]bool{}
	for _, prefix := range []string{"", "Role", "9lives", "x-y z/ÄÖ", strings.Repeat("long", 30)} {
		for range 50 {
			n := pgtest.UniqueName(t, prefix)
			if !safe.MatchString(n) || seen[n] {
				t.Fatalf("UniqueName(%q) = %q: unsafe or repeated", prefix, n)
			}
			seen[n] = true
		}
	}
}

func TestSharedTLS(t *testing.T) {
	a, b := pgtest.SharedTLS(t), pgtest.SharedTLS(t)
	if a != b {
		t.Fatal("SharedTLS returned two servers")
	}
	if a == pgtest.Shared(t) {
		t.Fatal("SharedTLS returned Shared's server")
	}
	if a.RootCertPath() == "" {
		t.Fatal("SharedTLS server has no RootCertPath: it was not started with TLS")
	}
	var ssl bool
	if err := a.Admin().QueryRowContext(t.Context(), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
		t.Errorf("admin session on the SharedTLS server: ssl = %v, %v; want true", ssl, err)
	}
}
