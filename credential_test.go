package rotating

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"

	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets"
)

// poolLogin is what a pool's connect hook does with Credential: ask for
// the credential, log in with it (here: the fake database's check), and
// report the result.
func poolLogin(ctx context.Context, c *Connector, db *fakeDB) (secrets.Credential, error) {
	l, err := c.Credential(ctx)
	if err != nil {
		return secrets.Credential{}, err
	}
	cfg, _ := pq.NewConfig(testDSN)
	cfg.User, cfg.Password = l.Credential.Username, l.Credential.Password
	conn, _ := db.Connector(cfg)
	dc, err := conn.Connect(ctx)
	l.Report(err)
	if err != nil {
		return l.Credential, err
	}
	return l.Credential, dc.Close()
}

func TestCredentialKnownToWorkIsOneLoadAndNoCall(t *testing.T) {
	db := newFakeDB("app", "p1")
	src := newFakeSource("app", "p1")
	c, _ := newTestConnector(t, db, src)
	ctx := context.Background()

	l, err := c.Credential(ctx) // first use: one fetch, one probe
	if err != nil {
		t.Fatal(err)
	}
	if l.Credential.Username != "app" || l.Credential.Password != "p1" || !l.RetireAt.IsZero() {
		t.Fatalf("first Credential = %+v (password %q)", l, l.Credential.Password)
	}
	if src.fetches.Load() != 1 || db.Dials() != 1 {
		t.Fatalf("first use: %d fetches, %d dials; want 1 and 1 (the probe)", src.fetches.Load(), db.Dials())
	}
	for range 100 {
		if l, err := c.Credential(ctx); err != nil || l.Credential.Password != "p1" {
			t.Fatalf("Credential = %v, %v", l, err)
		}
	}
	if src.fetches.Load() != 1 || db.Dials() != 1 {
		t.Fatalf("100 more Credentials: %d fetches, %d dials; want no more than the first use's 1 and 1", src.fetches.Load(), db.Dials())
	}
	// The fast path is the fast path: no allocation either.
	if n := testing.AllocsPerRun(100, func() { _, _ = c.Credential(ctx) }); n != 0 {
		t.Errorf("Credential with a credential known to work allocates %v times, want 0", n)
	}
	// A Connect after Credential's first use dials the same credential
	// without another probe or fetch.
	mustConnect(t, c).Close()
	if src.fetches.Load() != 1 || db.Dials() != 2 {
		t.Fatalf("Connect after Credential: %d fetches, %d dials; want 1 and 2", src.fetches.Load(), db.Dials())
	}
}

func TestConcurrentFirstCredentialsShareOneFetchAndOneProbe(t *testing.T) {
	db := newFakeDB("app", "p1")
	src := newFakeSource("app", "p1")
	release := make(chan struct{})
	src.setBlock(release)
	c, _ := newTestConnector(t, db, src)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 64 {
		wg.Go(func() {
			if _, err := poolLogin(context.Background(), c, db); err != nil {
				failed.Add(1)
			}
		})
	}
	testkit.WaitFor(t.Context(), t, 10*time.Second, "the first fetch", func() bool { return src.fetches.Load() >= 1 })
	time.Sleep(20 * time.Millisecond) // let the callers pile up on the fetch
	close(release)
	wg.Wait()
	st := c.Stats()
	if failed.Load() != 0 || src.fetches.Load() != 1 || st.Probes != 1 || st.Dials != 1 || db.Dials() != 65 {
		t.Fatalf("64 first pool logins: %d failed, %d fetches, %d probes, %d connector dials, %d logins in all; want 0, 1, 1, 1, 65",
			failed.Load(), src.fetches.Load(), st.Probes, st.Dials, db.Dials())
	}
}

