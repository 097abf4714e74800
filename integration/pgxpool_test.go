package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/pgxv5"
	"github.com/pgrotate/rotating/secrets"
)

// TestPgxpoolRotation measures what a rotation costs a pgxpool, beside
// database/sql's pool, in one run: the same role, the same rotations, five
// ways of connecting, 32 workers each, running concurrently:
//
//   - database/sql over pgxv5.NewConnector (the reference: Connect bridges
//     the rotation);
//   - pgxpool set up by pgxv5.ConfigurePool, statements through pool.Exec
//     (pgxpool acquires internally and cannot retry a rejected login);
//   - the same, statements through pgxv5.Acquire and the *pgxpool.Conn;
//   - a naive pgxpool with the password in its config;
//   - a naive pgxpool whose BeforeConnect asks the store for every new
//     connection (the hook pgx offers for rotation).
//
// Two rotations: the runbook (ALTER ROLE, the store updated 300 ms later)
// and store-first (the store updated, ALTER ROLE 50 ms later); and two
// kinds of churn: every statement on a new login (the worst case, as the
// database/sql tests run), and connections that live 1-2 s, spread
// uniformly (database/sql: SetConnMaxLifetime(1.5 s)), a compressed
// version of a production pool's hour. A worker pauses 20 ms after a
// failed statement.
//
// Asserted, per rotation: database/sql and Acquire fail no statement
// (Acquire's retry is exercised: at least one of its logins is rejected);
// pool.Exec fails at least once (the first login after ALTER ROLE was
// handed the old password) and at most once per worker (the rejection is
// reported, and no later login is handed that password), and only with
// the pool's own rejected login; the Connectors make one store call for
// the store-first rotation and a few (one per backoff step) for the
// runbook's; the naive static pool fails from the first rotation on.
// docs/pgxpool.md has the figures.
func TestPgxpoolRotation(t *testing.T) {
	srv := pgxpoolServer(t)
	for _, churn := range []poolChurn{churnEveryStatement, churnLifetime} {
		for _, storeFirst := range []bool{false, true} {
			name := churn.name + "/runbook"
			if storeFirst {
				name = churn.name + "/store-first"
			}
			t.Run(name, func(t *testing.T) { testPgxpoolRotation(t, srv, churn, storeFirst) })
		}
	}
}

const (
	poolWorkers   = 32
	poolRotations = 3
)

// pgxpoolServer is a server of the test's own, with room for five pools of
// 32 connections (the shared one has max_connections=100), unless
// ROTATING_TEST_PG_DSN names one (skipped if that one has too little room).
func pgxpoolServer(t *testing.T) *pgserver.Server {
	t.Helper()
	if os.Getenv(pgtest.EnvDSN) != "" {
		srv := pgtest.Shared(t)
		var maxConns int
		if err := srv.Admin().QueryRowContext(t.Context(), "SELECT current_setting('max_connections')::int").Scan(&maxConns); err != nil {
			t.Fatal(err)
		}
		if need := 5*poolWorkers + 20; maxConns < need {
			t.Skipf("skipping: the server named by %s has max_connections=%d; five pools of %d need %d", pgtest.EnvDSN, maxConns, poolWorkers, need)
		}
		return srv
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	srv, err := pgserver.Start(ctx, pgserver.Options{ExtraConf: map[string]string{
		"max_connections":     "250",
		"password_encryption": "md5",
	}})
	if errors.Is(err, pgserver.ErrNotInstalled) && os.Getenv("CI") != "true" {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // no server log on failure: rejected logins, expected here, fill it
		if err := srv.Stop(); err != nil {
			t.Errorf("stop PostgreSQL server: %v", err)
		}
	})
	// md5 rather than SCRAM for the test's roles (the superuser keeps
	// SCRAM, which the md5 method still verifies): under the race
	// detector SCRAM's client-side key derivation made the five pools'
	// logins about eight times slower (73 s against 9 s for one case on
	// 2 CPUs). Which method checks the password does not change what is
	// measured: a login handed the old password before the Connector knows
	// is rejected either way.
	if err := srv.WriteHBA([]string{"local all all md5", "host all all 127.0.0.1/32 md5"}); err != nil {
		t.Fatal(err)
	}
	if err := srv.ReloadConf(ctx); err != nil {
		t.Fatal(err)
	}
	return srv
}

// poolChurn is how often connections log in anew.
type poolChurn struct {
	name string
	pool func(*pgxpool.Config)
	db   func(*sql.DB)
	// warmUp is the traffic before the first rotation: long enough for
	// the first connections' lifetimes to have spread.
	warmUp time.Duration
}

