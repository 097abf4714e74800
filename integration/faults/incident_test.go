package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets"
)

// The cases in this file are the defects of issue 8 that involve the
// database, measured on the first connector with scenarios written outside
// the project's suites, replayed against a real PostgreSQL. The root
// package's incident_test.go holds them with fakes and a fake clock.

// backoffSteps is how many steps of an incident can begin within elapsed of
// its start with WithBackoff(minB, maxB): one at once, then one after each
// pause, the pause doubling from minB up to maxB (at 0, .1, .3, .7, 1.5,
// 2.5, 3.5 s... for 100 ms and 1 s). A step is one store call and, from the
// second step on, one re-check of the rejected credential for the whole
// process. The next pause starts when a store call ends, so steps begin no
// earlier than this schedule: it is an upper bound.
func backoffSteps(elapsed, minB, maxB time.Duration) int {
	n, at, pause := 0, time.Duration(0), minB
	for at <= elapsed {
		n++
		at += pause
		pause = min(2*pause, maxB)
	}
	return n
}

// TestNeverFixedCredentialHerd is issue 8's done-when item (defect 7): the
// store holds a password the database never accepts, and 50 callers ping
// for 4 s, each Ping with a 2 s deadline and no idle connection, so each is
// a new login. No Ping returns more than 200 ms after its deadline (each
// caller re-dialing the rejected credential piled up client-side SCRAM
// work that the socket deadline cannot interrupt: Pings returned up to
// 1.4 s late); the store is called at most once per backoff step; the
// database sees at most one rejected login per caller plus one per step
// (counted in the server's log and in Stats). Through each driver.
func TestNeverFixedCredentialHerd(t *testing.T) {
	pg := sharedServer(t)
	forEachDriver(t, func(t *testing.T, d testDriver) { testNeverFixedCredentialHerd(t, d, pg) })
}

