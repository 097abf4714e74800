package faults

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
)

// TestContextCancelledBeforeFetch: a caller whose context is already
// cancelled gets context.Canceled at once, with nothing cached yet and
// with a cached credential; it never fails anyone else. Through each
// driver.
func TestContextCancelledBeforeFetch(t *testing.T) {
	pg := sharedServer(t)
	forEachDriver(t, func(t *testing.T, d testDriver) { testContextCancelledBeforeFetch(t, d, pg) })
}

func testContextCancelledBeforeFetch(t *testing.T, d testDriver, pg *pgserver.Server) {
	leakCheck(t)
	w := newWatch(t)
	pw := w.password()
	role := newRole(t, pg, uniqueRole(t), pw)
	a := newAWSStore(t, w, credJSON(role, pw))
	c := newConnector(t, d, baseDSN(pg), a.src, fastOptions(w)...)
	db := openDB(t, c)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	// Through database/sql, which checks the context before asking the
	// connector: no login, no store call.
	r := call(t, func() error { return db.PingContext(cancelled) })
	if !errors.Is(r.err, context.Canceled) {
		t.Errorf("PingContext(cancelled) = %v, want context.Canceled", r.err)
	}
	// Straight to the connector, nothing cached: context.Canceled at once.
	// The shared first fetch may still start; it runs on the connector's
	// context and warms the cache for the next caller.
	r = call(t, func() error {
		conn, err := c.Connect(cancelled)
		if err == nil {
			conn.Close()
		}
		return err
	})
	w.checkErr(r.err)
	if !errors.Is(r.err, context.Canceled) || r.took > slack {
		t.Errorf("Connect(cancelled) with nothing cached = %v after %v; want context.Canceled at once", r.err, r.took)
	}
	if err := db.PingContext(t.Context()); err != nil {
		t.Fatalf("a later caller: %v", err)
	}
	gets := a.gets()
	if gets > 1 {
		t.Errorf("%d GetSecretValue requests, want 1", gets)
	}
	t.Logf("a cancelled first Connect left %d store call(s) for the next caller to use", gets)

	// With a cached credential: context.Canceled, no store call, no
	// rejected login counted.
	before := c.Stats()
	r = call(t, func() error {
		conn, err := c.Connect(cancelled)
		if err == nil {
			conn.Close()
		}
		return err
	})
	w.checkErr(r.err)
	if !errors.Is(r.err, context.Canceled) || authish(d, r.err) {
		t.Errorf("Connect(cancelled) with a cached credential = %v, want context.Canceled", r.err)
	}
	if st := c.Stats(); st.Fetches != before.Fetches || st.AuthFailures != 0 || a.gets() != gets {
		t.Errorf("a cancelled Connect made a store call or counted a rejection: %+v", st)
	}
}

// TestContextCancelledDuringSharedFetch: callers share one slow fetch (the
// store answers after 1 s); half of them cancel 400 ms after the fetch
// reached the store. Those return at once with context.Canceled, the others
// get their connection, and the store is called once. Both on first use and
// during a rotation. Through each driver.
func TestContextCancelledDuringSharedFetch(t *testing.T) {
	pg := sharedServer(t)
	forEachDriver(t, func(t *testing.T, d testDriver) { testContextCancelledDuringSharedFetch(t, d, pg) })
}

