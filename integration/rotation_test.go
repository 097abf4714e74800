package integration

import (
	"context"
	"testing"
	"time"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/internal/testkit/drivers"
	"github.com/pgrotate/rotating/secrets"
)

// TestRunbookRotation is the manual runbook: the DBA runs ALTER ROLE, and
// the vault is updated about 300 ms later, three times, while workers keep
// inserting, each statement on a new login. Nothing valid is in the store
// during the gap, so the connector has to keep re-checking it; no statement
// may fail and no acknowledged row may be lost. It runs against a plain
// server and against a TLS-only one reached with sslmode=verify-full, as
// production is; there every row must have been inserted by an encrypted
// session. Both run through each driver.
func TestRunbookRotation(t *testing.T) {
	for _, d := range drivers.All {
		t.Run(d.Name, func(t *testing.T) {
			for _, tc := range []struct {
				name    string
				server  func(testing.TB) *pgserver.Server
				dsn     func(*pgserver.Server) string
				workers int
				tls     bool
			}{
				{"plain", pgtest.Shared, baseDSN, 8, false},
				{"verify-full", pgtest.SharedTLS, tlsDSN, 16, true},
			} {
				t.Run(tc.name, func(t *testing.T) {
					testRunbookRotation(t, d, tc.server(t), tc.dsn, tc.workers, tc.tls)
				})
			}
		})
	}
}

func testRunbookRotation(t *testing.T, d drivers.Driver, srv *pgserver.Server, dsn func(*pgserver.Server) string, workers int, wantTLS bool) {
	role, pw := pgtest.NewRole(t, srv)
	src := newCountingSource("runbook", secrets.Credential{Username: role, Password: pw})
	logger, logs := newLogger()
	c := newConnector(t, dsn(srv), src, d.With(rotating.WithLogger(logger))...)
	passwords := []string{pw}
	logOnFailure(t, logs, func() []string { return passwords })
	db := openDB(t, c)
	db.SetMaxIdleConns(0) // every statement logs in anew (over TLS: with a handshake)

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	table := createTLSLoadTable(ctx, t, db)
	if ssl, version, err := sessionTLS(ctx, db); err != nil || ssl != wantTLS {
		t.Fatalf("first session through the connector: ssl = %v, %v; want %v", ssl, err, wantTLS)
	} else if ssl {
		t.Logf("sessions through the connector use %s", version)
	}

	const rotations, gap = 3, 300 * time.Millisecond
	begin := time.Now()
	load := startInserts(ctx, db, table, workers, 100_000)
	testkit.Sleep(ctx, 300*time.Millisecond) // traffic under the first credential
	for r := 1; r <= rotations; r++ {
		before, fetchesBefore, okBefore := c.Stats(), src.count(), load.OK.Load()
		next := pgtest.RandomPassword(t)
		passwords = append(passwords, next)
		altered := time.Now()
		setPassword(ctx, t, srv, role, next)
		testkit.Sleep(ctx, gap)
		src.setPassword(next)
		testkit.WaitFor(ctx, t, 20*time.Second, "the connector to pick up the new password", func() bool {
			return c.Stats().CredentialChanges == uint64(r)
		})
		pickedUp := time.Since(altered)
		testkit.Sleep(ctx, 300*time.Millisecond) // traffic under the new credential

		// A new login with the new credential, over TLS where the server
		// wants it.
		var user string
		var ssl bool
		if err := db.QueryRowContext(ctx, "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").
			Scan(&user, &ssl); err != nil {
			t.Fatalf("rotation %d: a new login: %v", r, err)
		}
		if user != role || ssl != wantTLS {
			t.Errorf("rotation %d: new login as %q with ssl = %v; want %q with ssl = %v", r, user, ssl, role, wantTLS)
		}
		after := c.Stats()
		t.Logf("rotation %d: picked up %v after ALTER ROLE; %d fetches, %d rejected logins, %d recoveries, %d inserts acknowledged, slowest %v",
			r, pickedUp.Round(time.Millisecond), src.count()-fetchesBefore, after.AuthFailures-before.AuthFailures,
			after.Recoveries-before.Recoveries, load.OK.Load()-okBefore, load.TakeSlowest().Round(time.Millisecond))
		if after.AuthFailures == before.AuthFailures {
			t.Errorf("rotation %d: no login was rejected during the gap, so the rotation was not exercised", r)
		}
		if after.Recoveries == before.Recoveries {
			t.Errorf("rotation %d: no Connect recovered from a rejected login", r)
		}
	}
	load.finish()
	elapsed := time.Since(begin)
	if ctx.Err() != nil {
		t.Fatalf("test ran out of time: %v", ctx.Err())
	}

	load.check(ctx, t)
	// Read through the admin pool, which does not go through the connector.
	var encrypted, plain int64
	if err := srv.Admin().QueryRowContext(ctx,
		"SELECT count(*) FILTER (WHERE tls), count(*) FILTER (WHERE tls IS NOT TRUE) FROM "+table).
		Scan(&encrypted, &plain); err != nil {
		t.Fatalf("count the rows by session encryption: %v", err)
	}
	ok := load.OK.Load()
	st := c.Stats()
	t.Logf("runbook: %d statements by %d workers in %v (%.0f/s), %d failed; %d rows inserted over TLS, %d without; stats %+v",
		ok+load.Failed.Load(), workers, elapsed.Round(time.Millisecond), float64(ok)/elapsed.Seconds(),
		load.Failed.Load(), encrypted, plain, st)
	if wantTLS && (plain != 0 || encrypted != ok) || !wantTLS && (encrypted != 0 || plain != ok) {
		t.Errorf("%d rows inserted over TLS and %d without; want all %d acknowledged rows with TLS %v", encrypted, plain, ok, wantTLS)
	}
	if st.CredentialChanges != rotations {
		t.Errorf("Stats().CredentialChanges = %d, want %d", st.CredentialChanges, rotations)
	}
	if st.RecoveryFailures != 0 {
		t.Errorf("Stats().RecoveryFailures = %d, want 0", st.RecoveryFailures)
	}
	if st.CredentialGeneration != rotations+1 {
		t.Errorf("Stats().CredentialGeneration = %d, want %d", st.CredentialGeneration, rotations+1)
	}
	assertNoSecret(t, "the connector's logs", logs.String(), passwords...)
}