func testNeverFixedCredentialHerd(t *testing.T, d testDriver, pg *pgserver.Server) {
	leakCheck(t)
	const (
		callers    = 50
		herdFor    = 4 * time.Second
		deadline   = 2 * time.Second
		minB, maxB = 100 * time.Millisecond, time.Second
		// lateBound is issue 8's figure, not the package's slack: it is
		// what the herd used to break.
		lateBound = 200 * time.Millisecond
	)
	w := newWatch(t)
	right, wrong := w.password(), w.password()
	role := newRole(t, pg, uniqueRole(t), right)
	src := newMemSource("never-fixed", role, wrong)
	// The default rotation wait (10 s) outlasts the deadline: every Ping
	// ends at its deadline.
	c := newConnector(t, d, baseDSN(pg), src, rotating.WithLogger(w.logger), rotating.WithBackoff(minB, maxB))
	db := openDB(t, c)
	db.SetMaxIdleConns(0)
	serverLog, haveLog := markServerLog(t, pg)

	type ping struct {
		deadline, returned time.Time
		err                error
	}
	var (
		mu    sync.Mutex
		pings []ping
	)
	start := time.Now()
	concurrently(t, callers, func(int) error {
		for time.Since(start) < herdFor {
			ctx, cancel := context.WithTimeout(t.Context(), deadline)
			dl, _ := ctx.Deadline()
			err := db.PingContext(ctx)
			returned := time.Now()
			cancel()
			mu.Lock()
			pings = append(pings, ping{dl, returned, err})
			mu.Unlock()
		}
		return nil
	})
	elapsed := time.Since(start)

	var late time.Duration
	lateCount, rejected := 0, 0
	for i, p := range pings {
		w.checkErr(p.err)
		if l := p.returned.Sub(p.deadline); l > late {
			late = l
		}
		if p.returned.Sub(p.deadline) > lateBound {
			lateCount++
		}
		switch {
		case p.err == nil:
			t.Errorf("ping %d succeeded with a password the database never accepted", i)
		case !errors.Is(p.err, context.DeadlineExceeded):
			t.Errorf("ping %d: %v; want the end of its deadline", i, p.err)
		case errors.Is(p.err, rotating.ErrCredentialRejected):
			if rejected++; rejected == 1 {
				wantRejected(t, d, p.err, "28P01", src.Describe(), role)
			}
		}
	}
	st := c.Stats()
	steps := backoffSteps(elapsed, minB, maxB)
	fetches := int(src.count())
	// The first use's fetch comes before the incident, whose steps start at
	// the first rejection.
	maxFetchCount := steps + 1
	// Issue 8's bound, and the model's: the untried credential's probe
	// (repeated only if a caller's deadline interrupted it) and one
	// re-check per step from the second on.
	maxRejected := callers + steps
	modelRejected := steps + 1
	logged := -1
	if haveLog {
		// PostgreSQL logs a rejection before it answers the client, so the
		// lines are there; the wait covers a slow write.
		testkit.WaitFor(t.Context(), t, 10*time.Second, "the server log to show every rejected login", func() bool {
			logged = serverLog.count(t, rejectedLoginLine(role))
			return logged >= int(st.AuthFailures)
		})
	}
	t.Logf("never-fixed credential, %d callers for %v, Ping deadline %v, backoff %v..%v: %d Pings over %v, %d with an *AuthError; "+
		"latest return %v after the deadline (bound %v), %d later than the bound; "+
		"%d store calls (bound %d: %d steps + the first use); rejected logins: %d in the server log, %d in Stats().AuthFailures (bound %d = %d callers + %d steps; the model's %d); %d probes, %d dials",
		callers, herdFor, deadline, minB, maxB, len(pings), elapsed.Round(time.Millisecond), rejected,
		late.Round(time.Millisecond), lateBound, lateCount,
		fetches, maxFetchCount, steps, logged, st.AuthFailures, maxRejected, callers, steps, modelRejected, st.Probes, st.Dials)
	if lateCount > 0 {
		t.Errorf("%d of %d Pings returned more than %v after their deadline (latest %v)", lateCount, len(pings), lateBound, late)
	}
	if len(pings) < 2*callers {
		t.Errorf("%d Pings: fewer than two rounds of %d callers, the herd did not run", len(pings), callers)
	}
	if rejected == 0 {
		t.Errorf("no Ping got an *AuthError: the case never met the rejection")
	}
	if fetches > maxFetchCount || fetches < 3 {
		t.Errorf("%d store calls in %v; want 3 to %d (one per backoff step, and the first use)", fetches, elapsed, maxFetchCount)
	}
	if int(st.Fetches) != fetches {
		t.Errorf("Stats().Fetches = %d, the source counted %d", st.Fetches, fetches)
	}
	// At least 3: the first probe and re-checks of later steps, which a
	// connector that never re-checks would not make.
	if n := int(st.AuthFailures); n > maxRejected || n < 3 {
		t.Errorf("Stats().AuthFailures = %d; want 3 to %d", n, maxRejected)
	} else if n > modelRejected {
		t.Errorf("Stats().AuthFailures = %d: more than one probe plus one re-check per step (%d)", n, modelRejected)
	}
	if haveLog && logged != int(st.AuthFailures) {
		t.Errorf("the server log shows %d rejected logins of the role, Stats().AuthFailures %d", logged, st.AuthFailures)
	}
	if !haveLog {
		t.Logf("the server's log is not on this machine (external server): rejected logins counted in Stats only")
	}
}

// logTimes returns when the connector logged each line whose message
// contains msg, from the "time" of slog's JSON lines.
func logTimes(t *testing.T, w *watch, msg string) []time.Time {
	t.Helper()
	var out []time.Time
	for line := range strings.Lines(w.logs.String()) {
		var rec struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("a log line is not JSON: %v", err)
		}
		if strings.Contains(rec.Msg, msg) {
			out = append(out, rec.Time)
		}
	}
	return out
}

// TestRotationSoonAfterALongIncident is defect 2: an incident of about 3 s,
// in which the store keeps returning the credential the database rejects,
// grows the backoff to 3.2 s; it ends, and 0.5 s later a rotation with the
// store updated before the database begins. The end of the incident must
// reset when the store may next be called, not only the pause: the first
// store call of the rotation comes at its first rejection (it came 2.45 s
// after the ALTER ROLE), and statements with a 1.5 s deadline do not fail
// (they did, while a fresh connector had none fail). The incident ends
// either as issue 8 measured it, by the database: the ALTER ROLE is rolled
// back and the rejected credential's re-check works; or by the store
// catching up with the database. Through each driver.
func TestRotationSoonAfterALongIncident(t *testing.T) {
	pg := sharedServer(t)
	forEachDriver(t, func(t *testing.T, d testDriver) {
		for _, end := range []string{"database-rolled-back", "store-caught-up"} {
			t.Run(end, func(t *testing.T) {
				leakCheck(t)
				testRotationSoonAfterALongIncident(t, d, pg, end == "store-caught-up")
			})
		}
	})
}

