package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/internal/testkit/drivers"
	"github.com/pgrotate/rotating/secrets"
)

// writePgpass writes a pgpass file with mode 0600, as libpq and lib/pq
// require before they read one.
func writePgpass(t *testing.T, path, line string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestEnvironmentSabotage checks that the login uses the source's
// credential and nothing else: not PGPASSWORD, PGUSER, PGPASSFILE or
// ~/.pgpass, whether they are wrong or right. Both drivers read all four
// when they parse a DSN; it runs through each.
func TestEnvironmentSabotage(t *testing.T) {
	for _, d := range drivers.All {
		t.Run(d.Name, func(t *testing.T) { testEnvironmentSabotage(t, d) })
	}
}

func testEnvironmentSabotage(t *testing.T, d drivers.Driver) {
	srv := pgtest.Shared(t)
	role, pw := pgtest.NewRole(t, srv)

	t.Run("wrong-environment-ignored", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		dir := t.TempDir()
		passfile := filepath.Join(dir, "passfile")
		home := filepath.Join(dir, "home")
		writePgpass(t, passfile, "*:*:*:*:wrong")
		writePgpass(t, filepath.Join(home, ".pgpass"), "*:*:*:*:wrong-in-home")
		t.Setenv("PGPASSWORD", "wrong")
		t.Setenv("PGUSER", "wronguser")
		t.Setenv("PGPASSFILE", passfile)
		t.Setenv("HOME", home)

		// Control: the driver alone, given the same DSN, obeys the
		// environment and is turned away, so the sabotage is real.
		plain, err := sql.Open(d.SQLName, baseDSN(srv))
		if err != nil {
			t.Fatal(err)
		}
		defer plain.Close()
		if err := plain.PingContext(ctx); d.SQLState(err) != "28P01" {
			t.Fatalf("control: %s with the sabotaged environment: %v, want a 28P01 %s", d.Name, err, d.ErrorType)
		}

		src := newCountingSource("env-wrong", secrets.Credential{Username: role, Password: pw})
		c := newConnector(t, baseDSN(srv), src, d.With()...)
		db := openDB(t, c)
		var user string
		if err := db.QueryRowContext(ctx, "SELECT current_user").Scan(&user); err != nil {
			t.Fatalf("login through the connector: %v", err)
		}
		if user != role {
			t.Errorf("current_user = %q, want the source's %q", user, role)
		}
		if st := c.Stats(); st.AuthFailures != 0 || st.Dials != 1 {
			t.Errorf("Stats(): %d rejected logins in %d dials; want 0 in 1", st.AuthFailures, st.Dials)
		}
	})

	t.Run("empty-password-refused", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		dir := t.TempDir()
		passfile := filepath.Join(dir, "passfile")
		home := filepath.Join(dir, "home")
		// This time the pgpass files hold the RIGHT password: a connector
		// that let the driver fall back to them would log in.
		writePgpass(t, passfile, "*:*:*:"+role+":"+pw)
		writePgpass(t, filepath.Join(home, ".pgpass"), "*:*:*:"+role+":"+pw)
		t.Setenv("PGPASSWORD", "")
		if err := os.Unsetenv("PGPASSWORD"); err != nil { // t.Setenv restores it
			t.Fatal(err)
		}
		t.Setenv("PGUSER", role)
		t.Setenv("PGPASSFILE", passfile)
		t.Setenv("HOME", home)

		// Control: the driver alone does log in with the pgpass file.
		plain, err := sql.Open(d.SQLName, baseDSN(srv))
		if err != nil {
			t.Fatal(err)
		}
		defer plain.Close()
		var user string
		if err := plain.QueryRowContext(ctx, "SELECT current_user").Scan(&user); err != nil || user != role {
			t.Fatalf("control: %s with the pgpass file: user %q, %v; want %q", d.Name, user, err, role)
		}

		src := newCountingSource("env-empty", secrets.Credential{Username: role, Password: ""})
		c := newConnector(t, baseDSN(srv), src, d.With()...)
		db := openDB(t, c)
		err = db.PingContext(ctx)
		if !errors.Is(err, secrets.ErrEmptyPassword) || !errors.Is(err, rotating.ErrFetchFailed) {
			t.Fatalf("Ping with an empty password from the source: %v; want an error wrapping secrets.ErrEmptyPassword and rotating.ErrFetchFailed", err)
		}
		var ferr *rotating.FetchError
		if !errors.As(err, &ferr) || ferr.Source != src.Describe() {
			t.Errorf("error %v: want a *rotating.FetchError naming %q", err, src.Describe())
		}
		st := c.Stats()
		if st.Dials != 0 || src.count() < 1 {
			t.Errorf("Stats().Dials = %d with %d fetches: want no login attempt at all", st.Dials, src.count())
		}
		assertNoSecret(t, "the error", fmt.Sprintf("%v %+v", err, err), pw)
	})
}

