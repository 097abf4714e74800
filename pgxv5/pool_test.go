package pgxv5_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/pgxv5"
	"github.com/pgrotate/rotating/secrets"
)

// store is a secrets.Source the test updates, counting Fetch calls.
type store struct {
	mu      sync.Mutex
	cred    secrets.Credential
	fetches atomic.Int64
}

func (s *store) Fetch(context.Context) (secrets.Credential, error) {
	s.fetches.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cred, nil
}

func (s *store) set(cred secrets.Credential) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cred = cred
}

// newPool returns a pool for dsn set up by ConfigurePool over src, closed
// (before its Connector) when the test ends. configure changes the config
// before ConfigurePool.
func newPool(t *testing.T, dsn string, src secrets.Source, configure func(*pgxpool.Config), opts ...rotating.Option) (*pgxpool.Pool, *rotating.Connector) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if configure != nil {
		configure(cfg)
	}
	c, err := pgxv5.ConfigurePool(cfg, src, opts...)
	if err != nil {
		t.Fatalf("ConfigurePool: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, c
}

// oneUse makes every connection of the pool serve one Acquire: each
// Acquire is a new login.
func oneUse(cfg *pgxpool.Config) { cfg.AfterRelease = func(*pgx.Conn) bool { return false } }

func endpointDSN(srv *pgserver.Server) string {
	return fmt.Sprintf("host=%s port=%d dbname=postgres sslmode=disable", srv.Host, srv.Port)
}

func TestPoolLogsInWithTheStoresCredential(t *testing.T) {
	srv := pgtest.Shared(t)
	role, pw := pgtest.NewRole(t, srv)
	// pgxpool.ParseConfig reads PGPASSWORD and the passfile: neither may
	// supply the login, even when they hold a password that works.
	sabotageEnvironment(t, pw)
	t.Setenv("PGUSER", role)

	src := &store{cred: secrets.Credential{Username: role, Password: pw}}
	pool, c := newPool(t, endpointDSN(srv)+" pool_max_conns=4", src, nil)
	var user string
	if err := pool.QueryRow(t.Context(), "SELECT current_user").Scan(&user); err != nil || user != role {
		t.Fatalf("current_user = %q, %v; want %q", user, err, role)
	}
	if st := c.Stats(); st.Fetches != 1 || st.Probes != 1 {
		t.Fatalf("first use: Stats = %+v, want one fetch and one probe", st)
	}
	if pool.Config().MaxConns != 4 {
		t.Fatalf("MaxConns = %d: the pool's own settings were lost", pool.Config().MaxConns)
	}

	// A wrong password from the store is not rescued by the environment.
	bad, _ := newPool(t, endpointDSN(srv), secrets.Static(secrets.Credential{Username: role, Password: "wrong-" + pw}), nil,
		rotating.WithRotationWait(200*time.Millisecond))
	_, err := bad.Exec(t.Context(), "SELECT 1")
	var pgErr *pgconn.PgError
	if !errors.Is(err, rotating.ErrCredentialRejected) || !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("Exec with a wrong stored password and the right PGPASSWORD = %v, want the Connector's *AuthError with 28P01", err)
	}
	if strings.Contains(fmt.Sprintf("%v %+v", err, err), pw) {
		t.Fatal("the error contains a password")
	}
}

