package rotating

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lib/pq"

	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets"
)

// leaseSource hands out a new role for every Fetch, as Vault's dynamic
// database roles do, whose sessions end lease after the fetch.
type leaseSource struct {
	db    *fakeDB
	lease time.Duration

	mu      sync.Mutex
	n       int
	fetched []time.Time
	fail    error
}

func (s *leaseSource) Fetch(context.Context) (secrets.Credential, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fetched = append(s.fetched, time.Now())
	if s.fail != nil {
		return secrets.Credential{}, s.fail
	}
	s.n++
	user := fmt.Sprintf("v-%d", s.n)
	s.db.SetPassword(user, "pw-"+user)
	end := time.Now().Add(s.lease)
	return secrets.Credential{Username: user, Password: "pw-" + user, Version: fmt.Sprintf("lease-%d", s.n),
		Expires: end, SessionsEnd: end}, nil
}

func (s *leaseSource) fetchTimes() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.fetched...)
}

func userOf(t *testing.T, conn driver.Conn) string {
	t.Helper()
	fc, ok := DriverConn(conn).(*testkit.FakeConn)
	if !ok {
		t.Fatalf("DriverConn(%T) is not the driver's connection", conn)
	}
	return fc.User
}

func TestCredentialWhoseSessionsEndIsReplacedAheadAndItsConnectionsRetired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db := newFakeDB("nobody", "x")
		src := &leaseSource{db: db, lease: 10 * time.Second}
		c, _ := newTestConnector(t, db, src, WithSessionMargin(2*time.Second), WithRefreshBeforeExpiry(2*time.Second))
		start := time.Now()

		first := mustConnect(t, c)
		if _, wrapped := first.(*testkit.FakeConn); wrapped || userOf(t, first) != "v-1" {
			t.Fatalf("the connection of a credential whose sessions end is %T for %s, want it wrapped, for v-1", first, userOf(t, first))
		}
		validator := first.(driver.Validator)

		// Retirement at 10s - 2s = 8s; the successor is fetched 2 to 3 s
		// (lead plus jitter) before it: between 5 and 6 s.
		time.Sleep(4900 * time.Millisecond)
		synctest.Wait()
		if n := len(src.fetchTimes()); n != 1 {
			t.Fatalf("%d fetches at 4.9s, want 1: the successor was fetched too early", n)
		}
		time.Sleep(1200 * time.Millisecond)
		synctest.Wait()
		times := src.fetchTimes()
		if len(times) != 2 {
			t.Fatalf("%d fetches at 6.1s, want 2: the successor was not fetched ahead of the retirement", len(times))
		}
		if at := times[1].Sub(start); at < 5*time.Second || at > 6*time.Second {
			t.Fatalf("the successor was fetched at %v, want 5..6s", at)
		}
		if !validator.IsValid() {
			t.Fatal("a connection was retired before its time")
		}

		// New logins move to the successor.
		if u := userOf(t, mustConnect(t, c)); u != "v-2" {
			t.Fatalf("a new login after the refresh used %s, want v-2", u)
		}
		time.Sleep(8*time.Second - time.Since(start))
		if validator.IsValid() {
			t.Fatal("a connection of the ended credential is still valid at its retirement")
		}
		if st := c.Stats(); st.AuthFailures != 0 || st.CredentialVersion != "lease-2" {
			t.Fatalf("Stats = %+v, want lease-2 in use and no rejected login", st)
		}
		first.Close() // database/sql closes it when it comes back to the pool
		if st := c.Stats(); st.RetiredConnections != 1 {
			t.Fatalf("Stats().RetiredConnections = %d, want 1", st.RetiredConnections)
		}
	})
}

func TestCredentialPastItsRetirementIsNotDialed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db := newFakeDB("nobody", "x")
		src := &leaseSource{db: db, lease: 10 * time.Second}
		c, _ := newTestConnector(t, db, src, WithSessionMargin(2*time.Second), WithRotationWait(time.Second))
		mustConnect(t, c)
		// The store goes down before the successor is fetched.
		storeDown := errors.New("vault sealed")
		src.mu.Lock()
		src.fail = storeDown
		src.mu.Unlock()
		time.Sleep(9 * time.Second) // past the retirement at 8 s
		dials := db.Dials()
		_, err := c.Connect(context.Background())
		if !errors.Is(err, ErrFetchFailed) || !errors.Is(err, storeDown) {
			t.Fatalf("Connect past the retirement with the store down = %v, want the store's error", err)
		}
		if db.Dials() != dials {
			t.Fatal("a login was made with a credential whose sessions are being retired")
		}
	})
}

