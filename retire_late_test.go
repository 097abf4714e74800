package rotating

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pgrotate/rotating/secrets"
)

// slowRenewals is a renewingSource whose calls take call (at least a
// millisecond, as a network call does), and the second one slow more: a
// Vault that answers one renewal late.
type slowRenewals struct {
	*renewingSource
	call, slow time.Duration

	mu    sync.Mutex
	calls int
}

func (s *slowRenewals) Fetch(ctx context.Context) (secrets.Credential, error) {
	s.mu.Lock()
	s.calls++
	d := s.call
	if s.calls == 2 {
		d = s.slow
	}
	s.mu.Unlock()
	time.Sleep(d)
	return s.renewingSource.Fetch(ctx)
}

func (s *slowRenewals) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// TestLeaseRenewedAfterItsRetirement: a renewal that comes back after the
// lease's connections were retired (Vault slower than the refresh lead) is
// still a live lease: new logins use it again, with a retirement of their
// own at the renewed end, instead of the connector renewing the same lease
// over and over while every Connect waits (found by
// secrets/vault/benchmarks on a loaded machine: 185 renewals of one lease in
// a few seconds).
func TestLeaseRenewedAfterItsRetirement(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db := newFakeDB("nobody", "x")
		src := &slowRenewals{renewingSource: &renewingSource{db: db, lease: 10 * time.Second, maxTTL: time.Hour},
			call: time.Millisecond, slow: 4 * time.Second}
		c, _ := newTestConnector(t, db, src, WithSessionMargin(2*time.Second), WithRefreshBeforeExpiry(2*time.Second))
		start := time.Now()
		first := mustConnect(t, c)
		// The lease's connections retire at 8 s; its renewal, started at
		// 5..6 s, returns at 9..10 s.
		time.Sleep(11 * time.Second)
		synctest.Wait()
		if leases, renewals := src.counts(); leases != 1 || renewals != 1 {
			t.Fatalf("at 11s: %d leases, %d renewals; want 1 and 1", leases, renewals)
		}
		if first.(interface{ IsValid() bool }).IsValid() {
			t.Fatal("at 11s the first connection was not retired at 8s")
		}
		begin := time.Now()
		conn, err := c.Connect(context.Background())
		if err != nil {
			t.Fatalf("Connect after the late renewal: %v (%d source calls)", err, src.count())
		}
		if u := userOf(t, conn); u != "v-1" || time.Since(begin) != 0 {
			t.Errorf("Connect used %s after %v, want v-1 (renewed) at once", u, time.Since(begin))
		}
		// From there on, renewals at the normal pace: one per 5..6 s.
		time.Sleep(30*time.Second - time.Since(start))
		synctest.Wait()
		if n, leases := src.count(), c.Stats().CredentialVersion; n < 4 || n > 7 || leases != "lease-1" {
			t.Errorf("at 30s: %d source calls, %s in use; want 4..7 (renewals every 5..6 s) and lease-1", n, leases)
		}
		if st := c.Stats(); st.AuthFailures != 0 {
			t.Errorf("%d logins rejected, want 0", st.AuthFailures)
		}
	})
}