func testRotationSoonAfterALongIncident(t *testing.T, d testDriver, pg *pgserver.Server, storeCatchesUp bool) {
	const (
		minB, maxB = 100 * time.Millisecond, 5 * time.Second
		wait       = 10 * time.Second
		incidentOf = 3 * time.Second
		gap        = 500 * time.Millisecond
		stmtTO     = 1500 * time.Millisecond
		workers    = 8
	)
	w := newWatch(t)
	pw1, pw2, pw3 := w.password(), w.password(), w.password()
	role := newRole(t, pg, uniqueRole(t), pw1)
	src := newMemSource("long-incident", role, pw1)
	c := newConnector(t, d, baseDSN(pg), src, rotating.WithLogger(w.logger),
		rotating.WithBackoff(minB, maxB), rotating.WithRotationWait(wait))
	db := openDB(t, c)
	db.SetMaxIdleConns(0)
	ctx := t.Context()
	if err := db.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	withDeadline := func(d time.Duration, f func(context.Context) error) func(context.Context) error {
		return func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return f(ctx)
		}
	}
	asRole := selectUser(db, func() []string { return []string{role} })

	// The incident: the database has pw2, the store pw1 for 3 s. Statements
	// have the rotation wait, which the incident ends well within.
	before := c.Stats()
	incident := startLoad(t, ctx, workers, 2*time.Millisecond, withDeadline(wait, asRole))
	testkit.Sleep(ctx, 100*time.Millisecond)
	setPassword(t, pg, role, pw2)
	testkit.Sleep(ctx, incidentOf)
	endedWith := "v1"
	if storeCatchesUp {
		src.set(secrets.Credential{Username: role, Password: pw2, Version: "v2"})
		endedWith = "v2"
	} else {
		setPassword(t, pg, role, pw1)
	}
	testkit.WaitFor(t.Context(), t, wait, "a login that ends the incident", func() bool {
		st := c.Stats()
		return st.CredentialVersion == endedWith && st.Recoveries > before.Recoveries
	})
	resolved := time.Now()
	incidentOuts := incident.finish()
	mid := c.Stats()

	// The rotation, 0.5 s later: the store first, then the database.
	rotation := startLoad(t, ctx, workers, 2*time.Millisecond, withDeadline(stmtTO, asRole))
	testkit.Sleep(ctx, time.Until(resolved.Add(gap)))
	src.set(secrets.Credential{Username: role, Password: pw3, Version: "v3"})
	storeSet := time.Now()
	setPassword(t, pg, role, pw3)
	testkit.WaitFor(t.Context(), t, wait, "the connector to move to the rotated password", func() bool { return c.Stats().CredentialVersion == "v3" })
	testkit.Sleep(ctx, 300*time.Millisecond) // statements on the new password
	rotationOuts := rotation.finish()
	st := c.Stats()

	var rejection time.Time
	for _, at := range logTimes(t, w, "login rejected") {
		if at.After(storeSet) {
			rejection = at
			break
		}
	}
	firstFetch, fetched := src.firstFetchAfter(storeSet)
	okI, failedI, firstI := tally(incidentOuts)
	okR, failedR, firstR := tally(rotationOuts)
	for _, o := range append(incidentOuts, rotationOuts...) {
		w.checkErr(o.err)
	}
	t.Logf("incident of %v ended by the %s: %d statements, %d failed; %d store calls, %d rejected logins. "+
		"Rotation %v after it ended: %d statements (deadline %v), %d failed; first store call %v after the first rejection (bound %v); %d store calls, %d rejected logins",
		incidentOf, map[bool]string{false: "database (rolled back)", true: "store (caught up)"}[storeCatchesUp],
		okI+failedI, failedI, mid.Fetches-before.Fetches, mid.AuthFailures-before.AuthFailures,
		gap, okR+failedR, stmtTO, failedR, firstFetch.Sub(rejection).Round(time.Millisecond), minB+slack,
		st.Fetches-mid.Fetches, st.AuthFailures-mid.AuthFailures)
	// Five steps (at 0, .1, .3, .7 and 1.5 s) leave a pause of 3.2 s.
	if mid.AuthFailures == before.AuthFailures || mid.Fetches-before.Fetches < 5 {
		t.Fatalf("the incident did not happen as staged: %d rejected logins, %d store calls (want the backoff to grow over 5 steps or more)",
			mid.AuthFailures-before.AuthFailures, mid.Fetches-before.Fetches)
	}
	if failedI != 0 {
		t.Errorf("%d of %d statements failed in the incident, which ended within the rotation wait: %v", failedI, okI+failedI, firstI)
	}
	if failedR != 0 {
		t.Errorf("%d of %d statements with a %v deadline failed in the rotation after the incident: %v", failedR, okR+failedR, stmtTO, firstR)
	}
	switch {
	case rejection.IsZero():
		t.Errorf("no rejected login was logged after the rotation began")
	case !fetched:
		t.Errorf("no store call after the rotation began")
	case firstFetch.Sub(rejection) > minB+slack:
		t.Errorf("the first store call of the rotation came %v after its first rejection; want it at once (bound %v)",
			firstFetch.Sub(rejection), minB+slack)
	}
	if n := st.Fetches - mid.Fetches; n != 1 {
		t.Errorf("the rotation (store updated first) cost %d store calls, want 1", n)
	}
}

