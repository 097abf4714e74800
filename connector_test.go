package rotating

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
	"go.uber.org/goleak"

	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets"
)

const testDSN = "host=db.example port=5432 dbname=app sslmode=disable"

// newTestConnector returns a connector over db and src with fast timings,
// closed at the end of the test, and a buffer that receives its logs.
func newTestConnector(t *testing.T, db *fakeDB, src secrets.Source, opts ...Option) (*Connector, *syncBuffer) {
	t.Helper()
	logs := new(syncBuffer)
	base := []Option{
		WithNewConnector(db.Connector),
		WithBackoff(10*time.Millisecond, 80*time.Millisecond),
		WithRotationWait(2 * time.Second),
		WithLogger(slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
	}
	c, err := NewConnector(testDSN, src, append(base, opts...)...)
	if err != nil {
		t.Fatalf("NewConnector: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c, logs
}

type syncBuffer = testkit.LogBuffer

func mustConnect(t *testing.T, c *Connector) driver.Conn {
	t.Helper()
	conn, err := c.Connect(context.Background())
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	return conn
}

// connectAll runs n concurrent Connects and returns how many failed and the
// first error.
func connectAll(c *Connector, n int) (failed int64, first error) {
	return connectAllCtx(context.Background(), c, n)
}

func TestConnectReturnsDriverConnUnwrapped(t *testing.T) {
	db := newFakeDB("app", "p1")
	var returned driver.Conn
	c, _ := newTestConnector(t, db, newFakeSource("app", "p1"), WithNewConnector(func(cfg pq.Config) (driver.Connector, error) {
		inner, _ := db.Connector(cfg)
		return ConnectorFunc(func(ctx context.Context) (driver.Conn, error) {
			conn, err := inner.Connect(ctx)
			returned = conn
			return conn, err
		}), nil
	}))
	conn := mustConnect(t, c)
	if conn != returned {
		t.Fatalf("Connect returned %T %p, want the driver's own connection %p", conn, conn, returned)
	}
}

func TestHotPathMakesNoFetch(t *testing.T) {
	src := newFakeSource("app", "p1")
	c, _ := newTestConnector(t, newFakeDB("app", "p1"), src)
	for range 100 {
		mustConnect(t, c)
	}
	if got := src.fetches.Load(); got != 1 {
		t.Fatalf("100 Connects made %d fetches, want 1 (the first use)", got)
	}
	st := c.Stats()
	if st.Dials != 100 || st.Fetches != 1 || st.CredentialGeneration != 1 || st.CredentialVersion != "v1" {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestConcurrentFirstConnectsShareOneFetch(t *testing.T) {
	src := newFakeSource("app", "p1")
	release := make(chan struct{})
	src.setBlock(release)
	c, _ := newTestConnector(t, newFakeDB("app", "p1"), src)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if failed, err := connectAll(c, 100); failed != 0 {
			t.Errorf("%d of 100 first Connects failed: %v", failed, err)
		}
	}()
	testkit.WaitFor(t.Context(), t, 10*time.Second, "the first fetch", func() bool { return src.fetches.Load() >= 1 })
	time.Sleep(20 * time.Millisecond) // let the other callers pile up on the fetch
	close(release)
	<-done
	if got := src.fetches.Load(); got != 1 {
		t.Fatalf("100 concurrent first Connects made %d fetches, want 1", got)
	}
}

func TestRotationCostsOneFetchWhateverTheConcurrency(t *testing.T) {
	for _, workers := range []int{1, 16, 64} {
		t.Run(fmt.Sprint(workers), func(t *testing.T) {
			db := newFakeDB("app", "p0")
			src := newFakeSource("app", "p0")
			c, _ := newTestConnector(t, db, src)
			mustConnect(t, c)
			const rotations = 10
			for i := 1; i <= rotations; i++ {
				pw := fmt.Sprintf("p%d", i)
				// The store has the new value before the database changes,
				// as in AWS's alternating-users rotation.
				src.set(secrets.Credential{Username: "app", Password: pw, Version: fmt.Sprintf("v%d", i)})
				db.SetPassword("app", pw)
				if failed, err := connectAll(c, workers); failed != 0 {
					t.Fatalf("rotation %d: %d of %d Connects failed: %v", i, failed, workers, err)
				}
			}
			if got := src.fetches.Load(); got != rotations+1 {
				t.Fatalf("%d rotations with %d workers made %d fetches, want %d (1 first use + 1 per rotation)",
					rotations, workers, got, rotations+1)
			}
			st := c.Stats()
			if st.CredentialChanges != rotations || st.CredentialVersion != "v10" || st.Recoveries == 0 {
				t.Fatalf("Stats = %+v", st)
			}
		})
	}
}

func TestRejectedDialUsesNewerCachedCredentialWithoutFetching(t *testing.T) {
	db := newFakeDB("app", "p1")
	src := newFakeSource("app", "p1")
	c, _ := newTestConnector(t, db, src)
	mustConnect(t, c)

	// Hold one dial made with p1 open while the rotation is handled by
	// another Connect; then let it fail.
	holding := make(chan struct{})
	release := make(chan struct{})
	var held atomic.Bool
	db.Gate = func(cfg pq.Config) {
		if cfg.Password == "p1" && held.CompareAndSwap(false, true) {
			close(holding)
			<-release
		}
	}
	slow := make(chan error, 1)
	go func() {
		conn, err := c.Connect(context.Background())
		if err == nil {
			conn.Close()
		}
		slow <- err
	}()
	<-holding
	src.set(secrets.Credential{Username: "app", Password: "p2"})
	db.SetPassword("app", "p2")
	mustConnect(t, c) // fails with p1, fetches p2 once
	before := src.fetches.Load()
	close(release)
	if err := <-slow; err != nil {
		t.Fatalf("the held Connect failed: %v", err)
	}
	if got := src.fetches.Load(); got != before {
		t.Fatalf("a late rejection of an older credential fetched again (%d -> %d); the newer cached one should be used", before, got)
	}
}

func TestStoreBehindDatabaseIsPolledWithBackoff(t *testing.T) {
	db := newFakeDB("app", "p1")
	src := newFakeSource("app", "p1")
	c, _ := newTestConnector(t, db, src, WithBackoff(20*time.Millisecond, 100*time.Millisecond))
	mustConnect(t, c)

	// The runbook: ALTER ROLE first, the vault updated a moment later.
	db.SetPassword("app", "p2")
	lag := 400 * time.Millisecond
	timer := time.AfterFunc(lag, func() { src.set(secrets.Credential{Username: "app", Password: "p2"}) })
	defer timer.Stop()

	start := time.Now()
	if failed, err := connectAll(c, 32); failed != 0 {
		t.Fatalf("%d of 32 Connects failed while the store lagged: %v", failed, err)
	}
	elapsed := time.Since(start)
	// 32 waiting callers share the polling: the number of calls depends on
	// the elapsed time and the backoff schedule (20, 40, 80, 100, 100 ms...),
	// never on the number of callers.
	maxCalls := int64(elapsed/(20*time.Millisecond)) + 2
	got := src.fetches.Load() - 1
	if got < 2 || got > maxCalls {
		t.Fatalf("store lagging %v: %d fetches for 32 waiting callers over %v, want between 2 and %d", lag, got, elapsed, maxCalls)
	}
}

func TestPendingCredentialBridgesTheRotationWindow(t *testing.T) {
	db := newFakeDB("app", "p1")
	src := pendingSource{newFakeSource("app", "p1")}
	c, _ := newTestConnector(t, db, src)
	mustConnect(t, c)

	// AWS single-user rotation between setSecret and finishSecret: AWSCURRENT
	// is stale, AWSPENDING is live.
	pending := secrets.Credential{Username: "app", Password: "p2", Version: "v2"}
	src.setPending(&pending)
	db.SetPassword("app", "p2")
	if failed, err := connectAll(c, 64); failed != 0 {
		t.Fatalf("%d of 64 Connects failed in the rotation window: %v", failed, err)
	}
	if f, p := src.fetches.Load()-1, src.pendingFetches.Load(); f != 1 || p != 1 {
		t.Fatalf("rotation window cost %d current + %d pending fetches, want 1 + 1", f, p)
	}
	st := c.Stats()
	if !st.CredentialFromPending || st.PendingPromotions != 1 || st.CredentialVersion != "v2" {
		t.Fatalf("Stats = %+v", st)
	}
	// More Connects in the window use the promoted credential, no fetch.
	mustConnect(t, c)
	// finishSecret: AWSCURRENT now holds the pending value; a refresh sees
	// no change.
	src.set(pending)
	src.setPending(nil)
	refreshNow(t, c)
	if st := c.Stats(); st.CredentialChanges != 1 || st.CredentialVersion != "v2" {
		t.Fatalf("after finishSecret Stats = %+v", st)
	}
}

func TestStaleCurrentDuringWindowIsNotAChange(t *testing.T) {
	db := newFakeDB("app", "p1")
	src := pendingSource{newFakeSource("app", "p1")}
	c, _ := newTestConnector(t, db, src)
	mustConnect(t, c)
	src.setPending(&secrets.Credential{Username: "app", Password: "p2"})
	db.SetPassword("app", "p2")
	mustConnect(t, c)
	// A background refresh during the window reads the stale AWSCURRENT: it
	// must not replace the working pending credential with the dead one.
	refreshNow(t, c)
	if got := c.inUse().cred.Password; got != "p2" {
		t.Fatal("a refresh during the rotation window replaced the working pending credential with the stale current one")
	}
}

func TestPendingCredentialThatFailsIsNeverCached(t *testing.T) {
	db := newFakeDB("app", "p1")
	src := pendingSource{newFakeSource("app", "p1")}
	c, _ := newTestConnector(t, db, src, WithRotationWait(300*time.Millisecond))
	mustConnect(t, c)
	src.setPending(&secrets.Credential{Username: "app", Password: "wrong"})
	db.SetPassword("app", "p3")
	_, err := c.Connect(context.Background())
	if !errors.Is(err, ErrCredentialRejected) {
		t.Fatalf("Connect = %v, want ErrCredentialRejected", err)
	}
	if c.inUse().fromPending {
		t.Fatal("a pending credential that failed to log in was cached")
	}
}

func TestWrongCredentialGivesUpWithClearErrorAndBoundedFetches(t *testing.T) {
	db := newFakeDB("app", "right-password")
	src := newFakeSource("app", "s3cr3t-wrong-password")
	c, logs := newTestConnector(t, db, src, WithRotationWait(500*time.Millisecond),
		WithBackoff(20*time.Millisecond, 100*time.Millisecond))

	const callers = 16
	errs := make(chan error, callers)
	start := time.Now()
	for range callers {
		go func() { _, err := c.Connect(context.Background()); errs <- err }()
	}
	for range callers {
		err := <-errs
		if !errors.Is(err, ErrCredentialRejected) {
			t.Fatalf("Connect = %v, want ErrCredentialRejected", err)
		}
		var pqErr *pq.Error
		if !errors.As(err, &pqErr) || pqErr.Code != pqerror.InvalidPassword {
			t.Fatalf("the driver's 28P01 *pq.Error is not reachable from %v", err)
		}
		var authErr *AuthError
		if !errors.As(err, &authErr) || authErr.Source != "fake store" || authErr.Username != "app" {
			t.Fatalf("AuthError = %+v", authErr)
		}
		for _, form := range []string{err.Error(), fmt.Sprintf("%v|%+v|%#v", err, err, err)} {
			if strings.Contains(form, "s3cr3t") || strings.Contains(form, "right-password") {
				t.Fatal("the error text contains a password")
			}
		}
		if !strings.Contains(err.Error(), "fake store") {
			t.Fatalf("error %q does not name the source", err)
		}
	}
	elapsed := time.Since(start)
	// Backoff 20, 40, 80, 100, 100... ms: the store is called about once per
	// step for the whole process, not once per caller per step.
	maxCalls := int64(elapsed/(20*time.Millisecond)) + 2
	if got := src.fetches.Load(); got > maxCalls || got >= callers*2 {
		t.Fatalf("%d callers over %v made %d fetches, want at most %d", callers, elapsed, got, maxCalls)
	}
	if st := c.Stats(); st.RecoveryFailures != callers {
		t.Fatalf("RecoveryFailures = %d, want %d", st.RecoveryFailures, callers)
	}
	if l := logs.String(); strings.Contains(l, "s3cr3t") || strings.Contains(l, "right-password") {
		t.Fatal("a log line contains a password")
	}
}

func TestCallerDeadlineBoundsTheRotationWait(t *testing.T) {
	db := newFakeDB("app", "other")
	c, _ := newTestConnector(t, db, newFakeSource("app", "p1"), WithRotationWait(time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Connect(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrCredentialRejected) {
		t.Fatalf("Connect = %v, want the caller's DeadlineExceeded and ErrCredentialRejected", err)
	}
}

func TestStoreDownKeepsUsingCachedCredential(t *testing.T) {
	db := newFakeDB("app", "p1")
	src := newFakeSource("app", "p1")
	c, _ := newTestConnector(t, db, src, WithRefreshInterval(20*time.Millisecond))
	mustConnect(t, c)
	storeDown := errors.New("connection refused")
	src.setErr(storeDown)
	testkit.WaitFor(t.Context(), t, 10*time.Second, "the background refresh to run (2 fetch errors)", func() bool { return c.Stats().FetchErrors >= 2 })
	for range 10 {
		mustConnect(t, c) // still works with the cached credential
	}
	if got := c.inUse().cred.Password; got != "p1" {
		t.Fatal("a failed fetch evicted the cached credential")
	}

	// Now the database rotates while the store is still down: both causes
	// are reported.
	db.SetPassword("app", "p2")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := c.Connect(ctx)
	var pqErr *pq.Error
	if !errors.Is(err, ErrCredentialRejected) || !errors.Is(err, ErrFetchFailed) ||
		!errors.Is(err, storeDown) || !errors.As(err, &pqErr) {
		t.Fatalf("Connect = %v, want both the rejection (*pq.Error) and the store's error", err)
	}
}

func TestOneCallerCancellingDoesNotFailTheOthers(t *testing.T) {
	src := newFakeSource("app", "p1")
	release := make(chan struct{})
	src.setBlock(release)
	c, _ := newTestConnector(t, newFakeDB("app", "p1"), src)

	impatient, cancel := context.WithCancel(context.Background())
	impatientErr := make(chan error, 1)
	go func() { _, err := c.Connect(impatient); impatientErr <- err }()
	patientErr := make(chan error, 1)
	go func() { _, err := c.Connect(context.Background()); patientErr <- err }()

	testkit.WaitFor(t.Context(), t, 10*time.Second, "the fetch to start", func() bool { return src.fetches.Load() >= 1 })
	cancel()
	if err := <-impatientErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v, want context.Canceled", err)
	}
	close(release)
	if err := <-patientErr; err != nil {
		t.Fatalf("the other caller failed because one caller cancelled: %v", err)
	}
	if got := src.fetches.Load(); got != 1 {
		t.Fatalf("fetches = %d, want 1 shared fetch", got)
	}
}

func TestFetchTimeout(t *testing.T) {
	src := newFakeSource("app", "p1")
	src.setBlock(make(chan struct{})) // never released: the store hangs
	c, _ := newTestConnector(t, newFakeDB("app", "p1"), src, WithFetchTimeout(50*time.Millisecond))
	_, err := c.Connect(context.Background())
	var ferr *FetchError
	if !errors.As(err, &ferr) || !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrFetchFailed) {
		t.Fatalf("Connect with a hanging store = %v, want a *FetchError wrapping DeadlineExceeded", err)
	}
}

func TestEmptyPasswordIsAnErrorNotAPgpassFallback(t *testing.T) {
	db := newFakeDB("app", "p1")
	c, _ := newTestConnector(t, db, newFakeSource("app", ""))
	_, err := c.Connect(context.Background())
	if !errors.Is(err, secrets.ErrEmptyPassword) || !errors.Is(err, ErrFetchFailed) {
		t.Fatalf("Connect = %v, want ErrEmptyPassword", err)
	}
	if db.Dials() != 0 {
		t.Fatal("a login was attempted with an empty password")
	}
}

// TestNULIsRefusedBeforeAnyLogin checks that a credential with a NUL byte
// in a login field, from any source (even a secrets.Func that does not
// validate), is a *FetchError wrapping secrets.ErrMalformed that names the
// field, and never reaches the driver: the PostgreSQL protocol would end
// the value at the NUL. Failure messages print no value.
func TestNULIsRefusedBeforeAnyLogin(t *testing.T) {
	for _, field := range []string{"username", "password", "host", "database"} {
		t.Run(field, func(t *testing.T) {
			cred := secrets.Credential{Username: "app", Password: "p1", Host: "db.example.com", Database: "orders"}
			switch field {
			case "username":
				cred.Username = testkit.NULValue
			case "password":
				cred.Password = testkit.NULValue
			case "host":
				cred.Host = testkit.NULValue
			case "database":
				cred.Database = testkit.NULValue
			}
			db := newFakeDB("app", "p1")
			src := newFakeSource("app", "p1")
			src.set(cred)
			c, logs := newTestConnector(t, db, src)
			_, err := c.Connect(context.Background())
			testkit.WantNULRefused(t, "Connect", err, secrets.ErrMalformed, field+" contains a NUL byte")
			var ferr *FetchError
			if !errors.As(err, &ferr) || !errors.Is(err, ErrFetchFailed) {
				t.Errorf("the error is not a *FetchError wrapping ErrFetchFailed")
			}
			if db.Dials() != 0 {
				t.Errorf("a login was attempted with a NUL in the %s", field)
			}
			if testkit.ShowsNULValue(logs.String()) {
				t.Errorf("the log holds the %s value (log withheld)", field)
			}
		})
	}
}

func TestNonAuthErrorsAreReturnedAsIs(t *testing.T) {
	db := newFakeDB("app", "p1")
	tooMany := &pq.Error{Code: pqerror.TooManyConnections, Message: "sorry, too many clients already"}
	db.FailWith = tooMany
	src := newFakeSource("app", "p1")
	c, _ := newTestConnector(t, db, src)
	_, err := c.Connect(context.Background())
	if err != tooMany {
		t.Fatalf("Connect = %v, want the driver's 53300 error unchanged", err)
	}
	if got := src.fetches.Load(); got != 1 {
		t.Fatalf("a 53300 error caused %d fetches, want only the first use", got)
	}

	// Configured as an auth code, it triggers the rotation path.
	c2, _ := newTestConnector(t, db, src, WithAuthErrorCodes("53300"), WithRotationWait(50*time.Millisecond))
	if _, err := c2.Connect(context.Background()); !errors.Is(err, ErrCredentialRejected) {
		t.Fatalf("with WithAuthErrorCodes(53300), Connect = %v, want ErrCredentialRejected", err)
	}
}

func TestAuthClassification(t *testing.T) {
	pw := &pq.Error{Code: pqerror.InvalidPassword}
	hba := &pq.Error{Code: pqerror.InvalidAuthorizationSpecification}
	busy := &pq.Error{Code: pqerror.TooManyConnections}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"28P01", pw, true},
		{"28000", hba, true},
		{"53300", busy, false},
		{"wrapped", fmt.Errorf("dial: %w", pw), true},
		{"multi-host, second host rejects", errors.Join(fmt.Errorf("h1: %w", busy), fmt.Errorf("h2: %w", pw)), true},
		{"pgx-style error", pgxLikeError{"28P01"}, true},
		{"plain error", errors.New("password authentication failed"), false},
		{"nil", nil, false},
	} {
		if got := hasSQLState(tc.err, DefaultAuthErrorCodes); got != tc.want {
			t.Errorf("%s: hasSQLState = %v, want %v", tc.name, got, tc.want)
		}
	}
}

type pgxLikeError struct{ code string }

func (e pgxLikeError) Error() string    { return "ERROR (SQLSTATE " + e.code + ")" }
func (e pgxLikeError) SQLState() string { return e.code }

func TestRefreshAheadOfExpiry(t *testing.T) {
	db := newFakeDB("app", "p1")
	src := newFakeSource("app", "p1")
	src.set(secrets.Credential{Username: "app", Password: "p1", Expires: time.Now().Add(300 * time.Millisecond)})
	c, _ := newTestConnector(t, db, src, WithRefreshBeforeExpiry(100*time.Millisecond))
	mustConnect(t, c)
	src.set(secrets.Credential{Username: "app", Password: "p2", Version: "v2"})
	db.SetPassword("app", "p2") // old sessions stay; new logins need p2
	testkit.WaitFor(t.Context(), t, 10*time.Second, "the credential to be refreshed ahead of its expiry", func() bool { return c.Stats().CredentialVersion == "v2" })
	if st := c.Stats(); st.AuthFailures != 0 || st.Fetches != 2 {
		t.Fatalf("Stats = %+v, want the change found by the background refresh with no rejected login", st)
	}
	mustConnect(t, c)
}

func TestNextRefreshIsJittered(t *testing.T) {
	c, _ := newTestConnector(t, newFakeDB("app", "p1"), newFakeSource("app", "p1"), WithRefreshInterval(time.Minute))
	now := time.Now()
	e := &entry{fetchedAt: now, cred: secrets.Credential{Password: "x"}, checked: now}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.current = e
	nextRefreshIn := func(now time.Time) (time.Duration, bool) {
		at, ok := c.nextRefreshLocked(now)
		return at.Sub(now), ok
	}
	seen := map[time.Duration]bool{}
	for range 50 {
		d, ok := nextRefreshIn(now)
		if !ok || d < 54*time.Second || d > 66*time.Second {
			t.Fatalf("next refresh in %v, want 1m ± 10%%", d)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Fatalf("only %d distinct refresh delays in 50 draws: no jitter", len(seen))
	}
	// An expiry in 10 minutes with a 1-minute lead: refresh 9 to 8.5 minutes
	// from now, before the periodic one if that is later.
	c.cfg.refreshInterval = 0
	e.expires = now.Add(10 * time.Minute)
	for range 50 {
		d, _ := nextRefreshIn(now)
		if d < 8*time.Minute+30*time.Second || d > 9*time.Minute {
			t.Fatalf("refresh ahead of expiry in %v, want 8m30s..9m", d)
		}
	}
}

func TestCloseStopsEverything(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	db := newFakeDB("app", "p1")
	src := newFakeSource("app", "p1")
	c, err := NewConnector(testDSN, src, WithNewConnector(db.Connector), WithRefreshInterval(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A fetch in flight when Close is called: the store hangs.
	src.setBlock(make(chan struct{}))
	testkit.WaitFor(t.Context(), t, 10*time.Second, "the hanging fetch to start", func() bool { return src.fetches.Load() >= 2 })
	db.SetPassword("app", "p2")
	inFlight := make(chan error, 1)
	go func() { _, err := c.Connect(context.Background()); inFlight <- err }()

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if err := <-inFlight; err == nil {
		t.Fatal("a Connect waiting on a fetch succeeded after Close")
	}
	if _, err := c.Connect(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Connect after Close = %v, want ErrClosed", err)
	}
}

func TestOptionErrorsAreCollected(t *testing.T) {
	_, err := NewConnector(testDSN, newFakeSource("a", "b"),
		WithRotationWait(0), WithBackoff(time.Second, time.Millisecond), WithAuthErrorCodes("28"), WithLogger(nil))
	if !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("err = %v, want ErrInvalidOption", err)
	}
	for _, want := range []string{"WithRotationWait", "WithBackoff", "WithAuthErrorCodes", "WithLogger"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if _, err := NewConnector(testDSN, nil); err == nil {
		t.Fatal("nil source accepted")
	}
}

func TestNoSecretInLogsThroughARotation(t *testing.T) {
	db := newFakeDB("app", "first-S3CRET")
	src := pendingSource{newFakeSource("app", "first-S3CRET")}
	c, logs := newTestConnector(t, db, src)
	mustConnect(t, c)
	src.setPending(&secrets.Credential{Username: "app", Password: "second-S3CRET"})
	db.SetPassword("app", "second-S3CRET")
	mustConnect(t, c)
	src.set(secrets.Credential{Username: "app", Password: "third-S3CRET"})
	db.SetPassword("app", "third-S3CRET")
	mustConnect(t, c)
	out := logs.String()
	if strings.Contains(out, "S3CRET") {
		t.Fatal("the logs contain a password")
	}
	for _, event := range []string{"credential changed", "login rejected", "pending credential works"} {
		if !strings.Contains(out, event) {
			t.Errorf("no %q event in the logs", event)
		}
	}
	if st := fmt.Sprintf("%+v %#v", c.Stats(), c.Stats()); strings.Contains(st, "S3CRET") {
		t.Fatal("Stats formatting contains a password")
	}
}

func TestRolledBackRotationIsFollowed(t *testing.T) {
	db := newFakeDB("app", "p1")
	src := pendingSource{newFakeSource("app", "p1")}
	c, _ := newTestConnector(t, db, src)
	mustConnect(t, c)
	src.setPending(&secrets.Credential{Username: "app", Password: "p2"})
	db.SetPassword("app", "p2")
	mustConnect(t, c) // the pending p2 is promoted while the store's current is the stale p1
	// The rotation is rolled back: the database accepts p1 again, and the
	// store's current credential is still p1.
	src.setPending(nil)
	db.SetPassword("app", "p1")
	mustConnect(t, c)
	if got := c.inUse().cred.Password; got != "p1" {
		t.Fatal("after a rollback the connector did not return to the store's current credential")
	}
}

func TestRefreshAfterANewerCredentialArrivedMakesNoFetch(t *testing.T) {
	db := newFakeDB("app", "p1")
	src := newFakeSource("app", "p1")
	c, _ := newTestConnector(t, db, src)
	mustConnect(t, c)
	first := c.inUse()
	src.set(secrets.Credential{Username: "app", Password: "p2"})
	db.SetPassword("app", "p2")
	mustConnect(t, c) // generation 2 cached
	before := src.fetches.Load()
	// A caller whose login failed with generation 1 and that missed the
	// refresh which cached generation 2 goes on looking for a credential:
	// it must not call the store.
	rejection := &pq.Error{Code: pqerror.InvalidPassword}
	c.report(first, false, loginDenied, rejection)
	if _, err := c.connectSlow(context.Background(), first, rejection); err != nil {
		t.Fatal(err)
	}
	if got := src.fetches.Load(); got != before {
		t.Fatalf("a refresh for an already superseded generation fetched (%d -> %d)", before, got)
	}
}

func TestBackoffStartsAfreshAfterEachRecovery(t *testing.T) {
	db := newFakeDB("app", "p0")
	src := pendingSource{newFakeSource("app", "p0")}
	c, _ := newTestConnector(t, db, src, WithBackoff(10*time.Millisecond, 5*time.Second))
	mustConnect(t, c)
	for i := 1; i <= 6; i++ {
		pw := fmt.Sprintf("p%d", i)
		src.setPending(&secrets.Credential{Username: "app", Password: pw})
		db.SetPassword("app", pw)
		mustConnect(t, c) // bridged through the pending credential
		src.set(secrets.Credential{Username: "app", Password: pw})
		c.mu.Lock()
		backoff := c.backoff
		c.mu.Unlock()
		if backoff != 10*time.Millisecond {
			t.Fatalf("after rotation %d the backoff is %v, want the minimum again: rotations must not inherit each other's backoff", i, backoff)
		}
	}
}

func TestStoreWithoutPendingIsAskedForItOncePerRejection(t *testing.T) {
	db := newFakeDB("app", "p1")
	src := pendingSource{newFakeSource("app", "p1")}
	c, _ := newTestConnector(t, db, src, WithBackoff(10*time.Millisecond, 20*time.Millisecond))
	mustConnect(t, c)
	db.SetPassword("app", "p2") // runbook: no pending, the store lags
	timer := time.AfterFunc(200*time.Millisecond, func() { src.set(secrets.Credential{Username: "app", Password: "p2"}) })
	defer timer.Stop()
	mustConnect(t, c)
	if f, p := src.fetches.Load()-1, src.pendingFetches.Load(); p != 1 || f < 3 {
		t.Fatalf("a lagging store was asked %d times for the current and %d times for a pending credential, want several and 1", f, p)
	}
}

func TestWaitingRefreshEndsWhenANewerCredentialArrives(t *testing.T) {
	db := newFakeDB("app", "p1")
	src := newFakeSource("app", "p1")
	c, _ := newTestConnector(t, db, src)
	mustConnect(t, c)
	// An incident: the credential was rejected, and neither the store nor
	// a re-check may be asked for an hour.
	db.SetPassword("app", "p2")
	c.mu.Lock()
	now := time.Now()
	c.clock++
	c.current.status, c.current.at = rejected, c.clock
	c.incident = true
	c.nextFetch, c.nextProbe = now.Add(time.Hour), now.Add(time.Hour)
	c.publishLocked()
	c.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		conn, err := c.Connect(context.Background())
		if err == nil {
			conn.Close()
		}
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	// A newer credential arrives by another way than this caller's store
	// call (another step's result).
	cred := secrets.Credential{Username: "app", Password: "p2"}
	fresh, err := c.newEntry(cred, false)
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.applyFetchLocked(cred, fresh, time.Now())
	c.changedLocked()
	c.mu.Unlock()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a caller waiting for its turn did not end when a newer credential was cached")
	}
	if got := src.fetches.Load(); got != 1 {
		t.Fatalf("fetches = %d, want 1: the moot refresh must not call the store", got)
	}
}

func TestRejectedBeforePendingIsPromotedTriesItWithoutFetching(t *testing.T) {
	db := newFakeDB("app", "p1")
	src := pendingSource{newFakeSource("app", "p1")}
	c, _ := newTestConnector(t, db, src)
	mustConnect(t, c)
	src.setPending(&secrets.Credential{Username: "app", Password: "p2"})
	db.SetPassword("app", "p2")

	// Hold the first login with the pending credential open, so that it is
	// not promoted yet when a second caller is rejected.
	holding := make(chan struct{})
	release := make(chan struct{})
	var held atomic.Bool
	db.Gate = func(cfg pq.Config) {
		if cfg.Password == "p2" && held.CompareAndSwap(false, true) {
			close(holding)
			<-release
		}
	}
	first := make(chan error, 1)
	go func() { _, err := c.Connect(context.Background()); first <- err }()
	<-holding
	// A second caller comes while the pending credential is being tried:
	// it must use the pending p2 the connector already has, not a new
	// fetch, and never dial the rejected p1.
	second := make(chan error, 1)
	go func() {
		conn, err := c.Connect(context.Background())
		if err == nil {
			conn.Close()
		}
		second <- err
	}()
	time.Sleep(20 * time.Millisecond)
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	if got := db.Dials(); got != 4 {
		t.Fatalf("%d logins, want 4: first use, p1 rejected once, the pending p2 by each caller", got)
	}
	if f, p := src.fetches.Load()-1, src.pendingFetches.Load(); f != 1 || p != 1 {
		t.Fatalf("the window cost %d current + %d pending fetches, want 1 + 1", f, p)
	}
}

func TestStoreAheadOfTheDatabaseNeverTakesDownWorkingLogins(t *testing.T) {
	db := newFakeDB("app", "p1")
	src := newFakeSource("app", "p1")
	c, logs := newTestConnector(t, db, src, WithRefreshInterval(20*time.Millisecond))
	mustConnect(t, c)
	// The store now holds a value the database does not accept (a rotation
	// that failed before its ALTER ROLE, or a broken secret read as a plain
	// password). The background refresh picks it up.
	src.set(secrets.Credential{Password: "not json {"})
	testkit.WaitFor(t.Context(), t, 10*time.Second, "the background refresh to pick up the store's change", func() bool { return c.Stats().CredentialChanges >= 1 })
	for range 20 {
		mustConnect(t, c) // the previous credential still works: use it
	}
	if got := c.inUse().cred.Password; got != "p1" {
		t.Fatal("the connector did not return to the previous, working credential")
	}
	// While the store keeps the rejected value, refreshes do not flip back
	// to it.
	changes := c.Stats().CredentialChanges
	time.Sleep(100 * time.Millisecond) // several refresh intervals
	for range 5 {
		mustConnect(t, c)
	}
	if st := c.Stats(); st.CredentialChanges != changes {
		t.Fatalf("credential changes went %d -> %d: the connector flapped back to the rejected store value", changes, st.CredentialChanges)
	}
	if !strings.Contains(logs.String(), "previous one works") {
		t.Error("no log event for returning to the previous credential")
	}
	// When the store is fixed, the new credential is followed as usual.
	src.set(secrets.Credential{Username: "app", Password: "p2"})
	db.SetPassword("app", "p2")
	mustConnect(t, c)
	if got := c.inUse().cred.Password; got != "p2" {
		t.Fatal("after the store was fixed the connector did not follow it")
	}
}

func TestAuthErrorNamesTheUserActuallyUsed(t *testing.T) {
	db := newFakeDB("app", "p1")
	src := newFakeSource("", "wrong") // a plain-password secret: the DSN's user logs in
	c, err := NewConnector("host=h user=dsn_user", src, WithNewConnector(db.Connector), WithRotationWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Connect(context.Background())
	var authErr *AuthError
	if !errors.As(err, &authErr) || authErr.Username != "dsn_user" {
		t.Fatalf("AuthError = %v, want it to name dsn_user", err)
	}
}

func TestUnchangedStoreIsAskedOncePerRefreshInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource("app", "p1")
		c, _ := newTestConnector(t, newFakeDB("app", "p1"), src,
			WithRefreshInterval(100*time.Millisecond), WithBackoff(time.Millisecond, 10*time.Millisecond))
		mustConnect(t, c)
		time.Sleep(time.Second)
		synctest.Wait()
		// The first use, then one refresh per interval of 100 ms (±10%): 9
		// to 11 in 1 s. A refresh that finds the same credential must count
		// as a check, or the store would be asked every backoff step (1 ms
		// here, hundreds of calls); a refresh that never runs gives 1.
		if got := src.fetches.Load(); got > 15 || got < 10 || got > 12 {
			t.Fatalf("an unchanged store was asked %d times in 1 s with a 100 ms refresh interval, want 10..12", got)
		}
	})
}

func TestExpiredCredentialIsNotPolledInATightLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource("app", "p1")
		// The store keeps returning a credential whose expiry has passed.
		src.set(secrets.Credential{Username: "app", Password: "p1", Expires: time.Now().Add(-time.Minute)})
		c, _ := newTestConnector(t, newFakeDB("app", "p1"), src, WithBackoff(time.Millisecond, 200*time.Millisecond))
		mustConnect(t, c)
		time.Sleep(time.Second)
		synctest.Wait()
		// The first use, then one call per longest backoff (200 ms): 5 or 6
		// in 1 s. More is a tight loop; fewer, a refresh that stopped.
		if got := src.fetches.Load(); got > 10 || got < 5 || got > 7 {
			t.Fatalf("a store returning an expired credential was asked %d times in 1 s, want one per longest backoff (200 ms): 5..7", got)
		}
	})
}
