package faults

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets"
)

// connectionError classifies an error a statement may meet while the server
// restarts: a connection-level failure, never a rejected login.
func connectionError(d testDriver, err error) (kind string, ok bool) {
	var netErr net.Error
	switch {
	case authish(d, err):
		return "rejected login: " + err.Error(), false
	case errors.Is(err, rotating.ErrFetchFailed):
		return "fetch failed: " + err.Error(), false
	case d.sqlState(err) != "":
		// 57P01 admin_shutdown (sessions ended by the shutdown), 57P03
		// cannot_connect_now (shutting down, starting up), class 08. The
		// name is from lib/pq's table of SQLSTATEs, whichever driver.
		code := d.sqlState(err)
		return d.errorType + " " + code + " " + pqerror.Code(code).Name(), code[:2] == "57" || code[:2] == "08"
	case errors.Is(err, driver.ErrBadConn):
		return "driver.ErrBadConn", true
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused", true
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset", true
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe", true
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "EOF", true
	case errors.As(err, &netErr):
		return "network error", true
	}
	return "unexpected: " + err.Error(), false
}

// TestPostgresRestartMidLoad restarts PostgreSQL (pg_ctl restart -m fast)
// under a load of new logins and pooled sessions. Statements may fail while
// the server is down, but only with connection errors, never as rejected
// logins; no refresh of the credential is triggered; and the load recovers
// once the server is back. Through each driver, each with a server of its
// own.
func TestPostgresRestartMidLoad(t *testing.T) {
	forEachDriver(t, testPostgresRestartMidLoad)
}

