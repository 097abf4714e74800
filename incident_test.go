package rotating

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"

	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets"
)

// The tests in this file each reproduce a defect measured on the first
// connector (issue 8) and hold the model to its rules. Time runs on
// synctest's fake clock wherever the rule is about time.

// An incident that ends with the same credential working again must leave
// nothing behind: the next rotation's window is bridged through the
// pending credential as by a fresh connector.
func TestRotationAfterAnEarlierIncidentAsksForPendingAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db := newFakeDB("app", "p1")
		src := pendingSource{newFakeSource("app", "p1")}
		c, _ := newTestConnector(t, db, src)
		mustConnect(t, c)

		// A DBA's ALTER ROLE, rolled back 30 ms later: logins recover with
		// the same credential.
		db.SetPassword("app", "typo")
		time.AfterFunc(30*time.Millisecond, func() { db.SetPassword("app", "p1") })
		mustConnect(t, c)
		if st := c.Stats(); st.AuthFailures == 0 || st.CredentialVersion != "v1" {
			t.Fatalf("the incident did not happen as staged: %+v", st)
		}

		time.Sleep(time.Minute)
		fetches, pendings := src.fetches.Load(), src.pendingFetches.Load()
		// An AWS single-user rotation, between setSecret and finishSecret.
		src.setPending(&secrets.Credential{Username: "app", Password: "p2", Version: "v2"})
		db.SetPassword("app", "p2")
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if failed, err := connectAllCtx(ctx, c, 16); failed != 0 {
			t.Fatalf("%d of 16 Connects failed in the window after an earlier incident: %v", failed, err)
		}
		if f, p := src.fetches.Load()-fetches, src.pendingFetches.Load()-pendings; f != 1 || p != 1 {
			t.Fatalf("the window cost %d current + %d pending reads, want 1 + 1 as for a fresh connector", f, p)
		}
	})
}

// The end of an incident resets when the store may next be called, not only
// the length of the pause.
func TestBackoffResetAlsoAllowsTheNextStoreCallAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db := newFakeDB("app", "p1")
		src := newFakeSource("app", "p1")
		c, _ := newTestConnector(t, db, src, WithBackoff(100*time.Millisecond, 5*time.Second), WithRotationWait(10*time.Second))
		mustConnect(t, c)

		// A 3 s incident: the backoff grows to 1.6 s and more.
		db.SetPassword("app", "typo")
		time.AfterFunc(3*time.Second, func() { db.SetPassword("app", "p1") })
		mustConnect(t, c)

		// Half a second later, a rotation with the store updated first.
		time.Sleep(500 * time.Millisecond)
		src.set(secrets.Credential{Username: "app", Password: "p2", Version: "v2"})
		db.SetPassword("app", "p2")
		before := src.fetches.Load()
		start := time.Now()
		mustConnect(t, c)
		if waited := time.Since(start); waited != 0 {
			t.Fatalf("the rotation after a resolved incident waited %v for its first store call, want none", waited)
		}
		if got := src.fetches.Load() - before; got != 1 {
			t.Fatalf("%d store calls, want 1", got)
		}
	})
}

// stallAfterFirst is a NewConnectorFunc whose first login is rejected and
// whose later logins stall until their context ends: a proxy that accepts
// and never answers, behind a login bounded by its context as the default
// lib/pq dialer is.
func stallAfterFirst() (NewConnectorFunc, *atomic.Int64) {
	var dials atomic.Int64
	return func(cfg pq.Config) (driver.Connector, error) {
		return ConnectorFunc(func(ctx context.Context) (driver.Conn, error) {
			if dials.Add(1) == 1 {
				return nil, &pq.Error{Code: pqerror.InvalidPassword, Message: "password authentication failed"}
			}
			<-ctx.Done()
			return nil, fmt.Errorf("login interrupted: %w", context.Cause(ctx))
		}), nil
	}, &dials
}

