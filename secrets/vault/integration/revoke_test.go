package vaultintegration

import (
	"context"
	"testing"
	"time"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/internal/testkit/drivers"
	"github.com/pgrotate/rotating/secrets/vault"
	"github.com/pgrotate/rotating/secrets/vault/vaulttest"
)

// TestLeaseRevokedEarly revokes the lease in use long before its end, as
// an operator's revoke-prefix or a lost token does, while 16 workers
// insert through a normal pool. The revocation revokes the role's
// privileges, ends its sessions (pg_terminate_backend, as operators'
// revocation statements do; Vault's own leave them running without
// privileges) and drops it. The statements running on those sessions, or
// sent on one of them before the pool notices it is dead, fail: at most one
// per session of the role at the revocation. The next logins are rejected
// (the role is gone), which makes the connector read a new lease; from
// then on no statement fails. It runs through each driver: lib/pq turns
// the server's FATAL 57P01 into driver.ErrBadConn (database/sql then
// retries the statement on another connection), pgx returns it.
func TestLeaseRevokedEarly(t *testing.T) {
	t.Parallel()
	for _, d := range drivers.All {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			testLeaseRevokedEarly(t, d)
		})
	}
}

func testLeaseRevokedEarly(t *testing.T, d drivers.Driver) {
	const workers = 16
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	pg := pgtest.Shared(t)
	e := newEnv(t, pg)
	table := e.newTable(t)
	// A lease that would last a minute: nothing but the revocation ends it.
	if err := e.srv.SetRole("app", dynamicRole(table, time.Minute, 2*time.Minute, false)); err != nil {
		t.Fatal(err)
	}
	src, err := vault.DynamicRole(e.client(t, e.token(t, vaulttest.TokenOptions{TTL: time.Hour})), "", "app")
	if err != nil {
		t.Fatal(err)
	}
	c, db := e.open(t, src, d.With(rotating.WithSessionMargin(5*time.Second), rotating.WithRefreshBeforeExpiry(5*time.Second))...)
	db.SetMaxIdleConns(workers)

	load := testkit.StartInserts(ctx, db, table, workers, 1<<30, 0)
	load.WaitAcks(ctx, t, 10*workers, "the first inserts")
	if err := testkit.Sleep(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	leases := e.srv.Leases()
	if len(leases) != 1 {
		t.Fatalf("%d leases before the revocation, want 1", len(leases))
	}
	old := leases[0]
	sessions := sessionsOf(ctx, t, pg, old.Username)
	failedBefore, before := load.Failed.Load(), c.Stats()
	revokedAt := time.Now()
	if err := e.srv.RevokeLease(ctx, old.ID); err != nil {
		t.Fatal(err)
	}
	revoked, _ := e.srv.Lease(old.ID)
	// The connector has moved on once a new lease's login works.
	var recovered time.Time
	testkit.WaitFor(ctx, t, 30*time.Second, "a new lease in use", func() bool {
		st := c.Stats()
		if st.CredentialVersion != old.ID && st.CredentialVersion != "" && st.Recoveries > before.Recoveries {
			recovered = time.Now()
			return true
		}
		return false
	})
	// Statements already sent when the connector moved on may still
	// fail; give them a second, then count.
	if err := testkit.Sleep(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	failedAtRevocation := load.Failed.Load() - failedBefore
	okAfter := load.OK.Load()
	if err := testkit.Sleep(ctx, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	load.Finish()
	failedAfter := load.Failed.Load() - failedBefore - failedAtRevocation
	st := c.Stats()

	res, err := load.Verify(ctx, pg.Admin())
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range res.FirstErrors {
		e.noteError(err)
	}
	codes := map[string]int{}
	for _, err := range res.FirstErrors {
		codes[d.SQLState(err)]++
	}
	t.Logf("%s, %d workers; lease revoked %v after it was read, with %d sessions of its role open (%d counted by Vault at the revocation): "+
		"%d statements failed then (first errors by SQLSTATE: %v), %d after the connector moved on (%d statements acknowledged since); "+
		"the connector used a new lease %v after the revocation; %d rejected logins, %d reads, %d pending fetches, %d renewals; "+
		"%d statements, %d rows acknowledged, %d lost",
		d.Name, workers, revokedAt.Sub(old.IssueTime).Round(time.Millisecond), sessions, revoked.SessionsAtEnd,
		failedAtRevocation, codes, failedAfter, load.OK.Load()-okAfter,
		recovered.Sub(revokedAt).Round(time.Millisecond), st.AuthFailures-before.AuthFailures, e.srv.Calls(vaulttest.OpCreds),
		st.PendingFetches, e.srv.Calls(vaulttest.OpLeaseRenew), res.Acknowledged+res.Failures, res.Acknowledged, res.Lost)

	if revoked.EndReason != vaulttest.EndRevokedEarly || revoked.RevokedAt.IsZero() {
		t.Errorf("lease %s: %+v, want it revoked early", old.ID, revoked)
	}
	// Only the statements on the revoked role's sessions may fail, each
	// session at most once (the pool then drops it).
	if limit := int64(max(sessions, revoked.SessionsAtEnd)); failedAtRevocation > limit {
		t.Errorf("%d statements failed at the revocation, more than the %d sessions of the revoked role", failedAtRevocation, limit)
	}
	if failedAfter != 0 {
		t.Errorf("%d statements failed after the connector moved to a new lease, want 0", failedAfter)
	}
	if res.Lost != 0 || res.Extra != 0 {
		t.Errorf("%d acknowledged rows lost, %d rows not acknowledged", res.Lost, res.Extra)
	}
	if n := e.srv.Calls(vaulttest.OpCreds); n != 2 {
		t.Errorf("%d leases read, want 2: the first and one after the revocation", n)
	}
	if st.RecoveryFailures != 0 {
		t.Errorf("%d Connects gave up after the revocation, want 0", st.RecoveryFailures)
	}
	if n, checked := e.watch.sessionsAfterEnd(old.ID); !checked || n != 0 {
		t.Errorf("sessions of the revoked role found after its revocation: %d (checked: %v)", n, checked)
	}
	for _, v := range e.watch.violations() {
		t.Error(v)
	}
}