// TestStoreFirstHerd rotates with the store updated first and the database
// second (as AWS's multi-step rotation ends up, and any careful runbook),
// while 64 goroutines log in for every statement. Every login that the
// database rejects after an ALTER ROLE must be bridged by one shared call
// to the store: one fetch per rotation, however many logins failed. It runs
// through each driver.
func TestStoreFirstHerd(t *testing.T) {
	for _, d := range drivers.All {
		t.Run(d.Name, func(t *testing.T) { testStoreFirstHerd(t, d) })
	}
}

func testStoreFirstHerd(t *testing.T, d drivers.Driver) {
	srv := pgtest.Shared(t)
	role, pw := pgtest.NewRole(t, srv)
	src := newCountingSource("herd", secrets.Credential{Username: role, Password: pw})
	logger, logs := newLogger()
	c := newConnector(t, baseDSN(srv), src, d.With(rotating.WithLogger(logger))...)
	passwords := []string{pw}
	logOnFailure(t, logs, func() []string { return passwords })
	db := openDB(t, c)
	const goroutines, rotations = 64, 10
	db.SetMaxIdleConns(0) // every statement dials
	db.SetMaxOpenConns(goroutines)

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	table := createLoadTable(ctx, t, db) // the first login: the first fetch
	if n := src.count(); n != 1 {
		t.Fatalf("fetches after the first login = %d, want 1", n)
	}

	perRotation := make([]int64, 0, rotations)
	load := startInserts(ctx, db, table, goroutines, 100_000)
	testkit.Sleep(ctx, 200*time.Millisecond)
	for r := 1; r <= rotations; r++ {
		before, fetchesBefore := c.Stats(), src.count()
		next := pgtest.RandomPassword(t)
		passwords = append(passwords, next)
		src.setPassword(next)                   // the store first...
		testkit.Sleep(ctx, 50*time.Millisecond) // (logins go on with the cached credential, still valid)
		setPassword(ctx, t, srv, role, next)    // ...then the database
		// Wait for a move, not for generation r+1: a connector whose new
		// logins moved twice must fail the check below, not time out here.
		testkit.WaitFor(ctx, t, 20*time.Second, "the connector to pick up the new password", func() bool {
			return c.Stats().CredentialGeneration > before.CredentialGeneration
		})
		// Let logins run on the new credential for a while, long enough for
		// any late, redundant refresh (paced at 100 ms) to show up.
		okAt := load.OK.Load()
		testkit.WaitFor(ctx, t, 20*time.Second, "statements on the new credential", func() bool {
			return load.OK.Load() >= okAt+goroutines
		})
		testkit.Sleep(ctx, 300*time.Millisecond)
		after := c.Stats()
		fetches := src.count() - fetchesBefore
		perRotation = append(perRotation, fetches)
		t.Logf("rotation %d: %d fetches, %d rejected logins, %d recoveries", r, fetches,
			after.AuthFailures-before.AuthFailures, after.Recoveries-before.Recoveries)
		if after.AuthFailures == before.AuthFailures {
			t.Errorf("rotation %d: no login was rejected, so the rotation was not exercised", r)
		}
		if moves := after.CredentialGeneration - before.CredentialGeneration; moves != 1 {
			t.Errorf("rotation %d: Stats().CredentialGeneration went from %d to %d: new logins moved %d times, want once",
				r, before.CredentialGeneration, after.CredentialGeneration, moves)
		}
	}
	load.finish()
	if ctx.Err() != nil {
		t.Fatalf("test ran out of time: %v", ctx.Err())
	}

	load.check(ctx, t)
	st := c.Stats()
	t.Logf("herd: %d statements by %d goroutines, %d failed; fetches per rotation %v; stats %+v",
		load.OK.Load()+load.Failed.Load(), goroutines, load.Failed.Load(), perRotation, st)
	if n := src.count(); n != 1+rotations {
		t.Errorf("fetches = %d, want exactly %d (1 + one per rotation); per rotation: %v", n, 1+rotations, perRotation)
	}
	for i, n := range perRotation {
		if n != 1 {
			t.Errorf("rotation %d: %d fetches, want 1", i+1, n)
		}
	}
	if st.CredentialChanges != rotations {
		t.Errorf("Stats().CredentialChanges = %d, want %d", st.CredentialChanges, rotations)
	}
	if st.Fetches != 1+rotations {
		t.Errorf("Stats().Fetches = %d, want %d", st.Fetches, 1+rotations)
	}
	assertNoSecret(t, "the connector's logs", logs.String(), passwords...)
}