func TestDriverOptionsAreChecked(t *testing.T) {
	db := newFakeDB("app", "p1")
	for name, opts := range map[string][]Option{
		"nil driver":              {WithDriver(nil)},
		"driver and NewConnector": {WithDriver(libpq{}), WithNewConnector(db.Connector)},
	} {
		if _, err := NewConnector(testDSN, newFakeSource("app", "p1"), opts...); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("%s: NewConnector = %v, want ErrInvalidOption", name, err)
		}
	}
	if _, err := NewConnector(testDSN, newFakeSource("app", "p1"), WithDriver(libpq{})); err != nil {
		t.Errorf("WithDriver(lib/pq): %v", err)
	}
}

// renewingSource is Vault's dynamic role with lease renewal: a Fetch while
// the lease can still be extended renews it (the same login, a later
// SessionsEnd); once a renewal would pass the lease's max TTL, Fetch reads a
// new role.
type renewingSource struct {
	db            *fakeDB
	lease, maxTTL time.Duration
	// firstRenewalDelay and renewalDelay, if set, delay the answer of the
	// first renewal and of the later ones (Vault slow, or down for a
	// while).
	firstRenewalDelay, renewalDelay time.Duration

	mu       sync.Mutex
	n        int
	created  time.Time
	renewals int
}

func (s *renewingSource) Fetch(ctx context.Context) (secrets.Credential, error) {
	s.mu.Lock()
	now := time.Now()
	var delay time.Duration
	if s.n == 0 || now.Add(s.lease).After(s.created.Add(s.maxTTL)) {
		s.n++
		s.created = now
		s.db.SetPassword(s.user(), "pw-"+s.user())
	} else {
		s.renewals++
		delay = s.renewalDelay
		if s.renewals == 1 && s.firstRenewalDelay > 0 {
			delay = s.firstRenewalDelay
		}
	}
	end := now.Add(s.lease) // from the request's send time, as Vault's source counts it
	cred := secrets.Credential{Username: s.user(), Password: "pw-" + s.user(), Version: fmt.Sprintf("lease-%d", s.n),
		Expires: end, SessionsEnd: end}
	s.mu.Unlock()
	if delay > 0 {
		if err := testkit.Sleep(ctx, delay); err != nil {
			return secrets.Credential{}, err
		}
	}
	return cred, nil
}

func (s *renewingSource) user() string { return fmt.Sprintf("v-%d", s.n) }

func (s *renewingSource) counts() (leases, renewals int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n, s.renewals
}

// TestRenewedLeaseMovesTheRetirement: a Fetch that returns the same login
// with a later SessionsEnd (a renewed lease) moves the retirement of that
// credential's connections, so that they live on while the lease is
// renewed and retire ahead of its final end.
func TestRenewedLeaseMovesTheRetirement(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db := newFakeDB("nobody", "x")
		src := &renewingSource{db: db, lease: 10 * time.Second, maxTTL: 30 * time.Second}
		c, _ := newTestConnector(t, db, src, WithSessionMargin(2*time.Second), WithRefreshBeforeExpiry(2*time.Second))
		start := time.Now()
		first := mustConnect(t, c)
		validator := first.(driver.Validator)

		// The first retirement would have been at 8 s; the refresh at 5..6 s
		// renews the lease instead.
		time.Sleep(9 * time.Second)
		synctest.Wait()
		if leases, renewals := src.counts(); leases != 1 || renewals != 1 {
			t.Fatalf("at 9s: %d leases and %d renewals, want 1 and 1", leases, renewals)
		}
		if !validator.IsValid() {
			t.Fatal("at 9s a connection of a renewed lease was retired at the lease's first end")
		}
		if u := userOf(t, mustConnect(t, c)); u != "v-1" {
			t.Fatalf("a new login at 9s used %s, want v-1 (its lease was renewed)", u)
		}

		// Renewals at about 5.5, 11 and 16.5 s; the one after would pass the
		// max TTL of 30 s, so the next lease is read at about 22 s, and the
		// old one's connections retire at its end (about 26.5 s) less the
		// margin.
		time.Sleep(24*time.Second - time.Since(start))
		synctest.Wait()
		if leases, renewals := src.counts(); leases != 2 || renewals < 2 || renewals > 3 {
			t.Fatalf("at 24s: %d leases and %d renewals, want 2 and 2..3", leases, renewals)
		}
		if u := userOf(t, mustConnect(t, c)); u != "v-2" {
			t.Fatalf("a new login at 24s used %s, want v-2", u)
		}
		if !validator.IsValid() {
			t.Fatal("at 24s the old lease's connection retired before its last end less the margin")
		}
		time.Sleep(28*time.Second - time.Since(start))
		if validator.IsValid() {
			t.Fatal("at 28s a connection of a lease that ended (at most 27.5 s) is still valid")
		}
		if st := c.Stats(); st.AuthFailures != 0 || st.CredentialVersion != "lease-2" {
			t.Fatalf("Stats = %+v, want lease-2 in use and no rejected login", st)
		}
	})
}