// A rotation the Connector does not know of yet costs a pool.Exec one
// failure: the first login after ALTER ROLE was handed the old password,
// and pgxpool does not retry it. It is reported, so the next Exec logs in
// with the new one; Acquire retries, so it never fails.
func TestPoolRotation(t *testing.T) {
	srv := pgtest.Shared(t)
	role, pw := pgtest.NewRole(t, srv)
	src := &store{cred: secrets.Credential{Username: role, Password: pw}}
	pool, c := newPool(t, endpointDSN(srv)+" pool_max_conns=2", src, oneUse)
	ctx := t.Context()
	if _, err := pool.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}

	// pool.Exec: one failure, then the new password.
	pw2 := pgtest.RandomPassword(t)
	src.set(secrets.Credential{Username: role, Password: pw2})
	if err := srv.SetPassword(ctx, role, pw2); err != nil {
		t.Fatal(err)
	}
	_, err := pool.Exec(ctx, "SELECT 1")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" || errors.Is(err, rotating.ErrCredentialRejected) {
		t.Fatalf("the first pool.Exec after ALTER ROLE = %v, want the pool's own rejected login (28P01)", err)
	}
	for i := range 5 {
		if _, err := pool.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatalf("pool.Exec %d after the reported rejection: %v", i+1, err)
		}
	}
	st := c.Stats()
	if st.AuthFailures != 1 || st.CredentialChanges != 1 || src.fetches.Load() != 2 {
		t.Fatalf("after the first rotation: %d rejections recorded, %d changes, %d fetches; want 1, 1, 2", st.AuthFailures, st.CredentialChanges, src.fetches.Load())
	}

	// Acquire: the same rejected login, retried.
	pw3 := pgtest.RandomPassword(t)
	src.set(secrets.Credential{Username: role, Password: pw3})
	if err := srv.SetPassword(ctx, role, pw3); err != nil {
		t.Fatal(err)
	}
	conn, err := pgxv5.Acquire(ctx, pool)
	if err != nil {
		t.Fatalf("Acquire after ALTER ROLE: %v", err)
	}
	var user string
	err = conn.QueryRow(ctx, "SELECT current_user").Scan(&user)
	conn.Release()
	if err != nil || user != role {
		t.Fatalf("current_user = %q, %v", user, err)
	}
	st = c.Stats()
	if st.AuthFailures != 2 || st.CredentialChanges != 2 || src.fetches.Load() != 3 {
		t.Fatalf("after the second rotation: %d rejections recorded, %d changes, %d fetches; want 2, 2, 3 (the retried login was rejected once)",
			st.AuthFailures, st.CredentialChanges, src.fetches.Load())
	}
}

// Acquire does not retry what the Connector has already waited for.
func TestAcquireReturnsTheConnectorsErrorsAtOnce(t *testing.T) {
	srv := pgtest.Shared(t)
	role, pw := pgtest.NewRole(t, srv)
	src := &store{cred: secrets.Credential{Username: role, Password: "wrong-" + pw}}
	pool, c := newPool(t, endpointDSN(srv), src, nil, rotating.WithRotationWait(200*time.Millisecond))
	start := time.Now()
	_, err := pgxv5.Acquire(t.Context(), pool)
	if !errors.Is(err, rotating.ErrCredentialRejected) {
		t.Fatalf("Acquire with a wrong password = %v, want the Connector's *AuthError", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Acquire took %v: it retried the Connector's rotation wait (200ms)", d)
	}
	if st := c.Stats(); st.RecoveryFailures != 1 {
		t.Fatalf("Stats = %+v: want one wait that gave up", st)
	}
}

// tracer is an application's tracer: it counts connects and queries.
type tracer struct{ connects, connectEnds, queries, prepares atomic.Int64 }

func (t *tracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	t.queries.Add(1)
	return ctx
}
func (t *tracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (t *tracer) TraceConnectStart(ctx context.Context, _ pgx.TraceConnectStartData) context.Context {
	t.connects.Add(1)
	return ctx
}
func (t *tracer) TraceConnectEnd(context.Context, pgx.TraceConnectEndData) { t.connectEnds.Add(1) }
func (t *tracer) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	t.prepares.Add(1)
	return ctx
}
func (t *tracer) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}