// TestRetryLoginStalledAtAProxy is defect 3: behind a proxy, the first
// login is rejected (the password was changed and the store has the new
// one), and the retry with the new password stalls: the proxy accepts it
// and never answers. With WithRotationWait(1s), Connect returns after about
// the rotation wait, with a 6 s caller deadline (it returned after 6 s) and
// with none (it never returned). README: every Connect returns within its
// rotation wait or its deadline. Through each driver.
func TestRetryLoginStalledAtAProxy(t *testing.T) {
	pg := sharedServer(t)
	forEachDriver(t, func(t *testing.T, d testDriver) { testRetryLoginStalledAtAProxy(t, d, pg) })
}

func testRetryLoginStalledAtAProxy(t *testing.T, d testDriver, pg *pgserver.Server) {
	const wait = time.Second
	for _, tc := range []struct {
		name     string
		deadline time.Duration // 0: none
	}{
		{"caller-deadline-6s", 6 * time.Second},
		{"no-caller-deadline", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leakCheck(t)
			w := newWatch(t)
			pw1, pw2 := w.password(), w.password()
			role := newRole(t, pg, uniqueRole(t), pw1)
			// Forwarded: the first login, which works, and the one the
			// database rejects; the retry stalls.
			proxy := startStallingProxy(t, fmt.Sprintf("%s:%d", pg.Host, pg.Port), 2)
			src := newMemSource("behind-a-proxy", role, pw1)
			c := newConnector(t, d, fmt.Sprintf("host=127.0.0.1 port=%d dbname=postgres sslmode=disable", proxy.port()), src,
				rotating.WithLogger(w.logger), rotating.WithRotationWait(wait))
			conn, err := c.Connect(t.Context())
			if err != nil {
				t.Fatalf("first login through the proxy: %v", err)
			}
			_ = conn.Close()

			setPassword(t, pg, role, pw2)
			src.set(secrets.Credential{Username: role, Password: pw2, Version: "v2"})
			ctx := context.Background()
			if tc.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.deadline)
				defer cancel()
			}
			done := make(chan outcome, 1)
			go func() {
				done <- call(t, func() error {
					conn, err := c.Connect(ctx)
					if err == nil {
						_ = conn.Close()
					}
					return err
				})
			}()
			var r outcome
			select {
			case r = <-done:
			case <-time.After(30 * time.Second):
				t.Fatalf("Connect had not returned after 30 s (rotation wait %v)", wait)
			}
			w.checkErr(r.err)
			accepted, stalled := proxy.counts()
			st := c.Stats()
			t.Logf("retry login stalled at a proxy, rotation wait %v, caller deadline %v: Connect returned after %v: %v; "+
				"proxy accepted %d connections, left %d unanswered; %d rejected logins, %d store calls",
				wait, tc.deadline, r.took.Round(time.Millisecond), r.err, accepted, stalled, st.AuthFailures, st.Fetches)
			if accepted != 3 || stalled != 1 || st.AuthFailures != 1 || st.Fetches != 2 {
				t.Fatalf("the case did not run as staged: want 3 connections (1 unanswered), 1 rejected login, 2 store calls")
			}
			if r.took < wait*9/10 || r.took > wait+slack {
				t.Errorf("Connect returned after %v; want after about the rotation wait %v", r.took, wait)
			}
			// The rotation wait and the stalled login's own deadline end
			// about 1 ms apart; whichever is seen first, the caller gets the
			// *AuthError of its own rejection (the connector checks the
			// wait's deadline, not only its context's timer).
			var ae *rotating.AuthError
			if !errors.As(r.err, &ae) {
				t.Fatalf("Connect = %v; want the *AuthError of the rejection", r.err)
			}
			wantRejected(t, d, r.err, "28P01", src.Describe(), role)
			if ae.CtxErr != nil {
				t.Errorf("AuthError.CtxErr = %v: the caller's context had not ended", ae.CtxErr)
			}
		})
	}
}

