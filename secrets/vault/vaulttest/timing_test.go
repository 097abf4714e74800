package vaulttest

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/vault/api"
)

// These tests run the server's timing (lease ends, renewal caps, token
// expiry, rotation schedules, retries) on testing/synctest's fake clock,
// through the real vault/api client, with a fake in place of PostgreSQL:
// the tests against a real PostgreSQL check the database effects.

// fakeEvent is one call to the fake database.
type fakeEvent struct {
	at    time.Time
	kind  string // create, alter, revoke
	user  string
	stmts []string
}

// fakeDB records calls; the next fail* calls of a kind fail.
type fakeDB struct {
	mu          sync.Mutex
	events      []fakeEvent
	failRevokes int
	failAlters  int
}

// nameIn returns the first double-quoted identifier in stmts.
func nameIn(stmts []string) string {
	for _, s := range stmts {
		if _, rest, ok := strings.Cut(s, `"`); ok {
			name, _, _ := strings.Cut(rest, `"`)
			return name
		}
	}
	return ""
}

func (f *fakeDB) record(kind, user string, stmts []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, fakeEvent{at: time.Now(), kind: kind, user: user, stmts: stmts})
}

func (f *fakeDB) create(_ context.Context, stmts []string) error {
	f.record("create", nameIn(stmts), stmts)
	return nil
}

func (f *fakeDB) alter(_ context.Context, stmts []string) error {
	f.record("alter", nameIn(stmts), stmts)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failAlters > 0 {
		f.failAlters--
		return errors.New("fake: alter failed")
	}
	return nil
}

func (f *fakeDB) revoke(_ context.Context, user string, _ []string, _ bool) revokeResult {
	f.record("revoke", user, nil)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failRevokes > 0 {
		f.failRevokes--
		return revokeResult{revocationError: errors.New("fake: revoke failed")}
	}
	return revokeResult{}
}

// times returns when calls of kind for user were made, as offsets from t0.
func (f *fakeDB) times(kind, user string, t0 time.Time) []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []time.Duration
	for _, e := range f.events {
		if e.kind == kind && (user == "" || e.user == user) {
			out = append(out, e.at.Sub(t0))
		}
	}
	return out
}

// inProcess is a RoundTripper that serves requests with the server's
// handler in the caller's goroutine: no network, so that the fake clock
// advances whenever every goroutine waits on it.
type inProcess struct{ h http.Handler }

func (p inProcess) RoundTrip(r *http.Request) (resp *http.Response, err error) {
	defer func() {
		if v := recover(); v != nil {
			resp, err = nil, errors.New("inProcess: handler aborted")
		}
	}()
	rec := httptest.NewRecorder()
	p.h.ServeHTTP(rec, r)
	resp = rec.Result()
	resp.Request = r
	return resp, nil
}

// fakeServer returns a server on a fake database and a client for it
// with token (root if empty).
func fakeServer(t *testing.T) (*Server, *fakeDB) {
	t.Helper()
	s, err := NewServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeDB{}
	s.db = f
	t.Cleanup(func() { s.Close() })
	return s, f
}

func fakeClient(t *testing.T, s *Server, token string) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: "http://vaulttest.invalid", HttpClient: &http.Client{Transport: inProcess{s}}, MaxRetries: 0})
	if err != nil {
		t.Fatal(err)
	}
	if token == "" {
		token = s.RootToken()
	}
	c.SetToken(token)
	return c
}