func testContextCancelledDuringSharedFetch(t *testing.T, d testDriver, pg *pgserver.Server) {
	leakCheck(t)
	w := newWatch(t)
	pw := w.password()
	role := newRole(t, pg, uniqueRole(t), pw)
	a := newAWSStore(t, w, credJSON(role, pw))
	c := newConnector(t, d, baseDSN(pg), a.src, append(fastOptions(w),
		rotating.WithFetchTimeout(3*time.Second), rotating.WithRotationWait(rotating.DefaultRotationWait))...)
	db := openDB(t, c)
	db.SetMaxIdleConns(0)
	const latency = time.Second
	a.srv.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{Latency: latency})

	// The impatient callers cancel while the shared fetch is in flight, at
	// a time counted from its request, not from the callers' start: on a
	// loaded machine the callers' first logins (a rotation's rejected ones)
	// may take longer than any fixed delay, and then none would be waiting
	// for the fetch.
	const n, cancelAfter = 8, 400 * time.Millisecond
	// run starts n patient and n impatient callers; wantImpatient checks
	// the error of an impatient one and reports whether it was cancelled
	// while waiting for the shared fetch (rather than during its login).
	run := func(phase string, wantImpatient func(error) (ok, inFetch bool)) {
		t.Helper()
		getsBefore := a.gets()
		impatient, cancel := context.WithCancel(t.Context())
		defer cancel()
		cancelled := make(chan time.Time, 1)
		go func() {
			for a.gets() == getsBefore && impatient.Err() == nil {
				time.Sleep(time.Millisecond)
			}
			testkit.Sleep(impatient, cancelAfter)
			cancelled <- time.Now()
			cancel()
		}()
		results := concurrently(t, 2*n, func(i int) error {
			if i%2 == 0 {
				return db.PingContext(impatient)
			}
			return db.PingContext(t.Context())
		})
		cancel()
		cancelledAt := <-cancelled
		inFetch := 0
		for i, r := range results {
			w.checkErr(r.err)
			if i%2 == 1 {
				if r.err != nil {
					t.Errorf("%s: patient caller failed because others cancelled: %v", phase, r.err)
				}
				continue
			}
			ok, fetching := wantImpatient(r.err)
			if !ok {
				t.Errorf("%s: cancelled caller got %v", phase, r.err)
			}
			if fetching {
				inFetch++
			}
			if late := r.start.Add(r.took).Sub(cancelledAt); late > slack {
				t.Errorf("%s: cancelled caller returned %v after its cancellation, want at once", phase, late)
			}
		}
		if gets := a.gets() - getsBefore; gets != 1 {
			t.Errorf("%s: %d GetSecretValue requests, want 1 shared by all callers", phase, gets)
		}
		t.Logf("%s: %d of %d cancelled callers were waiting for the shared fetch, the others were logging in", phase, inFetch, n)
		if inFetch == 0 {
			t.Errorf("%s: no cancelled caller was waiting for the shared fetch: the case did not exercise it", phase)
		}
	}

	run("first use", func(err error) (bool, bool) {
		return errors.Is(err, context.Canceled) && !authish(d, err), err == context.Canceled
	})

	// Rotation: the store first, then the database.
	pw2 := w.password()
	v2 := a.put(credJSON(role, pw2))
	setPassword(t, pg, role, pw2)
	run("rotation", func(err error) (bool, bool) {
		// Cancelled while waiting for the shared fetch: an AuthError with
		// the rejection and the caller's context.Canceled. Cancelled
		// during a login (the rejected one, or the one after the fetch):
		// the login's error, wrapping context.Canceled.
		var ae *rotating.AuthError
		if errors.As(err, &ae) {
			return errors.Is(ae.CtxErr, context.Canceled) && errors.Is(err, context.Canceled), true
		}
		return errors.Is(err, context.Canceled) && !authish(d, err), false
	})
	if st := c.Stats(); st.CredentialVersion != v2 || st.Fetches != 2 {
		t.Errorf("Stats() = %+v; want version %s after 2 fetches", st, v2)
	}
}

// TestContextCancelledAfterSharedFetch: a caller's context is cancelled
// once its login is done: the session it got keeps working (the context
// bounds the login, not the session), and the credential the fetch cached
// serves later logins without a store call. Through each driver.
func TestContextCancelledAfterSharedFetch(t *testing.T) {
	pg := sharedServer(t)
	forEachDriver(t, func(t *testing.T, d testDriver) { testContextCancelledAfterSharedFetch(t, d, pg) })
}

func testContextCancelledAfterSharedFetch(t *testing.T, d testDriver, pg *pgserver.Server) {
	leakCheck(t)
	w := newWatch(t)
	pw := w.password()
	role := newRole(t, pg, uniqueRole(t), pw)
	a := newAWSStore(t, w, credJSON(role, pw))
	c := newConnector(t, d, baseDSN(pg), a.src, fastOptions(w)...)
	db := openDB(t, c)

	held := make([]*sql.Conn, 4)
	for i := range held {
		ctx, cancel := context.WithCancel(t.Context())
		conn, err := db.Conn(ctx)
		cancel()
		if err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
		held[i] = conn
	}
	testkit.Sleep(t.Context(), 50*time.Millisecond) // let any wrongly kept context watch fire
	for i, conn := range held {
		var one int
		if err := conn.QueryRowContext(t.Context(), "SELECT 1").Scan(&one); err != nil {
			t.Errorf("session %d, opened with a context cancelled since: %v", i, err)
		}
		conn.Close()
	}
	if gets := a.gets(); gets != 1 {
		t.Errorf("%d GetSecretValue requests, want 1", gets)
	}
}