func TestRetryLoginIsBoundedByTheRotationWait(t *testing.T) {
	for _, tc := range []struct {
		name     string
		deadline time.Duration // 0: no deadline
	}{
		{"caller deadline 6s", 6 * time.Second},
		{"no caller deadline", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				connect, dials := stallAfterFirst()
				src := newFakeSource("app", "p1")
				c, _ := newTestConnector(t, newFakeDB("app", "p1"), src, WithNewConnector(connect), WithRotationWait(time.Second))
				// The store has a new credential: the retry logs in with it
				// and stalls.
				src.set(secrets.Credential{Username: "app", Password: "p2"})
				ctx := context.Background()
				if tc.deadline > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tc.deadline)
					defer cancel()
				}
				start := time.Now()
				_, err := c.Connect(ctx)
				waited := time.Since(start)
				if err == nil || waited != time.Second {
					t.Fatalf("Connect returned %v after %v, want an error after the rotation wait (1s)", err, waited)
				}
				if dials.Load() != 2 {
					t.Fatalf("%d logins, want 2 (the rejected one and the stalled retry)", dials.Load())
				}
			})
		})
	}
}

// The default lib/pq connector bounds the first login too: a server that
// accepts and never answers cannot hold a Connect without a deadline
// forever.
func TestFirstLoginToAStalledServerIsBoundedByTheRotationWait(t *testing.T) {
	srv := testkit.StartStalledServer(t)
	c, err := NewConnector(fmt.Sprintf("host=127.0.0.1 port=%d sslmode=disable", srv.Port()),
		secrets.Static(secrets.Credential{Username: "app", Password: "p1"}), WithRotationWait(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan error, 1)
	start := time.Now()
	go func() { _, err := c.Connect(context.Background()); done <- err }()
	select {
	case err := <-done:
		if waited := time.Since(start); err == nil || waited < 250*time.Millisecond {
			t.Fatalf("Connect to a stalled server = %v after %v, want an error after about 300ms", err, waited)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Connect to a stalled server with no deadline did not return")
	}
}

func TestPanickingSourceIsAnErrorAndTheConnectorGoesOn(t *testing.T) {
	const secret = "s3cr3t-in-panic"
	t.Run("first use", func(t *testing.T) {
		var calls atomic.Int64
		src := secrets.Func(func(context.Context) (secrets.Credential, error) {
			if calls.Add(1) == 1 {
				panic("cannot parse password=" + secret)
			}
			return secrets.Credential{Username: "app", Password: "p1"}, nil
		})
		c, logs := newTestConnector(t, newFakeDB("app", "p1"), src)
		_, err := c.Connect(context.Background())
		if !errors.Is(err, ErrFetchFailed) || !strings.Contains(err.Error(), "panicked") {
			t.Fatalf("Connect with a panicking source = %v, want ErrFetchFailed naming the panic", err)
		}
		if strings.Contains(fmt.Sprintf("%v %+v", err, err), secret) || strings.Contains(logs.String(), secret) {
			t.Fatal("the panic value reached an error or a log line")
		}
		time.Sleep(20 * time.Millisecond) // past the backoff
		mustConnect(t, c)                 // the connector goes on
	})
	t.Run("background refresh", func(t *testing.T) {
		var calls atomic.Int64
		src := secrets.Func(func(context.Context) (secrets.Credential, error) {
			if calls.Add(1) > 1 {
				panic(errors.New(secret))
			}
			return secrets.Credential{Username: "app", Password: "p1"}, nil
		})
		c, logs := newTestConnector(t, newFakeDB("app", "p1"), src, WithRefreshInterval(10*time.Millisecond))
		mustConnect(t, c)
		testkit.WaitFor(t.Context(), t, 10*time.Second, "the background refresh to go on after the source panicked (3 fetch errors)", func() bool { return c.Stats().FetchErrors >= 3 })
		mustConnect(t, c)
		if strings.Contains(logs.String(), secret) {
			t.Fatal("the panic value reached a log line")
		}
	})
}

func TestFarFutureExpiryIsNotPolled(t *testing.T) {
	for _, expires := range []time.Time{
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Now().AddDate(300, 0, 0),
	} {
		t.Run(expires.Format("2006"), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				src := newFakeSource("app", "p1")
				src.set(secrets.Credential{Username: "app", Password: "p1", Expires: expires})
				c, _ := newTestConnector(t, newFakeDB("app", "p1"), src)
				mustConnect(t, c)
				time.Sleep(time.Hour)
				synctest.Wait()
				if got := src.fetches.Load(); got != 1 {
					t.Fatalf("a credential expiring in %d was fetched %d times in an hour, want 1", expires.Year(), got)
				}
			})
		})
	}
}