func TestLeaseTimeline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, f := fakeServer(t)
		if err := s.SetRole("app", DynamicRole{DefaultTTL: 3 * time.Second, MaxTTL: 10 * time.Second}); err != nil {
			t.Fatal(err)
		}
		c := fakeClient(t, s, "")
		t0 := time.Now()
		renewed, err := c.Logical().Read("database/creds/app")
		if err != nil {
			t.Fatal(err)
		}
		alone, err := c.Logical().Read("database/creds/app")
		if err != nil {
			t.Fatal(err)
		}

		// Renewals every 2 s: each extends by the default TTL until the
		// max caps it.
		wantDurations := []int{3, 3, 3, 2, 0}
		for i, at := range []time.Duration{2 * time.Second, 4 * time.Second, 6 * time.Second, 8 * time.Second, 9500 * time.Millisecond} {
			time.Sleep(time.Until(t0.Add(at)))
			r, err := c.Sys().Renew(renewed.LeaseID, 0)
			if err != nil {
				t.Fatalf("renewal %d: %v", i+1, err)
			}
			if r.LeaseDuration != wantDurations[i] {
				t.Errorf("renewal %d at %v: lease_duration %d, want %d", i+1, time.Since(t0), r.LeaseDuration, wantDurations[i])
			}
			if capped := len(r.Warnings) > 0; capped != (i >= 3) {
				t.Errorf("renewal %d: warnings %q", i+1, r.Warnings)
			}
		}
		l, _ := s.Lease(renewed.LeaseID)
		if l.Renewals != 5 || !l.ExpireTime.Equal(t0.Add(10*time.Second)) || !l.ValidUntil.Equal(t0.Add(15*time.Second)) {
			t.Errorf("after the renewals: %+v", l)
		}

		time.Sleep(time.Until(t0.Add(11 * time.Second)))
		synctest.Wait()
		// The unrenewed lease ended at its TTL, the renewed one at its
		// max: exactly, on the fake clock.
		la, _ := s.Lease(alone.LeaseID)
		lr, _ := s.Lease(renewed.LeaseID)
		if got := la.EndedAt.Sub(t0); got != 3*time.Second || la.EndReason != EndExpired || la.RevokedAt.IsZero() {
			t.Errorf("unrenewed lease: ended at %v (%+v), want 3s", got, la)
		}
		if got := lr.EndedAt.Sub(t0); got != 10*time.Second || lr.EndReason != EndExpired {
			t.Errorf("renewed lease: ended at %v, want 10s", got)
		}
		if got := f.times("revoke", "", t0); len(got) != 2 || got[0] != 3*time.Second || got[1] != 10*time.Second {
			t.Errorf("revocations at %v, want [3s 10s]", got)
		}
		// Each renewal moved VALID UNTIL to its new end plus 5 s.
		alters := f.times("alter", lr.Username, t0)
		if len(alters) != 5 {
			t.Errorf("%d ALTER ROLE for the renewed lease, want 5", len(alters))
		}
		f.mu.Lock()
		var last fakeEvent
		for _, e := range f.events {
			if e.kind == "alter" && e.user == lr.Username {
				last = e
			}
		}
		f.mu.Unlock()
		if want := t0.Add(15 * time.Second).UTC().Format(expirationFormat); !strings.Contains(last.stmts[0], want) {
			t.Errorf("the last renewal ran %q, want VALID UNTIL %s", last.stmts[0], want)
		}
		_, err = c.Sys().Renew(renewed.LeaseID, 0)
		var re *api.ResponseError
		if !errors.As(err, &re) || re.StatusCode != 400 {
			t.Errorf("renewal after the end: %v", err)
		}
	})
}