// TestDeadlineShorterThanFetchTimeout: callers whose deadline is shorter
// than the store's answer (and the fetch timeout) return at their deadline
// with context.DeadlineExceeded; the fetch goes on for the next callers,
// which use its result without another store call. With a hanging store,
// the store is called once per fetch timeout at most, however many callers
// come and go. In a rotation, the AuthError carries the caller's deadline.
// Through each driver.
func TestDeadlineShorterThanFetchTimeout(t *testing.T) {
	pg := sharedServer(t)
	forEachDriver(t, func(t *testing.T, d testDriver) { testDeadlineShorterThanFetchTimeout(t, d, pg) })
}

func testDeadlineShorterThanFetchTimeout(t *testing.T, d testDriver, pg *pgserver.Server) {
	leakCheck(t)
	w := newWatch(t)
	pw := w.password()
	role := newRole(t, pg, uniqueRole(t), pw)
	a := newAWSStore(t, w, credJSON(role, pw))
	const deadline = 300 * time.Millisecond
	const fetchTO = 2 * time.Second
	c := newConnector(t, d, baseDSN(pg), a.src, append(fastOptions(w), rotating.WithFetchTimeout(fetchTO))...)
	db := openDB(t, c)
	db.SetMaxIdleConns(0)

	short := func() error {
		ctx, cancel := context.WithTimeout(t.Context(), deadline)
		defer cancel()
		return db.PingContext(ctx)
	}
	wantDeadline := func(what string, r outcome) {
		t.Helper()
		w.checkErr(r.err)
		if !errors.Is(r.err, context.DeadlineExceeded) {
			t.Errorf("%s: %v, want context.DeadlineExceeded", what, r.err)
		}
		if r.took > deadline+slack {
			t.Errorf("%s: returned after %v, want about its %v deadline", what, r.took, deadline)
		}
	}

	// A slow store: the fetch takes 800 ms.
	a.srv.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{Latency: 800 * time.Millisecond})
	for i, r := range concurrently(t, 4, func(int) error { return short() }) {
		wantDeadline(fmt.Sprintf("first-use caller %d", i), r)
	}
	if err := db.PingContext(t.Context()); err != nil {
		t.Fatalf("a caller without a deadline: %v", err)
	}
	if gets := a.gets(); gets != 1 {
		t.Errorf("%d GetSecretValue requests, want the 1 fetch the timed-out callers started", gets)
	}

	// Rotation with a hanging store: the AuthError carries the caller's
	// deadline and the driver's 28P01.
	a.srv.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{Hang: true})
	pw2 := w.password()
	setPassword(t, pg, role, pw2)
	getsBefore := a.gets()
	start := time.Now()
	var mu sync.Mutex
	var outs []outcome
	for time.Since(start) < 2*time.Second {
		rs := concurrently(t, 4, func(int) error { return short() })
		mu.Lock()
		outs = append(outs, rs...)
		mu.Unlock()
	}
	elapsed := time.Since(start)
	rejected := 0
	for i, r := range outs {
		wantDeadline(fmt.Sprintf("rotation caller %d", i), r)
		// The deadline ends the wait for the hanging store (an AuthError
		// with the rejection and the caller's deadline), or, on a loaded
		// machine, the first login before its rejection arrived (the
		// login's own error, wrapping the deadline, not a rejection).
		if !errors.Is(r.err, rotating.ErrCredentialRejected) {
			if authish(d, r.err) {
				t.Errorf("rotation caller %d: %v", i, r.err)
			}
			continue
		}
		rejected++
		ae := wantRejected(t, d, r.err, "28P01", a.src.Describe(), role)
		if ae != nil && !errors.Is(ae.CtxErr, context.DeadlineExceeded) {
			t.Errorf("rotation caller %d: AuthError.CtxErr = %v, want the caller's deadline", i, ae.CtxErr)
		}
	}
	if rejected == 0 {
		t.Errorf("no rotation caller was waiting for the store when its deadline passed: the case did not exercise it")
	}
	gets := a.gets() - getsBefore
	bound := int64(elapsed/fetchTO) + 2
	t.Logf("hanging store: %d callers with a %v deadline over %v (%d of them waiting for the store); %d GetSecretValue requests (bound %d)",
		len(outs), deadline, elapsed.Round(time.Millisecond), rejected, gets, bound)
	if gets > bound {
		t.Errorf("%d GetSecretValue requests in %v with a %v fetch timeout: callers that gave up started new fetches", gets, elapsed, fetchTO)
	}
}