func TestNULInACredentialNeverReachesTheDriver(t *testing.T) {
	for _, cred := range []secrets.Credential{
		{Username: "app", Password: "p1\x00rest"},
		{Username: "app\x00x", Password: "p1"},
	} {
		db := newFakeDB("app", "p1")
		c, _ := newTestConnector(t, db, secrets.Func(func(context.Context) (secrets.Credential, error) { return cred, nil }))
		_, err := c.Connect(context.Background())
		if !errors.Is(err, secrets.ErrMalformed) || !errors.Is(err, ErrFetchFailed) {
			t.Errorf("Connect with a NUL in the credential = %v, want ErrMalformed", err)
		}
		if db.Dials() != 0 {
			t.Errorf("%d logins were attempted with a NUL in the credential", db.Dials())
		}
	}
}

// A never-fixed credential and 50 callers that retry every 2 s: the
// rejected credential is re-checked once per backoff step for the whole
// process, not by each waiting caller.
func TestKnownRejectedCredentialIsReCheckedOncePerStep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db := newFakeDB("app", "right")
		src := newFakeSource("app", "wrong")
		c, _ := newTestConnector(t, db, src, WithBackoff(100*time.Millisecond, time.Second), WithRotationWait(10*time.Second))
		const callers = 50
		var wg sync.WaitGroup
		var late atomic.Int64
		for range callers {
			wg.Go(func() {
				for end := time.Now().Add(4 * time.Second); time.Now().Before(end); {
					start := time.Now()
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					_, err := c.Connect(ctx)
					cancel()
					if time.Since(start) > 2*time.Second {
						late.Add(1)
					}
					if !errors.Is(err, ErrCredentialRejected) {
						t.Errorf("Connect = %v, want ErrCredentialRejected", err)
						return
					}
				}
			})
		}
		wg.Wait()
		// Steps start at 0, 0.1, 0.3, 0.7, 1.5, 2.5, 3.5 s (and the one
		// under way at 4 s): at most 8 in 4 s.
		const maxSteps = 8
		if got := src.fetches.Load(); got < 5 || got > maxSteps {
			t.Errorf("%d store calls in 4 s, want one per backoff step (5..%d)", got, maxSteps)
		}
		if got := db.Rejections(); got < 5 || got > callers+maxSteps {
			t.Errorf("%d rejected logins, want at most %d callers + one per step (%d)", got, callers, maxSteps)
		}
		if late.Load() != 0 {
			t.Errorf("%d Connects returned after their deadline", late.Load())
		}
	})
}

// blockingSource ignores its context: it returns only when released.
type blockingSource struct {
	release chan struct{}
	calls   atomic.Int64
}

func (s *blockingSource) Fetch(context.Context) (secrets.Credential, error) {
	if s.calls.Add(1) > 1 {
		<-s.release
	}
	return secrets.Credential{Username: "app", Password: "p1"}, nil
}

func TestCloseDoesNotWaitForASourceThatIgnoresItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &blockingSource{release: make(chan struct{})}
		c, logs := newTestConnector(t, newFakeDB("app", "p1"), src,
			WithRefreshInterval(time.Second), WithFetchTimeout(300*time.Millisecond))
		mustConnect(t, c)
		time.Sleep(1200 * time.Millisecond) // the background refresh is now stuck in the source
		if src.calls.Load() != 2 {
			t.Fatalf("%d source calls, want the background refresh's call in flight", src.calls.Load())
		}
		// The source hangs for 3 s; Close must not.
		time.AfterFunc(3*time.Second, func() { close(src.release) })
		start := time.Now()
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(start); waited > 300*time.Millisecond {
			t.Fatalf("Close waited %v for a source that ignores its context, want at most the fetch timeout (300ms)", waited)
		}
		if !strings.Contains(logs.String(), "ignores its context") && !strings.Contains(logs.String(), "did not return within the fetch timeout") {
			t.Error("no log line about the abandoned source call")
		}
		time.Sleep(3 * time.Second) // the source returns at last; its goroutine ends
	})
}