// maxFetches is the most calls to the source that the connector's pacing
// allows within elapsed, after a first fetch at time zero: the next call
// waits for min, the one after for min again, then the pause doubles up to
// max (paceAfter: a good fetch sets the pause to min; each fetch that finds
// the rejected credential again waits the current pause and doubles it).
func maxFetches(elapsed, minB, maxB time.Duration) int {
	n, at, pause := 1, time.Duration(0), minB
	for i := 0; ; i++ {
		at += pause
		if at > elapsed {
			return n
		}
		n++
		if i > 0 {
			pause = min(2*pause, maxB)
		}
	}
}

// TestWrongCredentialNeverFixed gives the connector a credential that the
// database rejects and that no rotation ever fixes: every caller must get a
// bounded, well-formed, secret-free error, and the store must be re-checked
// at the backoff's pace, not once per caller and step. It runs through each
// driver: the driver's own error must be in every caller's chain.
func TestWrongCredentialNeverFixed(t *testing.T) {
	for _, d := range drivers.All {
		t.Run(d.Name, func(t *testing.T) { testWrongCredentialNeverFixed(t, d) })
	}
}

func testWrongCredentialNeverFixed(t *testing.T, d drivers.Driver) {
	srv := pgtest.Shared(t)
	role, right := pgtest.NewRole(t, srv)
	wrong := pgtest.RandomPassword(t)
	src := newCountingSource("never-fixed", secrets.Credential{Username: role, Password: wrong, Version: "v-wrong"})
	logger, logs := newLogger()
	const wait, minB, maxB, callers = time.Second, 50 * time.Millisecond, 400 * time.Millisecond, 16
	c := newConnector(t, baseDSN(srv), src,
		d.With(rotating.WithRotationWait(wait), rotating.WithBackoff(minB, maxB), rotating.WithLogger(logger))...)
	db := openDB(t, c)

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	errs := make([]error, callers)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range callers {
		wg.Go(func() { errs[i] = db.PingContext(ctx) })
	}
	wg.Wait()
	elapsed := time.Since(start)

	for i, err := range errs {
		if err == nil {
			t.Errorf("caller %d: Ping succeeded with a wrong password", i)
			continue
		}
		if !errors.Is(err, rotating.ErrCredentialRejected) {
			t.Errorf("caller %d: %v does not match rotating.ErrCredentialRejected", i, err)
		}
		if d.SQLState(err) != "28P01" {
			t.Errorf("caller %d: %v: want a %s with code 28P01 in the chain", i, err, d.ErrorType)
		}
		if !strings.Contains(err.Error(), src.Describe()) {
			t.Errorf("caller %d: %q does not name the source %q", i, err, src.Describe())
		}
		var aerr *rotating.AuthError
		if !errors.As(err, &aerr) {
			t.Errorf("caller %d: %v is not a *rotating.AuthError", i, err)
		} else if aerr.Username != role || aerr.Version != "v-wrong" || aerr.CtxErr != nil || aerr.Waited < wait {
			t.Errorf("caller %d: AuthError{Username %q, Version %q, CtxErr %v, Waited %v}; want %q, v-wrong, nil, at least %v",
				i, aerr.Username, aerr.Version, aerr.CtxErr, aerr.Waited, role, wait)
		}
		for _, verb := range []string{"%v", "%+v", "%s", "%q", "%#v"} {
			assertNoSecret(t, "error formatted with "+verb, fmt.Sprintf(verb, err), wrong, right)
		}
	}

	fetches := int(src.count())
	steps := maxFetches(elapsed, minB, maxB)
	// Slack of 2: a Connect that starts a refresh just after another one
	// ended adds a call, still paced.
	bound := steps + 2
	st := c.Stats()
	t.Logf("never fixed: %d callers gave up after %v; %d fetches (pacing allows %d, bound %d; a fetch per caller per step would be %d); %d dials, %d rejected",
		callers, elapsed.Round(time.Millisecond), fetches, steps, bound, callers*steps, st.Dials, st.AuthFailures)
	if fetches > bound {
		t.Errorf("%d fetches in %v: more than the backoff schedule allows (%d)", fetches, elapsed, bound)
	}
	if fetches < 2 {
		t.Errorf("%d fetches: the store was never re-checked after the rejection", fetches)
	}
	if st.RecoveryFailures != callers {
		t.Errorf("Stats().RecoveryFailures = %d, want %d", st.RecoveryFailures, callers)
	}

	out := logs.String()
	assertNoSecret(t, "the connector's logs", out, wrong, right)
	gaveUp := 0
	for line := range strings.Lines(out) {
		if strings.Contains(line, `"msg":"rotating: no working credential"`) {
			gaveUp++
		}
	}
	if gaveUp != callers {
		t.Errorf("%d \"no working credential\" log lines, want %d; logs:\n%s", gaveUp, callers, out)
	}
}

// punctuation1KiB returns a 1024-byte password of every ASCII punctuation
// character and the space, in a pattern that varies.
func punctuation1KiB() string {
	const set = ` !"#$%&'()*+,-./:;<=>?@[\]^_{|}~` + "`"
	var b strings.Builder
	for i := 0; b.Len() < 1024; i++ {
		b.WriteByte(set[(i*7+i/len(set))%len(set)])
	}
	return b.String()
}