// TestRenewalAfterTheRetirement: a renewal whose answer comes after the
// credential's connections were retired (Vault slow or briefly down at the
// refresh) revives the lease: new logins use it at once and retire ahead of
// the renewed end, and the source is not called in a loop meanwhile. Before,
// the retired entry could not take the new end, no credential was usable,
// and every Connect asked the store again, which renewed the same lease
// again, until the lease's max TTL.
func TestRenewalAfterTheRetirement(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db := newFakeDB("nobody", "x")
		src := &renewingSource{db: db, lease: 10 * time.Second, maxTTL: time.Hour,
			firstRenewalDelay: 4 * time.Second, renewalDelay: 10 * time.Millisecond}
		c, _ := newTestConnector(t, db, src, WithSessionMargin(2*time.Second), WithRefreshBeforeExpiry(2*time.Second),
			WithFetchTimeout(5*time.Second))
		start := time.Now()
		first := mustConnect(t, c)
		validator := first.(driver.Validator)

		// The refresh at 5..6 s renews the lease, but the answer comes 4 s
		// later, after the retirement at 8 s.
		time.Sleep(10500 * time.Millisecond)
		synctest.Wait()
		if leases, renewals := src.counts(); leases != 1 || renewals != 1 {
			t.Fatalf("at 10.5s: %d leases and %d renewals, want 1 and 1", leases, renewals)
		}
		if validator.IsValid() {
			t.Error("at 10.5s the connection retired at 8 s is still valid")
		}
		before := c.Stats()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn, err := c.Connect(ctx)
		if err != nil {
			t.Fatalf("a login after the late renewal: %v", err)
		}
		if u := userOf(t, conn); u != "v-1" {
			t.Errorf("a login after the late renewal used %s, want v-1 (its lease was renewed)", u)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if n := c.Stats().Fetches - before.Fetches; n > 1 {
			t.Errorf("%d Fetches in the second after the late renewal, want at most 1", n)
		}
		// The renewal was sent at 5..6 s: the lease ends at 15..16 s, the
		// revived connections retire at 13..14 s, and the next renewal (on
		// time) comes at 11..12 s and moves them on.
		time.Sleep(14*time.Second + 100*time.Millisecond - time.Since(start))
		synctest.Wait()
		if leases, renewals := src.counts(); leases != 1 || renewals != 2 {
			t.Errorf("at 14.1s: %d leases and %d renewals, want 1 and 2", leases, renewals)
		}
		if !conn.(driver.Validator).IsValid() {
			t.Error("at 14.1s a connection of the renewed lease is retired")
		}
		if st := c.Stats(); st.AuthFailures != 0 {
			t.Errorf("%d rejected logins, want 0", st.AuthFailures)
		}
	})
}