// TestNULInAPasswordNeverReachesTheServer is defect 6: a source that hands
// out a password (or a username) with a NUL byte. docs/reliability.md
// promises ErrMalformed before any login; the credential was dialed (5
// rejected logins, or "pq: malformed SCRAM message"). The server's log must
// show no login attempt for the role; a control login with a wrong password
// shows that it would. Through each driver: the connector refuses the
// credential before either is given it.
func TestNULInAPasswordNeverReachesTheServer(t *testing.T) {
	pg := sharedServer(t)
	forEachDriver(t, func(t *testing.T, d testDriver) { testNULInAPasswordNeverReachesTheServer(t, d, pg) })
}

func testNULInAPasswordNeverReachesTheServer(t *testing.T, d testDriver, pg *pgserver.Server) {
	leakCheck(t)
	w := newWatch(t)
	pw := w.password()
	role := newRole(t, pg, uniqueRole(t), pw)
	serverLog, haveLog := markServerLog(t, pg)
	for _, tc := range []struct {
		name string
		cred secrets.Credential
	}{
		{"password", secrets.Credential{Username: role, Password: pw + testkit.NULValue}},
		{"username", secrets.Credential{Username: role + "\x00" + testkit.NULValue, Password: pw}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := secrets.Func(func(context.Context) (secrets.Credential, error) { return tc.cred, nil })
			c := newConnector(t, d, baseDSN(pg), src, fastOptions(w)...)
			db := openDB(t, c)
			db.SetMaxIdleConns(0)
			for i, r := range pings(t, t.Context(), db, 4) {
				w.checkErr(r.err)
				testkit.WantNULRefused(t, fmt.Sprintf("Ping %d", i), r.err, secrets.ErrMalformed, "NUL")
				if !errors.Is(r.err, rotating.ErrFetchFailed) || authish(d, r.err) {
					t.Errorf("Ping %d: want a *rotating.FetchError, not a rejected login (error text withheld)", i)
				}
			}
			if st := c.Stats(); st.Dials != 0 || st.Fetches == 0 {
				t.Errorf("Stats(): %d dials, %d fetches; want no login and at least one fetch", st.Dials, st.Fetches)
			}
		})
	}
	if !haveLog {
		t.Skip("the server's log is not on this machine (external server): logins checked in Stats only")
	}
	if n := serverLog.count(t, `"`+role+`"`); n != 0 {
		t.Errorf("the server log has %d lines naming the role: a login with the NUL credential reached the server", n)
	}
	// Control: a wrong password, through the driver alone, is in the log.
	if err := d.control(t.Context(), pg.DSN(role, "wrong-"+pw[:4], "postgres")); d.sqlState(err) != "28P01" {
		t.Fatalf("%s alone with a wrong password: %v, want 28P01", d.name, err)
	}
	testkit.WaitFor(t.Context(), t, 10*time.Second, "the control's rejected login in the server log", func() bool {
		return serverLog.count(t, rejectedLoginLine(role)) == 1
	})
}