// The login's result reaches the Connector through a tracer of the
// connect alone: the connection keeps the application's tracer, with all
// of its interfaces, and that tracer sees the connect too.
func TestPoolConnectionsKeepTheApplicationsTracer(t *testing.T) {
	srv := pgtest.Shared(t)
	role, pw := pgtest.NewRole(t, srv)
	app := new(tracer)
	var beforeConnect, beforeAcquire atomic.Int64
	pool, _ := newPool(t, endpointDSN(srv), secrets.Static(secrets.Credential{Username: role, Password: pw}), func(cfg *pgxpool.Config) {
		cfg.ConnConfig.Tracer = app
		cfg.BeforeConnect = func(_ context.Context, cc *pgx.ConnConfig) error {
			if cc.Password != pw {
				return errors.New("the application's BeforeConnect ran before the credential was set")
			}
			beforeConnect.Add(1)
			return nil
		}
		//lint:ignore SA1019 the deprecated hook applications still set must keep running
		cfg.BeforeAcquire = func(context.Context, *pgx.Conn) bool { beforeAcquire.Add(1); return true }
	})
	conn, err := pool.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if got := conn.Conn().Config().Tracer; got != app {
		t.Fatalf("the connection's tracer is %T, want the application's", got)
	}
	if _, err := conn.Conn().Prepare(t.Context(), "q", "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(t.Context(), "q"); err != nil {
		t.Fatal(err)
	}
	// The Connector's probe logs in with the pool's configuration, so the
	// application's tracer sees it as well: two connects.
	if app.connects.Load() != 2 || app.connectEnds.Load() != 2 || app.prepares.Load() != 1 || app.queries.Load() != 1 {
		t.Fatalf("application tracer saw %d connects, %d connect ends, %d prepares, %d queries; want 2, 2, 1, 1",
			app.connects.Load(), app.connectEnds.Load(), app.prepares.Load(), app.queries.Load())
	}
	if beforeConnect.Load() != 1 || beforeAcquire.Load() != 1 {
		t.Fatalf("the application's BeforeConnect ran %d times, BeforeAcquire %d; want 1 and 1", beforeConnect.Load(), beforeAcquire.Load())
	}
}

// The credential's database applies when the connection string sets none,
// for the pool's logins and the Connector's probe alike.
func TestPoolCredentialEndpoint(t *testing.T) {
	srv := pgtest.Shared(t)
	role, pw := pgtest.NewRole(t, srv)
	t.Setenv("PGDATABASE", "")
	dsn := fmt.Sprintf("host=%s port=%d sslmode=disable", srv.Host, srv.Port) // no dbname: the role's name, which has no database
	pool, c := newPool(t, dsn, secrets.Static(secrets.Credential{Username: role, Password: pw, Database: "postgres"}), nil)
	var db string
	if err := pool.QueryRow(t.Context(), "SELECT current_database()").Scan(&db); err != nil || db != "postgres" {
		t.Fatalf("current_database() = %q, %v; want the credential's postgres", db, err)
	}
	if st := c.Stats(); st.Probes != 1 || st.DialErrors != 0 {
		t.Fatalf("Stats = %+v: the probe did not log in where the pool does", st)
	}
}

// A connection of a credential whose sessions end is not handed out once
// retired: the pool destroys it and logs in with the successor.
func TestPoolRetiresConnectionsOfEndingSessions(t *testing.T) {
	srv := pgtest.Shared(t)
	role, pw := pgtest.NewRole(t, srv)
	src := &store{cred: secrets.Credential{Username: role, Password: pw, SessionsEnd: time.Now().Add(1500 * time.Millisecond)}}
	pool, c := newPool(t, endpointDSN(srv)+" pool_max_conns=1", src, nil, rotating.WithSessionMargin(time.Second))
	ctx := t.Context()
	pid := func() uint32 {
		t.Helper()
		conn, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Release()
		return conn.Conn().PgConn().PID()
	}
	first := pid()
	if again := pid(); again != first {
		t.Fatalf("the connection was not reused before its retirement (pids %d, %d)", first, again)
	}
	// The lease's successor: a new password, sessions that end later.
	pw2 := pgtest.RandomPassword(t)
	if err := srv.SetPassword(ctx, role, pw2); err != nil {
		t.Fatal(err)
	}
	src.set(secrets.Credential{Username: role, Password: pw2, SessionsEnd: time.Now().Add(time.Hour)})
	time.Sleep(900 * time.Millisecond) // past the retirement (at 750 ms)
	if next := pid(); next == first {
		t.Fatalf("a retired connection was handed out")
	}
	if st := c.Stats(); st.CredentialChanges != 1 {
		t.Fatalf("Stats = %+v, want the successor in use", st)
	}
}