// TestAwkwardPasswords logs in with passwords that break DSNs built by
// string concatenation, through a key=value DSN and a postgres:// URL, with
// each driver.
func TestAwkwardPasswords(t *testing.T) {
	srv := pgtest.Shared(t)
	role, _ := pgtest.NewRole(t, srv)
	for _, d := range drivers.All {
		t.Run(d.Name, func(t *testing.T) { testAwkwardPasswords(t, d, srv, role) })
	}
}

func testAwkwardPasswords(t *testing.T, drv drivers.Driver, srv *pgserver.Server, role string) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	passwords := []struct{ name, pw string }{
		{"quotes", `it's "quoted"`},
		{"backslash", `back\slash`},
		{"double-space", "spaces  in it"},
		{"url-reserved", "@:/?#%&="},
		{"unicode", "ünïcødé-пароль-密码"},
		{"1KiB-punctuation", punctuation1KiB()},
		{"quote-and-backslash", `\' it\'s \\'' \`},
	}
	dsns := []struct{ name, dsn string }{{"key-value", baseDSN(srv)}, {"url", urlDSN(srv)}}
	for _, p := range passwords {
		setPassword(ctx, t, srv, role, p.pw)
		for _, d := range dsns {
			t.Run(p.name+"/"+d.name, func(t *testing.T) {
				src := newCountingSource(p.name, secrets.Credential{Username: role, Password: p.pw})
				c := newConnector(t, d.dsn, src, drv.With()...)
				db := openDB(t, c)
				var user string
				if err := db.QueryRowContext(ctx, "SELECT current_user").Scan(&user); err != nil {
					t.Fatalf("login with a %d-byte password: %v", len(p.pw), err)
				}
				if user != role {
					t.Errorf("current_user = %q, want %q", user, role)
				}
				if st := c.Stats(); st.AuthFailures != 0 {
					t.Errorf("Stats().AuthFailures = %d, want 0", st.AuthFailures)
				}
			})
		}
	}
}

// TestLoginHonoursContextDeadline points the connector at a server that
// accepts the TCP connection and never answers the startup message. With
// no connect_timeout, only the caller's context can end the login. It runs
// through each driver.
func TestLoginHonoursContextDeadline(t *testing.T) {
	for _, d := range drivers.All {
		t.Run(d.Name, func(t *testing.T) { testLoginHonoursContextDeadline(t, d) })
	}
}

func testLoginHonoursContextDeadline(t *testing.T, d drivers.Driver) {
	stalled := testkit.StartStalledServer(t)
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d dbname=postgres sslmode=disable", stalled.Port())
	src := newCountingSource("stalled", secrets.Credential{Username: "nobody", Password: pgtest.RandomPassword(t)})
	c := newConnector(t, dsn, src, d.With()...)
	db := openDB(t, c)

	// Ping runs in a goroutine so that a login that ignores the deadline
	// fails the test after 5 s instead of hanging it, and a panic in the
	// Connect path fails it instead of crashing the test binary.
	type result struct {
		err      error
		elapsed  time.Duration
		panicked any
		stack    []byte
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	results := make(chan result, 1)
	go func() {
		start := time.Now()
		defer func() {
			if r := recover(); r != nil {
				results <- result{elapsed: time.Since(start), panicked: r, stack: debug.Stack()}
			}
		}()
		err := db.PingContext(ctx)
		results <- result{err: err, elapsed: time.Since(start)}
	}()
	var r result
	select {
	case r = <-results:
	case <-time.After(5 * time.Second):
		stalled.Stop() // hang up, so that the blocked login ends
		r = <-results
		t.Fatalf("Ping was still blocked 5s after its 200ms deadline; it ended only when the server hung up, after %v: %v", r.elapsed, r.err)
	}
	if r.panicked != nil {
		t.Fatalf("PingContext panicked after %v: %v\n%s", r.elapsed, r.panicked, r.stack)
	}
	t.Logf("Ping against a stalled server: %v after %v", r.err, r.elapsed.Round(time.Millisecond))
	if r.err == nil {
		t.Fatal("Ping succeeded against a server that never answers")
	}
	if !errors.Is(r.err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap context.DeadlineExceeded", r.err)
	}

	var conns []net.Conn
	testkit.WaitFor(t.Context(), t, 5*time.Second, "the stalled server to accept the login's connection", func() bool {
		conns = stalled.Conns()
		return len(conns) > 0
	})
	if len(conns) != 1 {
		t.Fatalf("the stalled server accepted %d connections, want 1 (the deadline must end the login, not just the dial)", len(conns))
	}
	// The interrupted login's socket must have been closed, not leaked: the
	// stalled server reads the startup message and then end of file.
	_ = conns[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.Copy(io.Discard, conns[0]); err != nil || n == 0 {
		t.Errorf("stalled server read %d bytes then %v; want the startup message then EOF", n, err)
	}
	if st := c.Stats(); st.Dials != 1 || st.AuthFailures != 0 {
		t.Errorf("Stats(): %d dials, %d rejected; want 1 and 0", st.Dials, st.AuthFailures)
	}
}