// The store-first rotation seen from a pool that logs in itself: the
// rejected logins are those that were handed the old credential before the
// first rejection was reported; every later one waits for the new
// credential, which is probed once and fetched once.
func TestReportedRejectionSendsLaterCredentialsToTheNewOne(t *testing.T) {
	db := newFakeDB("app", "p1")
	src := newFakeSource("app", "p1")
	c, _ := newTestConnector(t, db, src)
	if _, err := poolLogin(context.Background(), c, db); err != nil {
		t.Fatal(err)
	}
	handedOut, err := c.Credential(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	src.set(secrets.Credential{Username: "app", Password: "p2", Version: "v2"})
	db.SetPassword("app", "p2")

	// The login handed p1 before the rotation is rejected, and says so.
	cfg, _ := pq.NewConfig(testDSN)
	cfg.User, cfg.Password = handedOut.Credential.Username, handedOut.Credential.Password
	conn, _ := db.Connector(cfg)
	_, rejection := conn.Connect(context.Background())
	if sqlState(rejection) != "28P01" {
		t.Fatalf("login with the old password: %v, want 28P01", rejection)
	}
	dialsBefore := c.Stats().Dials
	handedOut.Report(rejection)

	var wg sync.WaitGroup
	var failed, old atomic.Int64
	for range 32 {
		wg.Go(func() {
			cred, err := poolLogin(context.Background(), c, db)
			if err != nil {
				failed.Add(1)
			}
			if cred.Password == "p1" {
				old.Add(1)
			}
		})
	}
	wg.Wait()
	st := c.Stats()
	if failed.Load() != 0 || old.Load() != 0 {
		t.Fatalf("after the reported rejection: %d of 32 pool logins failed, %d were handed the old password; want 0 and 0", failed.Load(), old.Load())
	}
	if src.fetches.Load() != 2 || st.Dials-dialsBefore != 1 || st.AuthFailures != 1 || st.CredentialChanges != 1 {
		t.Fatalf("rotation: %d fetches, %d probes, %d rejections recorded, %d changes; want 2 (first use + 1), 1, 1, 1",
			src.fetches.Load(), st.Dials-dialsBefore, st.AuthFailures, st.CredentialChanges)
	}
}

// The runbook seen from a pool: the store lags the database by 200 ms.
// Callers of Credential wait (one store call and at most one re-check of
// the rejected credential per step, made by the Connector, not the pool)
// and are all handed the new credential once the store has it.
func TestCredentialWaitsForALaggingStore(t *testing.T) {
	db := newFakeDB("app", "p1")
	src := newFakeSource("app", "p1")
	c, _ := newTestConnector(t, db, src, WithBackoff(20*time.Millisecond, 100*time.Millisecond))
	l, err := c.Credential(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	db.SetPassword("app", "p2")
	lag := 200 * time.Millisecond
	timer := time.AfterFunc(lag, func() { src.set(secrets.Credential{Username: "app", Password: "p2"}) })
	defer timer.Stop()
	start := time.Now()
	l.Report(&pq.Error{Severity: "FATAL", Code: pqerror.InvalidPassword})

	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 32 {
		wg.Go(func() {
			if cred, err := poolLogin(context.Background(), c, db); err != nil || cred.Password != "p2" {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if failed.Load() != 0 {
		t.Fatalf("%d of 32 pool logins failed or were not handed the new password", failed.Load())
	}
	if elapsed < lag {
		t.Fatalf("the logins ended after %v, before the store had the new password (%v)", elapsed, lag)
	}
	// Steps at 0, 20, 60, 140, 240 ms: about 5 store calls before the new
	// password is found, and one re-check per step from the second on;
	// the pool made no rejected login of its own.
	st := c.Stats()
	if n := src.fetches.Load(); n < 1+3 || n > 1+6 {
		t.Errorf("%d fetches in a %v lag, want 4..7", n, lag)
	}
	if db.Rejections() > 1+int64(src.fetches.Load()) || st.AuthFailures != uint64(db.Rejections())+1 {
		t.Errorf("%d rejected logins at the database, %d recorded; want at most one re-check per store call, all recorded (+1 reported)",
			db.Rejections(), st.AuthFailures)
	}
}

func TestReportOnlyRecordsRejections(t *testing.T) {
	db := newFakeDB("app", "p1")
	src := newFakeSource("app", "p1")
	c, _ := newTestConnector(t, db, src)
	l, err := c.Credential(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		nil,
		errors.New("dial tcp: connection refused"),
		&pq.Error{Severity: "FATAL", Code: pqerror.TooManyConnections},
		context.DeadlineExceeded,
	} {
		l.Report(err)
		if c.use.Load() != l.e || c.Stats().AuthFailures != 0 {
			t.Fatalf("Report(%v) changed what the connector knows", err)
		}
	}
	Login{}.Report(&pq.Error{Code: pqerror.InvalidPassword}) // the zero Login: nothing to report to
	l.Report(fmt.Errorf("connect: %w", errors.Join(errors.New("host a: refused"), pgxLikeError{"28000"})))
	if c.use.Load() != nil || c.Stats().AuthFailures != 1 {
		t.Fatalf("a reported 28000 inside a joined error was not recorded as a rejection")
	}
}

func TestCredentialGivesUpLikeConnect(t *testing.T) {
	db := newFakeDB("app", "p1")
	src := newFakeSource("app", "wrong")
	c, _ := newTestConnector(t, db, src, WithRotationWait(200*time.Millisecond))
	start := time.Now()
	_, err := c.Credential(context.Background())
	var authErr *AuthError
	if !errors.As(err, &authErr) || !errors.Is(err, ErrCredentialRejected) || sqlState(err) != "28P01" {
		t.Fatalf("Credential with a wrong password: %v, want an *AuthError with the driver's 28P01", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 2*time.Second {
		t.Fatalf("gave up after %v, want about the rotation wait (200ms)", d)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Fatalf("error contains the password: %v", err)
	}
	c.Close()
	if _, err := c.Credential(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Credential after Close: %v, want ErrClosed", err)
	}
}

func TestCredentialAppliesTheEndpointRule(t *testing.T) {
	cred := secrets.Credential{Username: "app", Password: "p1", Host: "other.example", Port: 6543, Database: "other"}
	for _, tc := range []struct {
		name string
		dsn  string
		opts []Option
		want secrets.Credential
	}{
		{"the DSN's endpoint wins", testDSN, nil, secrets.Credential{Username: "app", Password: "p1"}},
		{"the secret fills what the DSN leaves unset", "sslmode=disable dbname=app", nil,
			secrets.Credential{Username: "app", Password: "p1", Host: "other.example", Port: 6543}},
		{"WithEndpointFromSecret", testDSN, []Option{WithEndpointFromSecret()}, cred},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := newFakeDB("app", "p1")
			c, err := NewConnector(tc.dsn, secrets.Static(cred), append([]Option{WithNewConnector(db.Connector)}, tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			l, err := c.Credential(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !l.Credential.SameLogin(tc.want) {
				t.Fatalf("Credential = %v, want %v", l.Credential, tc.want)
			}
		})
	}
}

func TestCredentialOfSessionsThatEnd(t *testing.T) {
	db := newFakeDB("app", "p1")
	end := time.Now().Add(time.Hour)
	src := secrets.Static(secrets.Credential{Username: "app", Password: "p1", SessionsEnd: end})
	c, _ := newTestConnector(t, db, src, WithSessionMargin(5*time.Minute))
	l, err := c.Credential(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := end.Add(-5 * time.Minute); !l.RetireAt.Equal(want) {
		t.Fatalf("RetireAt = %v, want %v (the session margin before SessionsEnd)", l.RetireAt, want)
	}
}

func TestLoginPrintsNoSecret(t *testing.T) {
	db := newFakeDB("app", "s3cret-p1")
	c, _ := newTestConnector(t, db, secrets.Static(secrets.Credential{Username: "app", Password: "s3cret-p1"}))
	l, err := c.Credential(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	logger := slog.New(slog.NewJSONHandler(&b, nil))
	logger.Info("login", slog.Any("login", l))
	slog.New(slog.NewTextHandler(&b, nil)).Info("login", slog.Any("login", l))
	for _, s := range []string{fmt.Sprint(l), fmt.Sprintf("%+v", l), fmt.Sprintf("%#v", l), b.String()} {
		if strings.Contains(s, "s3cret") {
			t.Fatalf("a Login prints its password: %s", s)
		}
	}
}
