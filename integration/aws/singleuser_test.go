package awsintegration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/internal/testkit/drivers"
	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
	"github.com/pgrotate/rotating/secrets/awssm/rotation"
)

// TestSingleUserRotationWindow runs AWS's single-user rotation ten times
// while 64 workers insert rows, every statement on a new login, and holds
// each rotation's window between setSecret and finishSecret open for 2 s:
// for that time AWSCURRENT holds a password the database refuses and only
// AWSPENDING logs in. No statement may fail, no acknowledged row may be
// lost, and the application may make at most one GetSecretValue call per
// stage and rotation, however many of its logins were refused.
//
// It runs through each driver. pgx runs five rotations, not ten: every
// assertion is per rotation (or over all of them: no failure, the window
// met at least once), so five more only repeat it, and a rotation takes
// about 5 s under -race on a quiet 2-CPU machine but 9 to 17 s on a loaded
// one, with either driver: ten per driver came to nearly 5 of the
// package's 10 minutes there.
func TestSingleUserRotationWindow(t *testing.T) {
	for _, d := range drivers.All {
		rotations := 10
		if d.Name == drivers.PGX.Name {
			rotations = 5
		}
		t.Run(d.Name, func(t *testing.T) { testSingleUserRotationWindow(t, d, rotations) })
	}
}

func testSingleUserRotationWindow(t *testing.T, d drivers.Driver, rotations int) {
	const (
		workers = 64
		window  = 2 * time.Second
		pause   = 200 * time.Millisecond
	)
	e := newEnv(t)
	role, pw := e.newRole(t, "app")
	id := "prod/" + role
	e.logOnFailure(t, id)
	e.sm.CreateSecret(id, e.secretJSON(t, role, pw, nil))

	c, db := e.newApp(t, id, d.With()...)
	db.SetMaxIdleConns(0) // every statement logs in anew

	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	table := createTable(ctx, t, db)
	r := e.rotator(rotation.SingleUser, holdAfter(rotation.StepSet, window))

	load := startLoad(ctx, db, table, workers, 100_000, pause)
	load.waitAcks(ctx, t, workers, "the first inserts")
	var (
		curCalls, pendCalls []int64
		windowsMet          int
	)
	for i := 1; i <= rotations; i++ {
		before, failedBefore := c.Stats(), load.Failed.Load()
		load.TakeSlowest()
		e.resetCalls()
		version, err := r.Rotate(ctx, id)
		if err != nil {
			t.Fatalf("rotation %d: %v", i, err)
		}
		// Statements on the new credential, then a pause long enough for a
		// late, redundant call to the store to show up.
		load.waitAcks(ctx, t, workers, fmt.Sprintf("inserts after rotation %d", i))
		testkit.Sleep(ctx, 200*time.Millisecond)
		cur, pend := e.appCalls(awssmtest.StageCurrent), e.appCalls(awssmtest.StagePending)
		after := c.Stats()
		curCalls, pendCalls = append(curCalls, cur), append(pendCalls, pend)
		if pend > 0 {
			windowsMet++
		}
		t.Logf("rotation %d: app GetSecretValue AWSCURRENT=%d AWSPENDING=%d (rotation function's own: AWSCURRENT=%d AWSPENDING=%d); "+
			"rejected logins %d, recoveries %d, promotions %d, give-ups %d, failed statements %d, slowest statement %v",
			i, cur, pend, e.rot.byStage(awssmtest.StageCurrent), e.rot.byStage(awssmtest.StagePending),
			after.AuthFailures-before.AuthFailures, after.Recoveries-before.Recoveries,
			after.PendingPromotions-before.PendingPromotions, after.RecoveryFailures-before.RecoveryFailures,
			load.Failed.Load()-failedBefore, load.TakeSlowest().Round(time.Millisecond))
		if cur > 1 || pend > 1 {
			t.Errorf("rotation %d: the application made %d AWSCURRENT and %d AWSPENDING GetSecretValue calls, want at most 1 each", i, cur, pend)
		}
		if after.CredentialVersion != version {
			t.Errorf("rotation %d: the connector uses version %q, want the new AWSCURRENT %q", i, after.CredentialVersion, version)
		}
	}
	load.finish()
	if ctx.Err() != nil {
		t.Fatalf("test ran out of time: %v", ctx.Err())
	}
	res := load.check(ctx, t, e.pg)
	st := c.Stats()
	t.Logf("single-user: %d workers, %d rotations, window %v: %v; windows met %d/%d; "+
		"app GetSecretValue per rotation AWSCURRENT=%v AWSPENDING=%v; "+
		"stats: fetches %d, pending fetches %d, fetch errors %d, changes %d, promotions %d, rejected logins %d, recoveries %d, give-ups %d",
		workers, rotations, window, res, windowsMet, rotations, curCalls, pendCalls,
		st.Fetches, st.PendingFetches, st.FetchErrors, st.CredentialChanges, st.PendingPromotions,
		st.AuthFailures, st.Recoveries, st.RecoveryFailures)
	if windowsMet == 0 {
		t.Error("no rotation made the application ask for AWSPENDING: the setSecret-finishSecret window was never met")
	}
	if st.RecoveryFailures != 0 {
		t.Errorf("Stats().RecoveryFailures = %d, want 0", st.RecoveryFailures)
	}
	e.rememberAllVersions(ctx, t, id)
	e.assertNoPassword(t, "the application's logs", e.logs.String())
	e.assertNoPassword(t, "the rotation function's logs", e.rotLogs.String())
}