// TestCloseWhileFetching closes the pool while callers wait for a store
// that hangs (on first use, and in a rotation) with a fetch timeout of a
// minute: Close cancels the fetch and returns at once, every waiting caller
// returns with a classifiable error, and no goroutine is left. Through each
// driver.
func TestCloseWhileFetching(t *testing.T) {
	pg := sharedServer(t)
	forEachDriver(t, func(t *testing.T, d testDriver) { testCloseWhileFetching(t, d, pg) })
}

func testCloseWhileFetching(t *testing.T, d testDriver, pg *pgserver.Server) {
	leakCheck(t)
	for _, phase := range []string{"first-use", "rotation"} {
		t.Run(phase, func(t *testing.T) {
			w := newWatch(t)
			pw := w.password()
			role := newRole(t, pg, uniqueRole(t), pw)
			a := newAWSStore(t, w, credJSON(role, pw))
			c := newConnector(t, d, baseDSN(pg), a.src, append(fastOptions(w),
				rotating.WithFetchTimeout(time.Minute), rotating.WithRotationWait(time.Minute))...)
			db := sql.OpenDB(c)
			t.Cleanup(func() { _ = db.Close() }) // closed by the case; this covers an early failure
			db.SetMaxIdleConns(0)
			if phase == "rotation" {
				if err := db.PingContext(t.Context()); err != nil {
					t.Fatal(err)
				}
				setPassword(t, pg, role, w.password())
			}
			a.srv.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{Hang: true})
			before := a.gets()

			results := make(chan outcome, 8)
			for range 8 {
				go func() { results <- call(t, func() error { return db.PingContext(t.Context()) }) }()
			}
			testkit.WaitFor(t.Context(), t, 10*time.Second, "a fetch in flight", func() bool { return a.gets() > before })
			testkit.Sleep(t.Context(), 50*time.Millisecond)
			closed := call(t, db.Close)
			if closed.err != nil || closed.took > slack {
				t.Errorf("db.Close() = %v after %v; want nil at once", closed.err, closed.took)
			}
			kinds := map[string]int{}
			for range 8 {
				r := <-results
				w.checkErr(r.err)
				// After Close the waiting callers get ErrClosed, or, for the
				// first fetch, the FetchError of the fetch Close cancelled.
				switch {
				case errors.Is(r.err, rotating.ErrClosed):
					kinds["rotating.ErrClosed"]++
				case errors.Is(r.err, rotating.ErrFetchFailed) && errors.Is(r.err, context.Canceled):
					kinds["*rotating.FetchError wrapping context.Canceled"]++
				default:
					t.Errorf("caller waiting when Close was called: %v; want rotating.ErrClosed or ErrFetchFailed", r.err)
				}
			}
			t.Logf("callers waiting when Close was called got: %v", kinds)
			if _, err := c.Connect(t.Context()); !errors.Is(err, rotating.ErrClosed) {
				t.Errorf("Connect after Close = %v, want ErrClosed", err)
			}
		})
	}
}

// TestCloseWhileDialing closes the pool while 16 workers log in over and
// over, and while a login hangs on a server that never answers: Close
// returns at once, the workers get only "database is closed" errors (never
// a rejected login), the hanging login ends at its caller's deadline, and
// no session of the role is left on the server. Through each driver.
func TestCloseWhileDialing(t *testing.T) {
	pg := sharedServer(t)
	forEachDriver(t, func(t *testing.T, d testDriver) { testCloseWhileDialing(t, d, pg) })
}