// A source call that ignores its context is abandoned at the fetch timeout;
// later refreshes are not stuck behind it.
func TestHangingSourceCallIsAbandonedAtTheFetchTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &blockingSource{release: make(chan struct{})}
		defer close(src.release)
		db := newFakeDB("app", "p1")
		c, _ := newTestConnector(t, db, src, WithFetchTimeout(300*time.Millisecond), WithRotationWait(5*time.Second))
		mustConnect(t, c)
		db.SetPassword("app", "p2") // the next Connect needs the store; the store hangs
		start := time.Now()
		_, err := c.Connect(context.Background())
		if !errors.Is(err, ErrCredentialRejected) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Connect = %v, want the rejection and the store's timeout", err)
		}
		if waited := time.Since(start); waited != 5*time.Second {
			t.Fatalf("Connect waited %v, want the rotation wait (5s)", waited)
		}
		// Every step was abandoned at its timeout and the next one started:
		// the store was asked again and again, not once.
		if got, st := src.calls.Load(), c.Stats(); got < 4 || st.AbandonedFetches < 3 {
			t.Fatalf("%d source calls, %d abandoned, in 5 s with a 300ms fetch timeout: later steps were stuck", got, st.AbandonedFetches)
		}
	})
}

func connectAllCtx(ctx context.Context, c *Connector, n int) (failed int64, first error) {
	var wg sync.WaitGroup
	var nfail atomic.Int64
	var once sync.Once
	for range n {
		wg.Go(func() {
			conn, err := c.Connect(ctx)
			if err != nil {
				nfail.Add(1)
				once.Do(func() { first = err })
				return
			}
			conn.Close()
		})
	}
	wg.Wait()
	return nfail.Load(), first
}

// A login whose password the server checked before an ALTER ROLE can
// report success after another login with the same credential was
// rejected: that success is no news about the database now, and must not
// mark the credential working again.
func TestASuccessThatStartedBeforeTheRejectionIsNotNews(t *testing.T) {
	db := newFakeDB("app", "p1")
	src := newFakeSource("app", "p1")
	held, release := make(chan struct{}), make(chan struct{})
	var hold atomic.Bool
	connect := func(cfg pq.Config) (driver.Connector, error) {
		inner, _ := db.Connector(cfg)
		return ConnectorFunc(func(ctx context.Context) (driver.Conn, error) {
			if cfg.Password == "p1" && hold.CompareAndSwap(true, false) {
				close(held) // the server has checked the password
				<-release
				return &testkit.FakeConn{User: cfg.User}, nil
			}
			return inner.Connect(ctx)
		}), nil
	}
	c, logs := newTestConnector(t, db, src, WithNewConnector(connect))
	mustConnect(t, c)

	hold.Store(true)
	done := make(chan error, 1)
	go func() {
		conn, err := c.connectSlow(context.Background(), nil, nil) // a login of the slow path, with p1 known to work
		if err == nil {
			conn.Close()
		}
		done <- err
	}()
	<-held
	db.SetPassword("app", "p2") // ALTER ROLE; the store still has p1
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Connect(ctx); !errors.Is(err, ErrCredentialRejected) {
		t.Fatalf("Connect after the ALTER ROLE = %v, want the rejection", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("the held login: %v", err)
	}
	c.mu.Lock()
	st := c.current.status
	c.mu.Unlock()
	if st != rejected || strings.Contains(logs.String(), "works again") {
		t.Fatalf("after a late success of a login begun before the rejection, p1 is %v; want it still rejected", st)
	}
}