var (
	churnEveryStatement = poolChurn{
		name:   "every-statement",
		pool:   func(cfg *pgxpool.Config) { cfg.AfterRelease = func(*pgx.Conn) bool { return false } },
		db:     func(db *sql.DB) { db.SetMaxIdleConns(0) },
		warmUp: 500 * time.Millisecond,
	}
	// churnLifetime gives each pool connection a lifetime drawn from 1-2 s
	// and destroys it when acquired after that (the test's own
	// AfterConnect and PrepareConn, which ConfigurePool chains). pgxpool's
	// MaxConnLifetimeJitter cannot spread lifetimes here: pgx v5.12
	// converts the jitter to whole seconds (time.Duration(jitterSecs) *
	// time.Second), so a jitter under a second is none, and connections
	// made together expire together. database/sql's SetConnMaxLifetime
	// has no jitter at all: its connections log in again in bursts.
	churnLifetime = poolChurn{
		name: "lifetime-1-2s",
		pool: func(cfg *pgxpool.Config) {
			const key = "integration.expires"
			cfg.AfterConnect = func(_ context.Context, conn *pgx.Conn) error {
				conn.PgConn().CustomData()[key] = time.Now().Add(time.Second + rand.N(time.Second))
				return nil
			}
			cfg.PrepareConn = func(_ context.Context, conn *pgx.Conn) (bool, error) {
				return time.Now().Before(conn.PgConn().CustomData()[key].(time.Time)), nil
			}
		},
		db:     func(db *sql.DB) { db.SetConnMaxLifetime(1500 * time.Millisecond); db.SetMaxIdleConns(poolWorkers) },
		warmUp: 2500 * time.Millisecond,
	}
)

// poolApproach is one way of connecting, with its workers' counts.
type poolApproach struct {
	name string
	exec func(ctx context.Context) error
	src  *countingSource
	c    *rotating.Connector // nil for the naive pools
	// untilFirst stops its workers after the first rotation: a pool that
	// never recovers would only burn logins.
	untilFirst bool

	// A failed statement is one of: the pool's own login rejected by the
	// database (rejected), the Connector's wait ending with an *AuthError
	// or a *FetchError (gaveUp), anything else (other).
	ok, rejected, gaveUp, other atomic.Int64
	firstErr                    atomic.Pointer[error]

	stop context.CancelFunc
	wg   sync.WaitGroup

	perRotation []poolCounts
}

type poolCounts struct {
	ok, rejected, gaveUp, other, fetches, authFailures int64
}

func (a *poolApproach) counts() poolCounts {
	n := poolCounts{ok: a.ok.Load(), rejected: a.rejected.Load(), gaveUp: a.gaveUp.Load(), other: a.other.Load(), fetches: a.src.count()}
	if a.c != nil {
		n.authFailures = int64(a.c.Stats().AuthFailures)
	}
	return n
}

func (n poolCounts) minus(o poolCounts) poolCounts {
	return poolCounts{n.ok - o.ok, n.rejected - o.rejected, n.gaveUp - o.gaveUp, n.other - o.other, n.fetches - o.fetches, n.authFailures - o.authFailures}
}

func (n poolCounts) failed() int64 { return n.rejected + n.gaveUp + n.other }

func (a *poolApproach) start(ctx context.Context) {
	ctx, a.stop = context.WithCancel(ctx)
	for range poolWorkers {
		a.wg.Go(func() {
			for ctx.Err() == nil {
				sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				err := a.exec(sctx)
				cancel()
				if err == nil {
					a.ok.Add(1)
					continue
				}
				if ctx.Err() != nil {
					return // the test stopped the workers mid-statement
				}
				a.firstErr.CompareAndSwap(nil, &err)
				switch {
				case errors.Is(err, rotating.ErrCredentialRejected) || errors.Is(err, rotating.ErrFetchFailed):
					a.gaveUp.Add(1)
				case isRejectedLogin(err):
					a.rejected.Add(1)
				default:
					a.other.Add(1)
				}
				testkit.Sleep(ctx, 20*time.Millisecond)
			}
		})
	}
}

func (a *poolApproach) finish() {
	a.stop()
	a.wg.Wait()
}

func isRejectedLogin(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "28P01" || pgErr.Code == "28000")
}

