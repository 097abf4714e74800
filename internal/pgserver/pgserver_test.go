package pgserver_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"
	"go.uber.org/goleak"

	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
)

// login connects through lib/pq with dsn and runs a query.
func login(ctx context.Context, dsn string) error {
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	var one int
	return db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

func TestServerLifecycle(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	begin := time.Now()
	s := pgtest.Server(t)
	t.Logf("server %s at %s:%d ready in %s", s.Version, s.Host, s.Port, time.Since(begin))
	if s.Version == "" {
		t.Error("Version is empty")
	}
	if err := login(ctx, s.SuperDSN()); err != nil {
		t.Fatalf("superuser login: %v", err)
	}

	role := pgtest.UniqueName(t, "Role")
	if !regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`).MatchString(role) {
		t.Errorf("UniqueName = %q, not a safe identifier", role)
	}
	oldPW, newPW := `old pw 'with' \quotes\`, "new-pw-"+role
	if err := s.CreateRole(ctx, role, oldPW); err != nil {
		t.Fatalf("CreateRole: %v", err)
	}
	if err := login(ctx, s.DSN(role, oldPW, "")); err != nil {
		t.Fatalf("login as new role: %v", err)
	}
	// The role can create tables.
	db, err := sql.Open("postgres", s.DSN(role, oldPW, ""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+role+"_t (id int)"); err != nil {
		t.Errorf("role cannot create a table: %v", err)
	}
	db.Close()

	if err := s.SetPassword(ctx, role, newPW); err != nil {
		t.Fatalf("SetPassword: %v", err)
	}
	err = login(ctx, s.DSN(role, oldPW, ""))
	var pqErr *pq.Error
	if !errors.As(err, &pqErr) || pqErr.SQLState() != "28P01" {
		t.Fatalf("login with old password: got %v, want SQLSTATE 28P01", err)
	}
	if strings.Contains(err.Error(), oldPW) {
		t.Error("error contains the password")
	}
	if err := login(ctx, s.DSN(role, newPW, "")); err != nil {
		t.Fatalf("login with new password: %v", err)
	}

	// ExecSerialized is one transaction: a failing statement undoes the
	// ones before it.
	if err := s.ExecSerialized(ctx, "CREATE TABLE "+role+"_x (id int)", "SELECT 1/0"); err == nil {
		t.Error("ExecSerialized with a failing statement: no error")
	}
	var exists bool
	if err := s.Admin().QueryRowContext(ctx, "SELECT to_regclass($1) IS NOT NULL", role+"_x").Scan(&exists); err != nil || exists {
		t.Errorf("ExecSerialized did not roll back: table exists %v, err %v", exists, err)
	}
	if err := s.ExecSerialized(ctx, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO "+role, "REVOKE SELECT ON ALL TABLES IN SCHEMA public FROM "+role); err != nil {
		t.Errorf("ExecSerialized: %v", err)
	}

	// Errors never hold the password.
	err = s.SetPassword(ctx, "no_such_role_"+role, "secret-in-error")
	if err == nil || strings.Contains(err.Error(), "secret-in-error") {
		t.Errorf("SetPassword on a missing role: %v", err)
	}

	if os.Getenv(pgtest.EnvDSN) != "" {
		if err := s.Restart(ctx); err == nil {
			t.Error("Restart of an external server did not fail")
		}
		if err := s.DropRole(ctx, role); err != nil {
			t.Error(err)
		}
		if err := s.Stop(); err != nil { // before goleak looks
			t.Error(err)
		}
		return
	}

	port := s.Port
	if err := s.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if s.Port != port {
		t.Errorf("port changed on Restart: %d -> %d", port, s.Port)
	}
	if err := s.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("admin pool after Restart: %v", err)
	}
	if err := login(ctx, s.DSN(role, newPW, "")); err != nil {
		t.Fatalf("login after Restart: %v", err)
	}
	if !strings.Contains(s.ServerLog(), "database system is ready") {
		t.Errorf("ServerLog lacks the startup line:\n%s", s.ServerLog())
	}

	// pg_hba.conf rewrite + reload: reject the role, then allow it again.
	if err := s.WriteHBA([]string{
		"host all " + role + " 127.0.0.1/32 reject",
		"host all all 127.0.0.1/32 scram-sha-256",
		"local all all scram-sha-256",
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.ReloadConf(ctx); err != nil {
		t.Fatal(err)
	}
	if err := login(ctx, s.DSN(role, newPW, "")); !errors.As(err, &pqErr) || pqErr.SQLState() != "28000" {
		t.Errorf("login rejected by pg_hba.conf: got %v, want SQLSTATE 28000", err)
	}

	if err := s.DropRole(ctx, role); err != nil {
		t.Errorf("DropRole: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Errorf("Dir %s still there after Stop: %v", s.Dir, err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := login(ctx, s.SuperDSN()); err == nil {
		t.Error("server still answers after Stop")
	}
}

func TestStartCancelled(t *testing.T) {
	if os.Getenv(pgtest.EnvDSN) != "" {
		t.Skip("external server")
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	s, err := pgserver.Start(ctx, pgserver.Options{})
	if errors.Is(err, pgserver.ErrNotInstalled) {
		pgtest.Server(t) // skips, or fails under CI=true
	}
	if err == nil {
		// Fast machine: started in time. Still must stop cleanly.
		t.Log("server started before the deadline")
		if err := s.Stop(); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Start with a short deadline: %v, want context.DeadlineExceeded", err)
	}
}

func TestExtraConf(t *testing.T) {
	if os.Getenv(pgtest.EnvDSN) != "" {
		t.Skip("external server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := pgserver.Start(ctx, pgserver.Options{ExtraConf: map[string]string{
		"max_connections":  "17",
		"application_name": "it's a test",
	}, Logf: t.Logf})
	if errors.Is(err, pgserver.ErrNotInstalled) {
		pgtest.Server(t)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	var mc, an string
	if err := s.Admin().QueryRowContext(ctx, "SELECT current_setting('max_connections'), current_setting('application_name')").Scan(&mc, &an); err != nil {
		t.Fatal(err)
	}
	if mc != "17" {
		t.Errorf("max_connections = %s, want 17", mc)
	}
	for _, k := range []string{"bad key", "port", "listen_addresses"} {
		if _, err := pgserver.Start(ctx, pgserver.Options{ExtraConf: map[string]string{k: "1"}}); err == nil {
			t.Errorf("Start accepted ExtraConf key %q", k)
		}
	}
}

func TestNotInstalled(t *testing.T) {
	_, err := pgserver.Start(context.Background(), pgserver.Options{BinDir: t.TempDir()})
	if !errors.Is(err, pgserver.ErrNotInstalled) {
		t.Fatalf("Start with an empty BinDir: %v, want ErrNotInstalled", err)
	}
	if !strings.Contains(err.Error(), "apt-get install postgresql") {
		t.Errorf("error does not say how to install: %v", err)
	}
}

func TestExternal(t *testing.T) {
	s := pgtest.Server(t)
	e, err := pgserver.External(s.SuperDSN())
	if err != nil {
		t.Fatal(err)
	}
	if e.Port != s.Port || e.Version != s.Version || e.SuperUser != s.SuperUser {
		t.Errorf("External = %+v, want port/version/user of %+v", e, s)
	}
	if err := e.Restart(context.Background()); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("Restart on external: %v", err)
	}
	if err := e.WriteHBA(nil); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("WriteHBA on external: %v", err)
	}
	if err := e.Stop(); err != nil {
		t.Error(err)
	}
	if err := login(context.Background(), s.SuperDSN()); err != nil {
		t.Errorf("Stop of the external wrapper stopped the server: %v", err)
	}
	// A wrong password: the error must not carry it.
	_, err = pgserver.External(s.DSN(s.SuperUser, "wrong-pw-xyz", ""))
	if err == nil || strings.Contains(err.Error(), "wrong-pw-xyz") {
		t.Errorf("External with a wrong password: %v", err)
	}
}

func TestDSNQuoting(t *testing.T) {
	s := &pgserver.Server{Host: "127.0.0.1", Port: 5433}
	pw := `a b'c\d=e`
	cfg, err := pq.NewConfig(s.DSN("u ser", pw, "my db"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Password != pw || cfg.User != "u ser" || cfg.Database != "my db" || cfg.Port != 5433 || cfg.Host != "127.0.0.1" {
		t.Errorf("DSN round trip: %+v", cfg)
	}
}
