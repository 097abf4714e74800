package azkvintegration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/internal/testkit/drivers"
	"github.com/pgrotate/rotating/secrets/azkv/azkvtest"
)

// TestRotationUnderLoad rotates the role's password five times while 32
// workers insert rows, every statement on a new login, in the two orders a
// runbook may take:
//
//   - vault first: the new version is added with SetSecret, and the
//     statements go on for 300 ms with the cached password, which still
//     works, before ALTER ROLE changes it. The application must make no
//     GetSecret request before the ALTER ROLE and exactly one after it.
//   - database first: ALTER ROLE, then 500 ms during which the vault still
//     holds the old password and logins are refused, then SetSecret. The
//     connector holds the statements that need a login meanwhile and asks
//     the vault once per backoff step (100 ms, doubling) until the new
//     version is there: at most six GetSecret requests. (Usually two or
//     three; one when no login was refused until the new version was in
//     the vault, which a loaded machine makes possible.)
//
// No statement may fail and no acknowledged row may be lost, and after
// each rotation the connector must use the new version.
func TestRotationUnderLoad(t *testing.T) {
	for _, d := range drivers.All {
		for _, vaultFirst := range []bool{true, false} {
			name := "database first"
			if vaultFirst {
				name = "vault first"
			}
			t.Run(d.Name+"/"+name, func(t *testing.T) { testRotationUnderLoad(t, d, vaultFirst) })
		}
	}
}

func testRotationUnderLoad(t *testing.T, d drivers.Driver, vaultFirst bool) {
	const (
		workers   = 32
		rotations = 5
		pause     = 100 * time.Millisecond
		// Vault first: how long the statements run with the vault ahead
		// of the database.
		ahead = 300 * time.Millisecond
		// Database first: how long the vault lags behind the database.
		window = 500 * time.Millisecond
		// Database first: GetSecret requests a rotation may cost: one when
		// the first login is refused, one per backoff step (100, 200, 400
		// ms after it, jittered) while the vault still holds the old
		// password, and the one that finds the new version.
		maxCallsDatabaseFirst = 6
	)
	e := newEnv(t)
	role, pw := e.newRole(t)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	e.setSecret(ctx, t, e.secretJSON(t, role, pw))

	c, db := e.newApp(t, d)
	db.SetMaxIdleConns(0) // every statement logs in anew
	table := createTable(ctx, t, db)
	load := testkit.StartInserts(ctx, db, table, workers, 100_000, pause)
	waitAcks(ctx, t, load, workers, "the first inserts")

	var calls []int64
	for i := 1; i <= rotations; i++ {
		newPW := e.newPassword(t)
		failedBefore, before := load.Failed.Load(), c.Stats()
		load.TakeSlowest()
		e.kv.ResetCalls()
		var version string
		if vaultFirst {
			version = e.setSecret(ctx, t, e.secretJSON(t, role, newPW))
			if err := testkit.Sleep(ctx, ahead); err != nil {
				t.Fatal(err)
			}
			if n := e.kv.Calls(azkvtest.OpGetSecret); n != 0 {
				t.Errorf("rotation %d: %d GetSecret requests while the cached password still worked, want 0", i, n)
			}
			if err := e.pg.SetPassword(ctx, role, newPW); err != nil {
				t.Fatalf("ALTER ROLE: %v", err)
			}
		} else {
			if err := e.pg.SetPassword(ctx, role, newPW); err != nil {
				t.Fatalf("ALTER ROLE: %v", err)
			}
			if err := testkit.Sleep(ctx, window); err != nil {
				t.Fatal(err)
			}
			version = e.setSecret(ctx, t, e.secretJSON(t, role, newPW))
		}
		testkit.WaitFor(ctx, t, 30*time.Second, fmt.Sprintf("the connector to use version %s", version), func() bool {
			return c.Stats().CredentialVersion == version
		})
		// Statements on the new credential, then a pause long enough for a
		// late, redundant request to show up.
		waitAcks(ctx, t, load, workers, fmt.Sprintf("inserts after rotation %d", i))
		if err := testkit.Sleep(ctx, 200*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		n := e.kv.Calls(azkvtest.OpGetSecret)
		calls = append(calls, n)
		after := c.Stats()
		t.Logf("rotation %d: %d GetSecret requests, %d challenges; rejected logins %d, fetches %d, recoveries %d, give-ups %d, failed statements %d, slowest statement %v",
			i, n, e.kv.Challenges(), after.AuthFailures-before.AuthFailures, after.Fetches-before.Fetches,
			after.Recoveries-before.Recoveries, after.RecoveryFailures-before.RecoveryFailures,
			load.Failed.Load()-failedBefore, load.TakeSlowest().Round(time.Millisecond))
		switch {
		case vaultFirst && n != 1:
			t.Errorf("rotation %d: %d GetSecret requests, want exactly 1", i, n)
		case !vaultFirst && (n < 1 || n > maxCallsDatabaseFirst):
			t.Errorf("rotation %d: %d GetSecret requests, want 1 to %d (the vault lagged %v)", i, n, maxCallsDatabaseFirst, window)
		}
		if e.kv.Challenges() != 0 {
			t.Errorf("rotation %d: %d authentication challenges, want 0 (the client keeps its token)", i, e.kv.Challenges())
		}
	}
	load.Finish()
	if ctx.Err() != nil {
		t.Fatalf("test ran out of time: %v", ctx.Err())
	}
	res := verify(ctx, t, load, e.pg)
	st := c.Stats()
	order := "database first, vault " + window.String() + " later"
	if vaultFirst {
		order = "vault first, database " + ahead.String() + " later"
	}
	t.Logf("%s, %s: %d workers, %d rotations: %v; GetSecret requests per rotation %v; token requests %d; "+
		"stats: fetches %d, fetch errors %d, changes %d, rejected logins %d, recoveries %d, give-ups %d",
		d.Name, order, workers, rotations, res, calls, e.kv.Credential().Calls(),
		st.Fetches, st.FetchErrors, st.CredentialChanges, st.AuthFailures, st.Recoveries, st.RecoveryFailures)
	if st.RecoveryFailures != 0 {
		t.Errorf("Stats().RecoveryFailures = %d, want 0", st.RecoveryFailures)
	}
	if st.CredentialChanges != rotations {
		t.Errorf("Stats().CredentialChanges = %d, want %d", st.CredentialChanges, rotations)
	}
	e.assertNoSecret(t, "the application's logs", e.logs.String())
}