func testPostgresRestartMidLoad(t *testing.T, d testDriver) {
	pg := privateServer(t, nil)
	leakCheck(t)
	w := newWatch(t)
	pw := w.password()
	role := newRole(t, pg, uniqueRole(t), pw)
	src := newMemSource("restart", role, pw)
	c := newConnector(t, d, baseDSN(pg), src, fastOptions(w)...)
	db := openDB(t, c)
	db.SetMaxIdleConns(2) // some statements reuse a session, most log in anew
	db.SetMaxOpenConns(8)
	ctx := t.Context()

	l := startLoad(t, ctx, 8, 2*time.Millisecond, selectUser(db, func() []string { return []string{role} }))
	testkit.Sleep(ctx, 300*time.Millisecond)
	restartAt := time.Now()
	if err := pg.Restart(ctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
	restarted := time.Now()
	// Wait for a statement begun after the restart to succeed, then for a
	// clean window.
	var recovered time.Time
	testkit.WaitFor(t.Context(), t, 10*time.Second, "a statement to succeed after the restart", func() bool {
		for _, o := range l.snapshot() {
			if o.err == nil && o.start.After(restarted) {
				recovered = o.start.Add(o.took)
				return true
			}
		}
		return false
	})
	testkit.Sleep(ctx, 500*time.Millisecond)
	outs := l.finish()

	kinds := map[string]int{}
	var beforeFail, cleanRun, cleanFail int
	for _, o := range outs {
		if o.start.After(recovered.Add(100 * time.Millisecond)) {
			cleanRun++
			if o.err != nil {
				cleanFail++
				t.Errorf("statement begun %v after recovery failed: %v", o.start.Sub(recovered).Round(time.Millisecond), o.err)
			}
		}
		if o.err == nil {
			continue
		}
		w.checkErr(o.err)
		if o.start.Add(o.took).Before(restartAt) {
			beforeFail++
		}
		kind, ok := connectionError(d, o.err)
		kinds[kind]++
		if !ok {
			t.Errorf("during the restart a statement failed with %v (%s): want a connection error", o.err, kind)
		}
	}
	ok, failed, _ := tally(outs)
	st := c.Stats()
	t.Logf("restart took %v; %d statements, %d failed (%v); recovered %v after the restart returned; %d statements in the clean window",
		restarted.Sub(restartAt).Round(time.Millisecond), ok+failed, failed, kinds,
		recovered.Sub(restarted).Round(time.Millisecond), cleanRun)
	if beforeFail != 0 {
		t.Errorf("%d statements failed before the restart", beforeFail)
	}
	if cleanRun == 0 {
		t.Errorf("no statement ran after the recovery")
	}
	if st.Fetches != 1 || src.count() != 1 {
		t.Errorf("the restart triggered a refresh: Stats().Fetches = %d, source calls %d; want 1 (the first use)", st.Fetches, src.count())
	}
	if st.AuthFailures != 0 || st.RecoveryFailures != 0 {
		t.Errorf("Stats(): %d rejected logins, %d give-ups; want 0", st.AuthFailures, st.RecoveryFailures)
	}
}

// TestMaxConnectionsExhausted fills every connection slot a non-superuser
// may take on a server started with max_connections=6: the next logins get
// SQLSTATE 53300 exactly as the driver returns it (lib/pq's *pq.Error;
// pgx's *pgconn.ConnectError with the *pgconn.PgError inside), not a
// rejected login, and no refresh; once a slot frees up, logins work again.
// Through each driver, each with a server of its own.
func TestMaxConnectionsExhausted(t *testing.T) {
	forEachDriver(t, testMaxConnectionsExhausted)
}

func testMaxConnectionsExhausted(t *testing.T, d testDriver) {
	pg := privateServer(t, map[string]string{"max_connections": "6"})
	leakCheck(t)
	w := newWatch(t)
	pw := w.password()
	role := newRole(t, pg, uniqueRole(t), pw)
	src := newMemSource("max-connections", role, pw)
	c := newConnector(t, d, baseDSN(pg), src, fastOptions(w)...)
	db := openDB(t, c)
	ctx := t.Context()

	// Hold sessions until the server refuses one.
	var held []*sql.Conn
	defer func() {
		for _, h := range held {
			_ = h.Close()
		}
	}()
	var full error
	for range 10 {
		conn, err := db.Conn(ctx)
		if err != nil {
			full = err
			break
		}
		held = append(held, conn)
	}
	if full == nil {
		t.Fatalf("the server accepted %d sessions with max_connections=6", len(held))
	}
	w.checkErr(full)
	if code := d.sqlState(full); code != "53300" {
		t.Fatalf("with every slot taken: %v; want the driver's %s with code 53300", full, d.errorType)
	}
	t.Logf("%d sessions held; the next login: %v", len(held), full)

	// Straight from the connector, the driver's error is returned as is.
	before := c.Stats()
	_, err := c.Connect(ctx)
	if !d.returnedAsIs(err) || d.sqlState(err) != "53300" {
		t.Errorf("Connect = %T %v; want the driver's own error, unwrapped", err, err)
	}
	// Many callers at once: each gets 53300 at once, none waits for a
	// rotation, no store call.
	results := pings(t, ctx, db, 16)
	for i, r := range results {
		w.checkErr(r.err)
		if d.sqlState(r.err) != "53300" || authish(d, r.err) {
			t.Errorf("caller %d: %v; want 53300 and not a rejected login", i, r.err)
		}
		// A caller that sat out a rotation wait would take longer than the
		// wait; the login before it takes a while on a loaded machine.
		if r.took >= rotationWait {
			t.Errorf("caller %d: took %v; a 53300 must not wait for a rotation (%v)", i, r.took, rotationWait)
		}
	}
	st := c.Stats()
	if st.Fetches != before.Fetches || src.count() != 1 {
		t.Errorf("53300 triggered a refresh: %d fetches, source calls %d; want 1", st.Fetches, src.count())
	}
	if st.AuthFailures != 0 || st.RecoveryFailures != 0 {
		t.Errorf("Stats(): %d rejected logins, %d give-ups; want 0", st.AuthFailures, st.RecoveryFailures)
	}
	if st.DialErrors < before.DialErrors+17 {
		t.Errorf("Stats().DialErrors grew by %d, want at least 17", st.DialErrors-before.DialErrors)
	}

	// A slot frees up: logins work again (the backend may take a moment to
	// exit).
	_ = held[0].Close()
	held = held[1:]
	testkit.WaitFor(t.Context(), t, 10*time.Second, "a login after a slot was freed", func() bool { return db.PingContext(ctx) == nil })
}

// TestHBAReject makes pg_hba.conf reject the role: SQLSTATE 28000, which no
// credential from the store can fix. Every caller gets a clear error after
// the rotation wait, the store is called at the backoff's pace however many
// callers and rounds, and logins work again once pg_hba.conf is restored,
// with no change of credential. Through each driver, each with a server of
// its own.
func TestHBAReject(t *testing.T) {
	forEachDriver(t, testHBAReject)
}

func testHBAReject(t *testing.T, d testDriver) {
	pg := privateServer(t, nil)
	leakCheck(t)
	w := newWatch(t)
	pw := w.password()
	role := newRole(t, pg, uniqueRole(t), pw)
	src := newMemSource("hba", role, pw)
	c := newConnector(t, d, baseDSN(pg), src, fastOptions(w)...)
	db := openDB(t, c)
	db.SetMaxIdleConns(0)
	ctx := t.Context()
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("first login: %v", err)
	}

	hbaPath := filepath.Join(pg.Dir, "data", "pg_hba.conf")
	original, err := os.ReadFile(hbaPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := []string{
		"local all all scram-sha-256",
		"host all " + role + " 127.0.0.1/32 reject",
		"host all all 127.0.0.1/32 scram-sha-256",
		"host all all ::1/128 scram-sha-256",
	}
	if err := pg.WriteHBA(lines); err != nil {
		t.Fatal(err)
	}
	if err := pg.ReloadConf(ctx); err != nil {
		t.Fatal(err)
	}
	// Control: the driver alone is turned away with 28000 once the reload
	// is in effect.
	testkit.WaitFor(t.Context(), t, 10*time.Second, "pg_hba.conf's reject to take effect", func() bool {
		return d.sqlState(d.control(ctx, pg.DSN(role, pw, "postgres"))) == "28000"
	})

	before := c.Stats()
	start := time.Now()
	for round := 1; round <= 2; round++ {
		for i, r := range pings(t, ctx, db, 8) {
			w.checkErr(r.err)
			ae := wantRejected(t, d, r.err, "28000", src.Describe(), role)
			if ae != nil && (ae.FetchErr != nil || ae.CtxErr != nil) {
				t.Errorf("round %d caller %d: AuthError carries a store or context error: %v", round, i, r.err)
			}
			if r.took < rotationWait {
				t.Errorf("round %d caller %d: gave up after %v, want after the rotation wait %v", round, i, r.took, rotationWait)
			}
			wantGaveUpInTime(t, fmt.Sprintf("round %d caller %d", round, i), r, ae, rotationWait)
		}
	}
	elapsed := time.Since(start)
	st := c.Stats()
	fetches := int(st.Fetches - before.Fetches)
	bound := maxFetches(elapsed, minBackoff, maxBackoff) + 2
	t.Logf("pg_hba reject: 2 rounds of 8 callers in %v; %d store calls (bound %d; one per caller and step would be %d); %d rejected logins",
		elapsed.Round(time.Millisecond), fetches, bound, 16*bound, st.AuthFailures-before.AuthFailures)
	if fetches > bound {
		t.Errorf("%d store calls in %v: more than the backoff allows (%d)", fetches, elapsed, bound)
	}
	if fetches < 2 {
		t.Errorf("%d store calls: the store was never re-checked", fetches)
	}
	if st.RecoveryFailures-before.RecoveryFailures != 16 {
		t.Errorf("Stats().RecoveryFailures grew by %d, want 16", st.RecoveryFailures-before.RecoveryFailures)
	}

	// The DBA restores pg_hba.conf: logins work again, same credential.
	if err := os.WriteFile(hbaPath, original, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := pg.ReloadConf(ctx); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t.Context(), t, 10*time.Second, "a login after pg_hba.conf was restored", func() bool { return db.PingContext(ctx) == nil })
	if st := c.Stats(); st.CredentialGeneration != 1 {
		t.Errorf("Stats().CredentialGeneration = %d, want 1: no credential change was needed", st.CredentialGeneration)
	}
}

// TestRoleDropped drops the role the connector logs in as, while a session
// of it is open. The open session keeps working; new logins get 28P01 and
// every caller a clear error within the rotation wait; when the store
// names a new role, logins work again. Through each driver.
func TestRoleDropped(t *testing.T) {
	pg := sharedServer(t)
	forEachDriver(t, func(t *testing.T, d testDriver) { testRoleDropped(t, d, pg) })
}

func testRoleDropped(t *testing.T, d testDriver, pg *pgserver.Server) {
	leakCheck(t)
	w := newWatch(t)
	pw := w.password()
	role := newRole(t, pg, uniqueRole(t), pw)
	src := newMemSource("dropped", role, pw)
	c := newConnector(t, d, baseDSN(pg), src, fastOptions(w)...)
	db := openDB(t, c)
	db.SetMaxIdleConns(0)
	ctx := t.Context()
	held, err := db.Conn(ctx)
	if err != nil {
		t.Fatalf("first login: %v", err)
	}
	defer held.Close()

	if err := pg.DropRole(ctx, role); err != nil {
		t.Fatalf("drop role: %v", err)
	}
	if _, err := held.ExecContext(ctx, "SELECT 1"); err != nil {
		t.Errorf("the session opened before DROP ROLE failed: %v", err)
	}
	before := c.Stats()
	start := time.Now()
	for i, r := range pings(t, ctx, db, 8) {
		w.checkErr(r.err)
		ae := wantRejected(t, d, r.err, "28P01", src.Describe(), role)
		wantGaveUpInTime(t, fmt.Sprintf("caller %d", i), r, ae, rotationWait)
	}
	elapsed := time.Since(start)
	fetches := int(c.Stats().Fetches - before.Fetches)
	if bound := maxFetches(elapsed, minBackoff, maxBackoff) + 2; fetches > bound {
		t.Errorf("%d store calls in %v: more than the backoff allows (%d)", fetches, elapsed, bound)
	}

	// The store moves to a new role.
	pw2 := w.password()
	role2 := newRole(t, pg, uniqueRole(t), pw2)
	src.set(secrets.Credential{Username: role2, Password: pw2, Version: "v2"})
	for _, r := range concurrently(t, 8, func(int) error { return selectUser(db, func() []string { return []string{role2} })(ctx) }) {
		if r.err != nil {
			t.Errorf("after the store moved to a new role: %v", r.err)
		}
	}
}

// TestRoleValidUntilPassed expires the role (VALID UNTIL in the past): new
// logins get 28P01 and callers a clear error within the rotation wait. Then,
// while callers are waiting, the store is given a new role: all of them log
// in with it. Through each driver.
func TestRoleValidUntilPassed(t *testing.T) {
	pg := sharedServer(t)
	forEachDriver(t, func(t *testing.T, d testDriver) { testRoleValidUntilPassed(t, d, pg) })
}

func testRoleValidUntilPassed(t *testing.T, d testDriver, pg *pgserver.Server) {
	leakCheck(t)
	w := newWatch(t)
	pw := w.password()
	role := newRole(t, pg, uniqueRole(t), pw)
	src := newMemSource("expired", role, pw)
	c := newConnector(t, d, baseDSN(pg), src, fastOptions(w)...)
	db := openDB(t, c)
	db.SetMaxIdleConns(0)
	ctx := t.Context()
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("first login: %v", err)
	}

	adminExec(t, pg, "ALTER ROLE "+pq.QuoteIdentifier(role)+" VALID UNTIL 'yesterday'")
	for i, r := range pings(t, ctx, db, 8) {
		w.checkErr(r.err)
		ae := wantRejected(t, d, r.err, "28P01", src.Describe(), role)
		wantGaveUpInTime(t, fmt.Sprintf("caller %d", i), r, ae, rotationWait)
	}

	// The store gets a new role 200 ms into the next callers' wait.
	pw2 := w.password()
	role2 := newRole(t, pg, uniqueRole(t), pw2)
	timer := time.AfterFunc(200*time.Millisecond, func() {
		src.set(secrets.Credential{Username: role2, Password: pw2, Version: "v2"})
	})
	defer timer.Stop()
	before := c.Stats()
	for i, r := range concurrently(t, 8, func(int) error { return selectUser(db, func() []string { return []string{role2} })(ctx) }) {
		if r.err != nil {
			t.Errorf("caller %d: %v; the store provided a working role within the wait", i, r.err)
		}
	}
	st := c.Stats()
	if st.CredentialVersion != "v2" || st.Recoveries == before.Recoveries {
		t.Errorf("Stats() = %+v; want version v2 reached by recovering Connects", st)
	}
	if !strings.Contains(w.logs.String(), "credential changed") {
		t.Errorf("no \"credential changed\" log line")
	}
}
