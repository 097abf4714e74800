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

// TestAlternatingUsersRotation runs AWS's alternating-users rotation ten
// times (app, app_clone, app, ...) while 64 workers insert rows, every
// statement on a new login. AWSCURRENT always logs in here, but the
// credential the connector cached dies one rotation later, when setSecret
// gives its user a new password; the connector must then follow AWSCURRENT,
// username included, with one GetSecretValue call and no failed statement.
//
// The connector keeps a credential while it works, so it does not move to
// the new AWSCURRENT right away: after rotation k (k >= 2) it logs in with
// the version that was AWSCURRENT when rotation k killed the one it had,
// which is now AWSPREVIOUS. The window after setSecret is held open for
// 300 ms so that the old credential dies well before finishSecret. It runs
// through each driver.
func TestAlternatingUsersRotation(t *testing.T) {
	for _, d := range drivers.All {
		t.Run(d.Name, func(t *testing.T) { testAlternatingUsersRotation(t, d) })
	}
}

func testAlternatingUsersRotation(t *testing.T, d drivers.Driver) {
	const (
		workers   = 64
		rotations = 10
		hold      = 300 * time.Millisecond
		pause     = 200 * time.Millisecond
	)
	e := newEnv(t)
	master, masterPW := e.newMaster(t)
	masterARN, _ := e.sm.CreateSecret("master/"+master, e.secretJSON(t, master, masterPW, nil))
	role, pw := e.newRole(t, "app")
	id := "prod/" + role
	e.logOnFailure(t, id)
	_, v1 := e.sm.CreateSecret(id, e.secretJSON(t, role, pw, map[string]any{"masterarn": masterARN}))

	c, db := e.newApp(t, id, d.With()...)
	db.SetMaxIdleConns(0) // every statement logs in anew

	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	table := createTable(ctx, t, db) // owned by app; app_clone will be a member of app
	r := e.rotator(rotation.AlternatingUsers, holdAfter(rotation.StepSet, hold))

	currentUser := func() string {
		t.Helper()
		var u string
		if err := db.QueryRowContext(ctx, "SELECT current_user").Scan(&u); err != nil {
			t.Fatalf("SELECT current_user: %v", err)
		}
		return u
	}
	if u := currentUser(); u != role {
		t.Fatalf("before any rotation, current_user = %q, want %q", u, role)
	}

	load := startLoad(ctx, db, table, workers, 100_000, pause)
	load.waitAcks(ctx, t, workers, "the first inserts")
	versions := []string{v1} // versions[k] is the version rotation k made
	usernames := []string{role}
	var curCalls, pendCalls []int64
	for i := 1; i <= rotations; i++ {
		before, failedBefore := c.Stats(), load.Failed.Load()
		load.TakeSlowest()
		e.resetCalls()
		version, err := r.Rotate(ctx, id)
		if err != nil {
			t.Fatalf("rotation %d: %v", i, err)
		}
		l, err := e.version(ctx, id, version)
		if err != nil {
			t.Fatalf("rotation %d: read the new version: %v", i, err)
		}
		e.remember(l.Password)
		versions, usernames = append(versions, version), append(usernames, l.Username)

		load.waitAcks(ctx, t, workers, fmt.Sprintf("inserts after rotation %d", i))
		testkit.Sleep(ctx, 200*time.Millisecond)
		cur, pend := e.appCalls(awssmtest.StageCurrent), e.appCalls(awssmtest.StagePending)
		curCalls, pendCalls = append(curCalls, cur), append(pendCalls, pend)
		after := c.Stats()
		got := currentUser() // a fresh login: the pool keeps no idle connection

		// The rotation kills the version made two rotations earlier (for
		// rotation 1, nothing). If the connector held that one, it must now
		// hold what AWSCURRENT held when the old login died: version i-1,
		// or version i if its one fetch landed after finishSecret. Either
		// way one GetSecretValue call and one credential change. If it
		// held something else, nothing changes and the store is not called.
		held := before.CredentialVersion
		killed := i >= 2 && held == versions[i-2]
		ok := after.CredentialVersion == held
		wantCalls, wantChanges := int64(0), uint64(0)
		if killed {
			ok = after.CredentialVersion == versions[i-1] || after.CredentialVersion == versions[i]
			wantCalls, wantChanges = 1, 1
		}
		wantUser := ""
		for k, v := range versions {
			if v == after.CredentialVersion {
				wantUser = usernames[k]
			}
		}
		t.Logf("rotation %d: AWSCURRENT is %s; the app logs in as %s (version %.8s, killed by this rotation: %v); "+
			"app GetSecretValue AWSCURRENT=%d AWSPENDING=%d; rejected logins %d, recoveries %d, changes %d, failed statements %d, slowest statement %v",
			i, l.Username, got, after.CredentialVersion, killed, cur, pend,
			after.AuthFailures-before.AuthFailures, after.Recoveries-before.Recoveries,
			after.CredentialChanges-before.CredentialChanges, load.Failed.Load()-failedBefore,
			load.TakeSlowest().Round(time.Millisecond))
		if !ok {
			t.Errorf("rotation %d: the connector went from version %s to %s; versions so far %v", i, held, after.CredentialVersion, versions)
		}
		if got != wantUser {
			t.Errorf("rotation %d: a new login is %s, want %s, the username of the version in use (%s)", i, got, wantUser, after.CredentialVersion)
		}
		if cur > 1 || pend != 0 {
			t.Errorf("rotation %d: the application made %d AWSCURRENT and %d AWSPENDING GetSecretValue calls, want at most 1 and 0", i, cur, pend)
		}
		if cur != wantCalls || after.CredentialChanges-before.CredentialChanges != wantChanges {
			t.Errorf("rotation %d: %d AWSCURRENT calls and %d credential changes, want %d and %d",
				i, cur, after.CredentialChanges-before.CredentialChanges, wantCalls, wantChanges)
		}
	}
	load.finish()
	if ctx.Err() != nil {
		t.Fatalf("test ran out of time: %v", ctx.Err())
	}
	res := load.check(ctx, t, e.pg)
	st := c.Stats()
	t.Logf("alternating-users: %d workers, %d rotations: %v; usernames by version %v; "+
		"app GetSecretValue per rotation AWSCURRENT=%v AWSPENDING=%v; "+
		"stats: fetches %d, pending fetches %d, fetch errors %d, changes %d, rejected logins %d, recoveries %d, give-ups %d",
		workers, rotations, res, usernames, curCalls, pendCalls,
		st.Fetches, st.PendingFetches, st.FetchErrors, st.CredentialChanges, st.AuthFailures, st.Recoveries, st.RecoveryFailures)
	if st.RecoveryFailures != 0 {
		t.Errorf("Stats().RecoveryFailures = %d, want 0", st.RecoveryFailures)
	}
	e.rememberAllVersions(ctx, t, id)
	e.assertNoPassword(t, "the application's logs", e.logs.String())
	e.assertNoPassword(t, "the rotation function's logs", e.rotLogs.String())
}
