package vaulttest_test

import (
	"sync"
	"testing"
	"time"

	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets/vault/vaulttest"
)

// Many leases made, renewed and ended at once, on the same table's grants:
// no catalog conflict ("tuple concurrently updated"), every role dropped,
// every revocation prompt.
func TestConcurrentLeases(t *testing.T) {
	t.Parallel()
	srv, pg := start(t)
	table := newTable(t, pg)
	if err := srv.SetRole("app", grantRole(table, 2*time.Second, 4*time.Second)); err != nil {
		t.Fatal(err)
	}
	const workers, rounds = 16, 2
	c := client(t, srv, appToken(t, srv, vaulttest.TokenOptions{}))
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds*2)
	for range workers {
		wg.Go(func() {
			for range rounds {
				s, err := c.Logical().ReadWithContext(t.Context(), "database/creds/app")
				if err != nil {
					errs <- err
					return
				}
				if _, err := c.Sys().RenewWithContext(t.Context(), s.LeaseID, 0); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a request failed: %v", err)
	}
	testkit.WaitFor(t.Context(), t, 60*time.Second, "every lease's revocation", func() bool {
		for _, l := range srv.Leases() {
			if l.RevokedAt.IsZero() {
				return false
			}
		}
		return true
	})
	var worst time.Duration
	leases := srv.Leases()
	for _, l := range leases {
		if l.RevokeError != "" || pgRole(t, pg, l.Username).exists {
			t.Errorf("lease %s: %+v", l.ID, l)
		}
		worst = max(worst, l.RevokedAt.Sub(l.ExpireTime))
	}
	t.Logf("%d leases made and renewed by %d workers at once; slowest revocation finished %v after its lease's end", len(leases), workers, worst)
	if len(leases) != workers*rounds || worst > 5*time.Second {
		t.Errorf("%d leases (want %d), slowest revocation %v after the end (want at most 5s)", len(leases), workers*rounds, worst)
	}
	if n := srv.Calls(vaulttest.OpLeaseRenew); n != workers*rounds {
		t.Errorf("Calls(OpLeaseRenew) = %d, want %d", n, workers*rounds)
	}
}