func TestTokenTimeline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, f := fakeServer(t)
		if err := s.SetRole("app", DynamicRole{DefaultTTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		tok, err := s.CreateToken(TokenOptions{TTL: 3 * time.Second, ExplicitMaxTTL: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		c := fakeClient(t, s, tok)
		lease, err := c.Logical().Read("database/creds/app")
		if err != nil {
			t.Fatal(err)
		}

		time.Sleep(2 * time.Second)
		r, err := c.Auth().Token().RenewSelf(0)
		if err != nil {
			t.Fatal(err)
		}
		if r.Auth.LeaseDuration != 3 || len(r.Warnings) != 0 {
			t.Errorf("renew-self at 2s: %d %q, want 3 and no warning", r.Auth.LeaseDuration, r.Warnings)
		}
		time.Sleep(2 * time.Second)
		r, err = c.Auth().Token().RenewSelf(0)
		if err != nil {
			t.Fatal(err)
		}
		if r.Auth.LeaseDuration != 1 || len(r.Warnings) != 1 {
			t.Errorf("renew-self at 4s: %d %q, want 1 (capped) and a warning", r.Auth.LeaseDuration, r.Warnings)
		}

		time.Sleep(time.Until(t0.Add(5 * time.Second)))
		synctest.Wait()
		l, _ := s.Lease(lease.LeaseID)
		if got := l.EndedAt.Sub(t0); got != 5*time.Second || l.EndReason != EndTokenExpired {
			t.Errorf("the token's lease ended at %v (%s), want 5s (token expired)", got, l.EndReason)
		}
		if got := f.times("revoke", "", t0); len(got) != 1 || got[0] != 5*time.Second {
			t.Errorf("revocations at %v, want [5s]", got)
		}
		_, err = c.Auth().Token().LookupSelf()
		var re *api.ResponseError
		if !errors.As(err, &re) || re.StatusCode != 403 {
			t.Errorf("lookup-self of the expired token: %v, want 403", err)
		}
	})
}

func TestRotationSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, f := fakeServer(t)
		t0 := time.Now()
		if err := s.SetStaticRole(context.Background(), "st", StaticRole{Username: "app_user", RotationPeriod: 5 * time.Second}); err != nil {
			t.Fatal(err)
		}
		c := fakeClient(t, s, "")
		time.Sleep(7 * time.Second)
		if _, err := c.Logical().Write("database/rotate-role/st", nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second) // t0+9s
		sc, err := c.Logical().Read("database/static-creds/st")
		if err != nil {
			t.Fatal(err)
		}
		if ttl, _ := sc.Data["ttl"].(interface{ Int64() (int64, error) }).Int64(); ttl != 3 {
			t.Errorf("ttl at 9s %v, want 3 (the on-demand rotation at 7s moved the next to 12s)", sc.Data["ttl"])
		}
		time.Sleep(time.Until(t0.Add(18 * time.Second)))
		synctest.Wait()
		want := []time.Duration{0, 5 * time.Second, 7 * time.Second, 12 * time.Second, 17 * time.Second}
		got := f.times("alter", "app_user", t0)
		if len(got) != len(want) {
			t.Fatalf("rotations at %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("rotations at %v, want %v", got, want)
				break
			}
		}
		if st, _ := s.StaticRoleState("st"); st.Rotations != 5 || !st.NextRotation.Equal(t0.Add(22*time.Second)) {
			t.Errorf("state: %+v", st)
		}
	})
}

// Failed revocations and rotations are retried, as Vault retries them.
func TestRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, f := fakeServer(t)
		if err := s.SetRole("app", DynamicRole{DefaultTTL: time.Second}); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		if err := s.SetStaticRole(context.Background(), "st", StaticRole{Username: "app_user", RotationPeriod: 3 * time.Second}); err != nil {
			t.Fatal(err)
		}
		f.mu.Lock()
		f.failRevokes, f.failAlters = 2, 1
		f.mu.Unlock()
		c := fakeClient(t, s, "")
		lease, err := c.Logical().Read("database/creds/app")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		if l, _ := s.Lease(lease.LeaseID); !l.Ended || l.RevokeError == "" || !l.RevokedAt.IsZero() {
			t.Errorf("after a failed revocation: %+v", l)
		}
		time.Sleep(time.Until(t0.Add(20 * time.Second)))
		synctest.Wait()
		// Revocation at 1s fails, again 2s later, then succeeds 4s later.
		if got := f.times("revoke", "", t0); len(got) != 3 || got[0] != time.Second || got[1] != 3*time.Second || got[2] != 7*time.Second {
			t.Errorf("revocation attempts at %v, want [1s 3s 7s]", got)
		}
		if l, _ := s.Lease(lease.LeaseID); l.RevokeError != "" || !l.RevokedAt.Equal(t0.Add(7*time.Second)) {
			t.Errorf("after the retries: %+v", l)
		}
		// The rotation due at 3s fails and is retried 10s later, then
		// runs on its period again.
		if got := f.times("alter", "app_user", t0); len(got) != 5 || got[1] != 3*time.Second || got[2] != 13*time.Second || got[3] != 16*time.Second || got[4] != 19*time.Second {
			t.Errorf("rotations at %v, want [0s 3s 13s 16s 19s]", got)
		}
	})
}
