package gcpsmintegration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/internal/testkit/drivers"
)

// TestRotationUnderLoad rotates the role's password five times while 32
// workers insert rows, every statement on a new login, in each order a
// rotation job may take:
//
//   - store first: AddSecretVersion, then (100 ms later, logins going on
//     with the cached credential, still valid) ALTER ROLE. The first login
//     the database rejects makes the connector read the store once, for
//     all callers: exactly one AccessSecretVersion per rotation.
//   - database first: ALTER ROLE, then AddSecretVersion 300 ms later. For
//     those 300 ms no valid credential is in the store; the rejected
//     logins wait, the connector re-reading the store with backoff, and
//     go on once the new version is there. The number of reads is
//     measured and bounded by the backoff schedule.
//
// No statement may fail and no acknowledged row may be lost. It runs
// through each driver.
func TestRotationUnderLoad(t *testing.T) {
	for _, d := range drivers.All {
		t.Run(d.Name, func(t *testing.T) {
			for _, storeFirst := range []bool{true, false} {
				order := "database first"
				if storeFirst {
					order = "store first"
				}
				t.Run(order, func(t *testing.T) { testRotationUnderLoad(t, d, storeFirst) })
			}
		})
	}
}

func testRotationUnderLoad(t *testing.T, d drivers.Driver, storeFirst bool) {
	const (
		workers   = 32
		rotations = 5
		pause     = 100 * time.Millisecond
		gap       = 300 * time.Millisecond // database first: ALTER ROLE to AddSecretVersion
	)
	e := newEnv(t)
	role, pw := e.newRole(t)
	secret := e.newSecret(t, role, pw)
	c, db := e.newApp(t, secret, d.With()...)
	db.SetMaxIdleConns(0) // every statement logs in anew

	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	table := createTable(ctx, t, db)
	load := testkit.StartInserts(ctx, db, table, workers, 100_000, pause)
	waitAcks(ctx, t, load, workers, "the first inserts")

	var calls []int64
	for r := 1; r <= rotations; r++ {
		before, failedBefore := c.Stats(), load.Failed.Load()
		load.TakeSlowest()
		e.sm.ResetCalls()
		next := e.newPassword(t)
		var version string
		if storeFirst {
			version = e.addVersion(ctx, t, secret, e.payload(t, role, next))
			if testkit.Sleep(ctx, 100*time.Millisecond) != nil {
				t.Fatal(ctx.Err())
			}
			if err := e.pg.SetPassword(ctx, role, next); err != nil {
				t.Fatal(err)
			}
		} else {
			if err := e.pg.SetPassword(ctx, role, next); err != nil {
				t.Fatal(err)
			}
			if testkit.Sleep(ctx, gap) != nil {
				t.Fatal(ctx.Err())
			}
			version = e.addVersion(ctx, t, secret, e.payload(t, role, next))
		}
		testkit.WaitFor(ctx, t, 30*time.Second, fmt.Sprintf("the connector to take up version %s", version), func() bool {
			return c.Stats().CredentialVersion == version
		})
		// Statements on the new credential, then a pause long enough for a
		// late, redundant read of the store to show up.
		waitAcks(ctx, t, load, workers, fmt.Sprintf("inserts after rotation %d", r))
		if testkit.Sleep(ctx, 300*time.Millisecond) != nil {
			t.Fatal(ctx.Err())
		}
		n := e.accessCalls()
		calls = append(calls, n)
		after := c.Stats()
		t.Logf("rotation %d: version %s; %d AccessSecretVersion; rejected logins %d, recoveries %d, give-ups %d, failed statements %d, slowest statement %v",
			r, version, n, after.AuthFailures-before.AuthFailures, after.Recoveries-before.Recoveries,
			after.RecoveryFailures-before.RecoveryFailures, load.Failed.Load()-failedBefore, load.TakeSlowest().Round(time.Millisecond))
		if after.AuthFailures == before.AuthFailures {
			t.Errorf("rotation %d: no login was rejected, so the rotation was not exercised", r)
		}
		if moves := after.CredentialGeneration - before.CredentialGeneration; moves != 1 {
			t.Errorf("rotation %d: new logins moved %d times, want once", r, moves)
		}
		// Store first: one read for the rotation. Database first: the
		// reads during the gap, at most one per backoff step (100 ms
		// doubling: 0, 100, 300 ms, then 700 ms) and the one that finds
		// the new version; a loaded machine stretches the gap, not the
		// count.
		if storeFirst && n != 1 || !storeFirst && (n < 1 || n > 6) {
			t.Errorf("rotation %d: %d AccessSecretVersion requests, want %s", r, n, map[bool]string{true: "exactly 1", false: "1 to 6"}[storeFirst])
		}
	}
	load.Finish()
	if ctx.Err() != nil {
		t.Fatalf("test ran out of time: %v", ctx.Err())
	}
	res := check(ctx, t, e, load)
	st := c.Stats()
	t.Logf("%s, store first %v: %d workers, %d rotations: %v; AccessSecretVersion per rotation %v; stats: fetches %d, fetch errors %d, changes %d, rejected logins %d, recoveries %d, give-ups %d",
		d.Name, storeFirst, workers, rotations, res, calls, st.Fetches, st.FetchErrors, st.CredentialChanges, st.AuthFailures, st.Recoveries, st.RecoveryFailures)
	if st.CredentialChanges != rotations || st.RecoveryFailures != 0 {
		t.Errorf("Stats(): %d credential changes, %d give-ups; want %d and 0", st.CredentialChanges, st.RecoveryFailures, rotations)
	}
	e.assertNoPassword(t, "the application's log", e.logs.String())
}