func testPgxpoolRotation(t *testing.T, srv *pgserver.Server, churn poolChurn, storeFirst bool) {
	role, pw := pgtest.NewRole(t, srv)
	dsn := fmt.Sprintf("host=%s port=%d dbname=postgres sslmode=disable pool_max_conns=%d", srv.Host, srv.Port, poolWorkers)
	sqlDSN := fmt.Sprintf("host=%s port=%d dbname=postgres sslmode=disable", srv.Host, srv.Port)
	cred := secrets.Credential{Username: role, Password: pw}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	newSource := func(name string) *countingSource { return newCountingSource(name, cred) }
	poolConfig := func() *pgxpool.Config {
		cfg, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		churn.pool(cfg)
		return cfg
	}
	openPool := func(cfg *pgxpool.Config) *pgxpool.Pool {
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close) // before the Connector: cleanups run last-in first-out
		return pool
	}
	configured := func(name string) (*pgxpool.Pool, *countingSource, *rotating.Connector) {
		src := newSource(name)
		cfg := poolConfig()
		c, err := pgxv5.ConfigurePool(cfg, src)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return openPool(cfg), src, c
	}

	var approaches []*poolApproach
	{ // database/sql over the pgx Connector
		src := newSource("database/sql")
		c, err := pgxv5.NewConnector(sqlDSN, src)
		if err != nil {
			t.Fatal(err)
		}
		db := sql.OpenDB(c)
		t.Cleanup(func() { _ = db.Close() })
		db.SetMaxOpenConns(poolWorkers)
		churn.db(db)
		approaches = append(approaches, &poolApproach{name: "database/sql + Connector", src: src, c: c,
			exec: func(ctx context.Context) error { _, err := db.ExecContext(ctx, "SELECT 1"); return err }})
	}
	{
		pool, src, c := configured("ConfigurePool, pool.Exec")
		approaches = append(approaches, &poolApproach{name: "ConfigurePool, pool.Exec", src: src, c: c,
			exec: func(ctx context.Context) error { _, err := pool.Exec(ctx, "SELECT 1"); return err }})
	}
	{
		pool, src, c := configured("ConfigurePool, pgxv5.Acquire")
		approaches = append(approaches, &poolApproach{name: "ConfigurePool, pgxv5.Acquire", src: src, c: c,
			exec: func(ctx context.Context) error {
				conn, err := pgxv5.Acquire(ctx, pool)
				if err != nil {
					return err
				}
				defer conn.Release()
				_, err = conn.Exec(ctx, "SELECT 1")
				return err
			}})
	}
	{ // naive: the password in the config, as read at startup
		src := newSource("static")
		cfg := poolConfig()
		cfg.ConnConfig.User, cfg.ConnConfig.Password = role, pw
		pool := openPool(cfg)
		approaches = append(approaches, &poolApproach{name: "naive: static password", src: src, untilFirst: true,
			exec: func(ctx context.Context) error { _, err := pool.Exec(ctx, "SELECT 1"); return err }})
	}
	{ // naive: BeforeConnect asks the store for every new connection
		src := newSource("per-connect")
		cfg := poolConfig()
		cfg.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
			cred, err := src.Fetch(ctx)
			if err != nil {
				return err
			}
			cc.User, cc.Password = cred.Username, cred.Password
			return nil
		}
		pool := openPool(cfg)
		approaches = append(approaches, &poolApproach{name: "naive: BeforeConnect fetches", src: src,
			exec: func(ctx context.Context) error { _, err := pool.Exec(ctx, "SELECT 1"); return err }})
	}
	withConnector := func() []*poolApproach {
		return slices.DeleteFunc(slices.Clone(approaches), func(a *poolApproach) bool { return a.c == nil })
	}

	for _, a := range approaches {
		if err := a.exec(ctx); err != nil { // the first login and the first fetch, not measured
			t.Fatalf("%s: first statement: %v", a.name, err)
		}
		a.start(ctx)
	}
	defer func() {
		for _, a := range approaches {
			a.finish()
		}
	}()
	testkit.Sleep(ctx, churn.warmUp) // traffic under the first credential

	passwords := []string{pw}
	for r := 1; r <= poolRotations; r++ {
		before := make([]poolCounts, len(approaches))
		for i, a := range approaches {
			before[i] = a.counts()
		}
		next := pgtest.RandomPassword(t)
		passwords = append(passwords, next)
		updateStores := func() {
			for _, a := range approaches {
				a.src.setPassword(next)
			}
		}
		if storeFirst {
			updateStores()
			testkit.Sleep(ctx, 50*time.Millisecond)
			setPassword(ctx, t, srv, role, next)
		} else {
			setPassword(ctx, t, srv, role, next)
			testkit.Sleep(ctx, 300*time.Millisecond)
			updateStores()
		}
		for _, a := range withConnector() {
			testkit.WaitFor(ctx, t, 30*time.Second, a.name+" to pick up the new password", func() bool {
				return a.c.Stats().CredentialChanges == uint64(r)
			})
		}
		// Every approach that can recover has worked on the new password
		// for a while.
		for i, a := range approaches {
			if a.untilFirst {
				if r == 1 { // its connections last 2 s at most: then it must log in, and fail
					testkit.WaitFor(ctx, t, 10*time.Second, a.name+" to fail", func() bool { return a.counts().failed() > before[i].failed() })
				}
				continue
			}
			okAt := a.ok.Load()
			testkit.WaitFor(ctx, t, 30*time.Second, a.name+" to run statements on the new password", func() bool {
				return a.ok.Load() >= okAt+poolWorkers
			})
		}
		testkit.Sleep(ctx, 300*time.Millisecond)
		for i, a := range approaches {
			if a.untilFirst && r > 1 {
				continue
			}
			a.perRotation = append(a.perRotation, a.counts().minus(before[i]))
			if a.untilFirst {
				a.finish()
			}
		}
	}
	for _, a := range approaches {
		a.finish()
	}
	if ctx.Err() != nil {
		t.Fatalf("test ran out of time: %v", ctx.Err())
	}
	logPoolTable(t, approaches)

	for _, a := range approaches {
		for i, n := range a.perRotation {
			r := i + 1
			switch {
			case a.c == nil && a.untilFirst:
				if n.failed() == 0 {
					t.Errorf("%s, rotation %d: no statement failed, so no login was made after ALTER ROLE: the measure is void", a.name, r)
				}
			case a.c == nil:
				// Reported, not asserted: how many logins of a naive pool
				// fall in the window depends on the machine's speed.
			case a.name == "ConfigurePool, pool.Exec":
				if n.rejected < 1 || n.rejected > poolWorkers || n.gaveUp != 0 || n.other != 0 {
					t.Errorf("%s, rotation %d: %d rejected logins surfaced, %d waits gave up, %d other failures; want 1..%d, 0, 0",
						a.name, r, n.rejected, n.gaveUp, n.other, poolWorkers)
				}
			default:
				if n.failed() != 0 {
					t.Errorf("%s, rotation %d: %d statements failed (first error: %v), want 0", a.name, r, n.failed(), a.firstError())
				}
				if n.authFailures < 1 {
					t.Errorf("%s, rotation %d: no login was rejected, so the rotation was not exercised", a.name, r)
				}
			}
			// One store call per backoff step (100, 200, 400 ms...) while
			// the store lags by 300 ms; exactly one when it does not.
			if lo, hi := int64(1), int64(5); a.c != nil && (n.fetches < lo || n.fetches > hi || storeFirst && n.fetches != 1) {
				t.Errorf("%s, rotation %d: %d store calls, want %d..%d (exactly 1 with the store updated first)", a.name, r, n.fetches, lo, hi)
			}
		}
	}
	for _, a := range approaches {
		if err := a.firstError(); err != nil {
			assertNoSecret(t, a.name+"'s first error", fmt.Sprintf("%v %+v", err, err), passwords...)
		}
	}
}