// TestLoginThatOutlastsTheRetirement: a login that began while its
// credential was usable but finished after the credential's retirement (a
// slow login on a loaded server) is not handed out: its connection would
// be retired at its first use, and database/sql would fail the statement
// once its retries met the same. Connect closes it and looks again.
func TestLoginThatOutlastsTheRetirement(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db := newFakeDB("v-1", "pw-1")
		var slow atomic.Bool
		db.Gate = func(cfg pq.Config) {
			if cfg.User == "v-1" && slow.Load() {
				time.Sleep(time.Second)
			}
		}
		start := time.Now()
		src := newFakeSource("v-1", "pw-1")
		src.set(secrets.Credential{Username: "v-1", Password: "pw-1", Version: "lease-1", SessionsEnd: start.Add(10 * time.Second)})
		c, _ := newTestConnector(t, db, src, WithSessionMargin(2*time.Second), WithRefreshBeforeExpiry(2*time.Second),
			WithRotationWait(5*time.Second))
		mustConnect(t, c).Close()
		// The store is down at the refresh (5..6 s) and back at 8.2 s
		// with the next lease; v-1 retires at 8 s.
		src.setErr(errors.New("store down"))
		time.Sleep(7500 * time.Millisecond)
		slow.Store(true)
		go func() {
			time.Sleep(700 * time.Millisecond)
			db.SetPassword("v-2", "pw-2")
			src.set(secrets.Credential{Username: "v-2", Password: "pw-2", Version: "lease-2", SessionsEnd: time.Now().Add(10 * time.Second)})
			src.setErr(nil)
		}()
		conn, err := c.Connect(context.Background()) // v-1's login ends at 8.5 s
		if err != nil {
			t.Fatalf("Connect at 7.5s: %v", err)
		}
		defer conn.Close()
		if u, at := userOf(t, conn), time.Since(start); u != "v-2" || !conn.(driver.Validator).IsValid() {
			t.Errorf("Connect at 7.5s returned, at %v, a connection of %s (valid: %v); want one of v-2, valid",
				at, u, conn.(driver.Validator).IsValid())
		}
	})
}

// scheduledSource is a store that rotates the password on a schedule and
// says when (a Vault static role's ttl): every period, rotate (run by the
// test) changes the password in the database and in the store.
type scheduledSource struct {
	db     *fakeDB
	period time.Duration
	start  time.Time

	mu      sync.Mutex
	n       int
	fetches int
}

func (s *scheduledSource) Fetch(context.Context) (secrets.Credential, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fetches++
	next := s.start.Add(time.Duration(s.n+1) * s.period)
	return secrets.Credential{Username: "app", Password: fmt.Sprintf("pw-%d", s.n), Version: fmt.Sprint(s.n), NextRotation: next}, nil
}

func (s *scheduledSource) rotate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	s.db.SetPassword("app", fmt.Sprintf("pw-%d", s.n))
}

func (s *scheduledSource) fetchCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

// TestScheduledRotationIsFetchedWhenItIsDue: a credential whose store says
// when it rotates next (Credential.NextRotation) is fetched again just after
// that, once per rotation for the process, so that an application that
// logs in rarely moves to the new password before a login is rejected.
func TestScheduledRotationIsFetchedWhenItIsDue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const period, rotations = time.Minute, 10
		db := newFakeDB("app", "pw-0")
		src := &scheduledSource{db: db, period: period, start: time.Now()}
		c, _ := newTestConnector(t, db, src)
		mustConnect(t, c)
		go func() {
			for range rotations {
				time.Sleep(period)
				src.rotate()
			}
		}()
		// A login every 7 s, as a pool that keeps its connections would.
		for range int(rotations*period/(7*time.Second)) + 1 {
			time.Sleep(7 * time.Second)
			mustConnect(t, c)
		}
		synctest.Wait()
		// 1 first fetch and 1 per rotation; one more for each login that
		// landed between a rotation and the fetch after it (within 1 s).
		if n := src.fetchCount(); n < 1+rotations || n > 1+rotations+2 {
			t.Fatalf("%d fetches for %d scheduled rotations, want %d..%d", n, rotations, 1+rotations, 1+rotations+2)
		}
		if st := c.Stats(); st.AuthFailures > 2 {
			t.Fatalf("%d rejected logins over %d scheduled rotations, want at most 2: the rotation was not fetched when due", st.AuthFailures, rotations)
		}
	})
}
