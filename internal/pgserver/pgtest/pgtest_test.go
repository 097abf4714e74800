package pgtest_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/lib/pq"

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

func TestSharedMD5(t *testing.T) {
	a, b := pgtest.SharedMD5(t), pgtest.SharedMD5(t)
	if a != b {
		t.Fatal("SharedMD5 returned two servers")
	}
	if os.Getenv(pgtest.EnvDSN) != "" {
		if a != pgtest.Shared(t) {
			t.Fatalf("SharedMD5 with %s set is not Shared's external server", pgtest.EnvDSN)
		}
		return
	}
	if a == pgtest.Shared(t) || a == pgtest.SharedTLS(t) {
		t.Fatal("SharedMD5 returned Shared's or SharedTLS's server")
	}
	ctx := t.Context()
	role, pw := pgtest.NewRole(t, a)
	var stored string
	if err := a.Admin().QueryRowContext(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stored, "md5") {
		t.Errorf("a new role's password is stored as %.6s..., want an md5 hash", stored)
	}
	login := func(password string) error {
		db, err := sql.Open("postgres", a.DSN(role, password, ""))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		return db.PingContext(ctx)
	}
	if err := login(pw); err != nil {
		t.Errorf("login with the role's password: %v", err)
	}
	var pqErr *pq.Error
	if err := login("wrong-" + pw); !errors.As(err, &pqErr) || pqErr.Code != "28P01" {
		t.Errorf("login with a wrong password: %v, want SQLSTATE 28P01", err)
	}
	var method string
	if err := a.Admin().QueryRowContext(ctx, "SELECT auth_method FROM pg_hba_file_rules WHERE type = 'host' LIMIT 1").Scan(&method); err != nil || method != "md5" {
		t.Errorf("pg_hba.conf's host rule: %q, %v; want md5", method, err)
	}
}