func (a *poolApproach) firstError() error {
	if p := a.firstErr.Load(); p != nil {
		return *p
	}
	return nil
}

// logPoolTable logs, per approach, the failed statements of each rotation,
// the statements run, the store calls and the rejected logins the
// Connector recorded (the pool's, reported, and its own re-checks).
func logPoolTable(t *testing.T, approaches []*poolApproach) {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "approach\tfailed per rotation\tstatements per rotation\tstore calls per rotation\trejected logins recorded")
	list := func(a *poolApproach, f func(poolCounts) int64) string {
		s := make([]string, len(a.perRotation))
		for i, n := range a.perRotation {
			s[i] = fmt.Sprint(f(n))
		}
		out := strings.Join(s, " ")
		if a.untilFirst {
			out += " (stopped)"
		}
		return out
	}
	for _, a := range approaches {
		recorded := "-"
		if a.c != nil {
			recorded = list(a, func(n poolCounts) int64 { return n.authFailures })
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.name,
			list(a, poolCounts.failed), list(a, func(n poolCounts) int64 { return n.ok + n.failed() }),
			list(a, func(n poolCounts) int64 { return n.fetches }), recorded)
	}
	_ = tw.Flush()
	t.Logf("%d workers each:\n%s", poolWorkers, b.String())
}