// TestHeldConnSurvivesRotation holds a sql.Conn across a rotation: the
// session opened with the old password keeps working, new logins use the
// new one, and the connection is the driver's own, unwrapped: lib/pq's, or
// pgx's *stdlib.Conn with its *pgx.Conn. It runs through each driver.
func TestHeldConnSurvivesRotation(t *testing.T) {
	for _, d := range drivers.All {
		t.Run(d.Name, func(t *testing.T) { testHeldConnSurvivesRotation(t, d) })
	}
}

func testHeldConnSurvivesRotation(t *testing.T, d drivers.Driver) {
	srv := pgtest.Shared(t)
	role, pw := pgtest.NewRole(t, srv)
	src := newCountingSource("held", secrets.Credential{Username: role, Password: pw})
	c := newConnector(t, baseDSN(srv), src, d.With()...)
	db := openDB(t, c)

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	table := createLoadTable(ctx, t, db)

	held, err := db.Conn(ctx)
	if err != nil {
		t.Fatalf("db.Conn: %v", err)
	}
	defer held.Close()
	var pidBefore int
	if err := held.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pidBefore); err != nil {
		t.Fatalf("query on the held connection before the rotation: %v", err)
	}
	if _, err := held.ExecContext(ctx, "INSERT INTO "+table+" (worker, seq) VALUES (0, 1)"); err != nil {
		t.Fatalf("insert on the held connection before the rotation: %v", err)
	}

	if err := held.Raw(d.CheckConn); err != nil {
		t.Errorf("Raw: %v", err)
	}

	next := pgtest.RandomPassword(t)
	setPassword(ctx, t, srv, role, next)
	src.setPassword(next)

	var pidAfter int
	if err := held.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pidAfter); err != nil {
		t.Fatalf("query on the held connection after the rotation: %v", err)
	}
	if pidAfter != pidBefore {
		t.Errorf("held connection changed backend (pid %d, then %d): it was not kept open", pidBefore, pidAfter)
	}
	if _, err := held.ExecContext(ctx, "INSERT INTO "+table+" (worker, seq) VALUES (0, 2)"); err != nil {
		t.Fatalf("insert on the held connection after the rotation: %v", err)
	}

	// The pool cannot lend the held connection, so this is a new login,
	// which needs the new password.
	fresh, err := db.Conn(ctx)
	if err != nil {
		t.Fatalf("new connection after the rotation: %v", err)
	}
	defer fresh.Close()
	var pidFresh, rows int
	var user string
	if err := fresh.QueryRowContext(ctx, "SELECT pg_backend_pid(), current_user, (SELECT count(*) FROM "+table+")").
		Scan(&pidFresh, &user, &rows); err != nil {
		t.Fatalf("query on a new connection after the rotation: %v", err)
	}
	if pidFresh == pidBefore || user != role || rows != 2 {
		t.Errorf("new connection: pid %d (held %d), user %q (want %q), %d rows (want 2)", pidFresh, pidBefore, user, role, rows)
	}
	if err := held.PingContext(ctx); err != nil {
		t.Errorf("held connection after a new login: %v", err)
	}
	st := c.Stats()
	t.Logf("held conn: stats %+v", st)
	if st.CredentialChanges != 1 || st.Recoveries != 1 {
		t.Errorf("Stats(): CredentialChanges %d, Recoveries %d; want 1 and 1", st.CredentialChanges, st.Recoveries)
	}
}