func testCloseWhileDialing(t *testing.T, d testDriver, pg *pgserver.Server) {
	leakCheck(t)
	w := newWatch(t)
	pw := w.password()
	role := newRole(t, pg, uniqueRole(t), pw)
	src := newMemSource("close-while-dialing", role, pw)
	// The default rotation wait: the case is about Close, and the 16
	// workers' first logins, made on first use, are bounded by the
	// rotation wait, which 16 concurrent SCRAM logins under -race on a
	// loaded machine can outlast with the suite's 2 s.
	c := newConnector(t, d, baseDSN(pg), src, append(fastOptions(w), rotating.WithRotationWait(rotating.DefaultRotationWait))...)
	db := sql.OpenDB(c)
	t.Cleanup(func() { _ = db.Close() }) // closed by the case; this covers an early failure
	db.SetMaxIdleConns(0)
	ctx := t.Context()

	stalled := testkit.StartStalledServer(t)
	stalledC := newConnector(t, d, fmt.Sprintf("host=127.0.0.1 port=%d dbname=postgres sslmode=disable", stalled.Port()),
		newMemSource("stalled", "nobody", w.password()), rotating.WithLogger(w.logger))
	stalledDB := sql.OpenDB(stalledC)
	t.Cleanup(func() { _ = stalledDB.Close() })
	hung := make(chan outcome, 1)
	go func() {
		hung <- call(t, func() error {
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			return stalledDB.PingContext(ctx)
		})
	}()

	l := startLoad(t, ctx, 16, 2*time.Millisecond, selectUser(db, nil))
	testkit.WaitFor(t.Context(), t, 10*time.Second, "logins to the stalled server and the real one", func() bool {
		return len(stalled.Conns()) > 0 && len(l.snapshot()) >= 32
	})
	closed := call(t, func() error { return errors.Join(db.Close(), stalledDB.Close()) })
	if closed.err != nil || closed.took > slack {
		t.Errorf("Close() = %v after %v; want nil at once, not waiting for logins in flight", closed.err, closed.took)
	}
	testkit.Sleep(ctx, 100*time.Millisecond)
	outs := l.finish()
	kinds := map[string]int{}
	for _, o := range outs {
		if o.err == nil {
			continue
		}
		w.checkErr(o.err)
		// A statement that ended before Close began must have succeeded;
		// one in flight at Close (a login under way, however long ago it
		// began) or after it may fail, only as closed.
		switch {
		case o.start.Add(o.took).Before(closed.start):
			t.Errorf("a statement that ended before Close failed: %v", o.err)
		case errors.Is(o.err, rotating.ErrClosed):
			kinds["rotating.ErrClosed"]++
		case o.err.Error() == "sql: database is closed":
			kinds["sql: database is closed"]++
		default:
			t.Errorf("after Close: %v; want a closed-pool error", o.err)
		}
	}
	ok, failed, _ := tally(outs)
	t.Logf("%d statements succeeded before Close; %d failed after it: %v", ok, failed, kinds)

	r := <-hung
	w.checkErr(r.err)
	if !errors.Is(r.err, context.DeadlineExceeded) || authish(d, r.err) {
		t.Errorf("the login hanging at Close: %v, want its caller's context.DeadlineExceeded", r.err)
	}
	if r.took > time.Second+slack {
		t.Errorf("the login hanging at Close returned after %v, want at its 1s deadline", r.took)
	}

	// No session of the role is left on the server.
	testkit.WaitFor(t.Context(), t, 10*time.Second, "the role's sessions to end", func() bool {
		var n int
		err := pg.Admin().QueryRowContext(ctx, "SELECT count(*) FROM pg_stat_activity WHERE usename = $1", role).Scan(&n)
		return err == nil && n == 0
	})
}

// TestCloseTwice: Close is idempotent on the pool and the connector, in
// any order and concurrently; Connect afterwards returns ErrClosed; a
// connector never used closes cleanly. Through each driver.
func TestCloseTwice(t *testing.T) {
	pg := sharedServer(t)
	forEachDriver(t, func(t *testing.T, d testDriver) { testCloseTwice(t, d, pg) })
}

func testCloseTwice(t *testing.T, d testDriver, pg *pgserver.Server) {
	leakCheck(t)
	w := newWatch(t)
	pw := w.password()
	role := newRole(t, pg, uniqueRole(t), pw)
	src := newMemSource("close-twice", role, pw)
	c := newConnector(t, d, baseDSN(pg), src, append(fastOptions(w), rotating.WithRefreshInterval(20*time.Millisecond))...)
	db := sql.OpenDB(c)
	t.Cleanup(func() { _ = db.Close() }) // closed by the case; this covers an early failure
	if err := db.PingContext(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i, r := range concurrently(t, 4, func(i int) error {
		if i%2 == 0 {
			return db.Close()
		}
		return c.Close()
	}) {
		if r.err != nil {
			t.Errorf("concurrent Close %d = %v", i, r.err)
		}
	}
	if err := db.Close(); err != nil {
		t.Errorf("db.Close again = %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("connector Close again = %v", err)
	}
	if _, err := c.Connect(t.Context()); !errors.Is(err, rotating.ErrClosed) {
		t.Errorf("Connect after Close = %v, want ErrClosed", err)
	}
	if err := db.PingContext(t.Context()); err == nil {
		t.Errorf("Ping after Close succeeded")
	}
	_ = c.Stats() // still readable

	unused := newConnector(t, d, baseDSN(pg), src, rotating.WithLogger(w.logger))
	if err := errors.Join(unused.Close(), unused.Close()); err != nil {
		t.Errorf("closing an unused connector twice = %v", err)
	}
}
