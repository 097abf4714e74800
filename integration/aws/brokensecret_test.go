package awsintegration

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/internal/testkit/apptest"
	"github.com/pgrotate/rotating/internal/testkit/drivers"
	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
)

// TestBrokenSecret breaks the secret while the application runs: it is
// deleted, or its value is replaced by JSON without a password, or by text
// that is not JSON. The background refresh (every 100 ms) reads the broken
// secret and fails, but the cached credential still works, so no statement
// may fail. Then the role's password is changed in the database, so that the
// cached credential dies too: Connect must then fail with a clear error,
// rejected and fetch-failed at once, naming the secret and quoting no
// password, within the rotation wait, for every concurrent caller.
func TestBrokenSecret(t *testing.T) {
	cases := []struct {
		name    string
		breakIt func(e *env, id, role string)
		// cause checks the source's error that the connector's error wraps.
		cause func(err error) bool
		want  string
	}{
		{
			name:    "deleted",
			breakIt: func(e *env, id, _ string) { e.sm.Delete(id) },
			cause: func(err error) bool {
				var nf *types.ResourceNotFoundException
				return errors.As(err, &nf)
			},
			want: "*types.ResourceNotFoundException",
		},
		{
			name:    "no password",
			breakIt: func(e *env, id, role string) { e.sm.PutValue(id, `{"username":"`+role+`"}`) },
			cause:   func(err error) bool { return errors.Is(err, secrets.ErrEmptyPassword) },
			want:    "secrets.ErrEmptyPassword",
		},
		{
			// A secret that is not JSON is a plain password (the documented
			// format for password-only secrets), so nothing fails to fetch:
			// the database rejects it, the connector returns to the previous
			// credential while that works, and afterwards the error is the
			// rejection alone.
			name:    "not JSON",
			breakIt: func(e *env, id, _ string) { e.sm.PutValue(id, `not json {`) },
			cause:   nil,
			want:    "no fetch error (a plain-password secret)",
		},
	}
	// Each case has its own endpoint and role, and spends most of its time
	// waiting (for the refresh to meet the fault, for the rotation wait):
	// they run in parallel.
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testBrokenSecret(t, tc.breakIt, tc.cause, tc.want)
		})
	}
}

func testBrokenSecret(t *testing.T, breakSecret func(e *env, id, role string), cause func(error) bool, wantCause string) {
	const (
		workers      = 16
		rotationWait = 2 * time.Second
		callers      = 16
	)
	e := newEnv(t)
	role, pw := e.newRole(t, "app")
	id := "prod/" + role
	e.logOnFailure(t, id)
	e.sm.CreateSecret(id, e.secretJSON(t, role, pw, nil))

	c, db := e.newApp(t, id,
		rotating.WithRefreshInterval(100*time.Millisecond),
		rotating.WithFetchTimeout(time.Second),
		rotating.WithBackoff(50*time.Millisecond, 400*time.Millisecond),
		rotating.WithRotationWait(rotationWait))
	db.SetConnMaxLifetime(50 * time.Millisecond) // new logins all the time

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	table := createTable(ctx, t, db)
	load := startLoad(ctx, db, table, workers, 100_000, 10*time.Millisecond)
	load.waitAcks(ctx, t, workers, "the first inserts")

	// The secret breaks; the cached credential keeps working.
	before := c.Stats()
	breakSecret(e, id, role)
	began := time.Now()
	testkit.WaitFor(ctx, t, 20*time.Second, "the background refresh to meet the broken secret", func() bool {
		s := c.Stats()
		met := s.FetchErrors >= before.FetchErrors+2 || s.CredentialChanges != before.CredentialChanges
		return met && time.Since(began) >= time.Second
	})
	testkit.Sleep(ctx, 500*time.Millisecond) // more statements with the secret broken
	load.finish()
	res := load.check(ctx, t, e.pg)
	during := c.Stats()
	if during.CredentialVersion != before.CredentialVersion {
		t.Errorf("the broken secret replaced the working credential (version %q -> %q)",
			before.CredentialVersion, during.CredentialVersion)
	}

	// The cached password dies as well.
	newPW := pgtest.RandomPassword(t)
	e.remember(newPW)
	if err := e.pg.SetPassword(ctx, role, newPW); err != nil {
		t.Fatalf("ALTER ROLE: %v", err)
	}
	e.sm.ResetCalls()
	authBefore := c.Stats()
	errs, slowest := testkit.ConnectAll(ctx, c, callers, 10*time.Second)
	requests := e.sm.Calls(awssmtest.OpGetSecretValue)
	after := c.Stats()

	// Every caller must get the same kind of error; each problem is
	// reported once, with how many callers met it. (The time they took is
	// reported, not asserted on.)
	testkit.ReportProblems(t, "concurrent Connects", errs, func(err error) []string {
		return connectErrorProblems(e, err, id, cause, wantCause)
	})
	// database/sql hands the same error to the application.
	_, dbErr := db.ExecContext(ctx, "SELECT 1")
	for _, p := range connectErrorProblems(e, dbErr, id, cause, wantCause) {
		t.Errorf("db.ExecContext: %s", p)
	}

	msg := "<nil>"
	if errs[0] != nil {
		msg = errs[0].Error()
	}
	t.Logf("secret %s: while the cached credential worked: %v, fetch errors %d, generation %d -> %d; "+
		"after ALTER ROLE: %d concurrent Connects failed in at most %v with %d GetSecretValue requests "+
		"(%d rejected logins, %d give-ups); the error: %s",
		t.Name(), res, during.FetchErrors-before.FetchErrors, before.CredentialGeneration, during.CredentialGeneration,
		countErrs(errs), slowest.Round(time.Millisecond), requests,
		after.AuthFailures-authBefore.AuthFailures, after.RecoveryFailures-authBefore.RecoveryFailures, msg)
	e.assertNoPassword(t, "the application's logs", e.logs.String())
}

// connectErrorProblems checks a failed Connect's error: rejected and
// fetch-failed, naming the secret, with the driver's 28P01 and the source's
// cause reachable, and no password in any rendering of it. It returns what
// is wrong.
func connectErrorProblems(e *env, err error, secretID string, cause func(error) bool, wantCause string) []string {
	return apptest.Rejected{
		Driver: drivers.LibPQ, Secret: secretID, Secrets: &e.known, FetchFailed: cause != nil,
		Store: func(err error) []string {
			if cause != nil && !cause(err) {
				return []string{"the source's error is not a " + wantCause}
			}
			return nil
		},
	}.Problems(err)
}
