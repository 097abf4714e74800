package azkvintegration

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/internal/testkit/apptest"
	"github.com/pgrotate/rotating/internal/testkit/drivers"
	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/azkv"
	"github.com/pgrotate/rotating/secrets/azkv/azkvtest"
)

// errIdentityDown is what the credential answers once the identity
// endpoint is down.
var errIdentityDown = errors.New("managed identity endpoint unreachable (injected by the test)")

// storeFault is one way the vault fails.
type storeFault struct {
	name    string
	breakIt func(e *env)
	// cause checks the vault's error inside the connector's: it returns
	// what is missing, or "".
	cause func(err error) string
}

// answered returns a cause check for an error answer: an *azkv.Error with
// status, wrapping an *azcore.ResponseError, matching sentinel.
func answered(status int, sentinel error) func(error) string {
	return func(err error) string {
		var re *azcore.ResponseError
		if !errors.As(err, &re) || re.StatusCode != status {
			return fmt.Sprintf("no *azcore.ResponseError with status %d", status)
		}
		if sentinel != nil && !errors.Is(err, sentinel) {
			return fmt.Sprintf("errors.Is(err, %v) = false", sentinel)
		}
		return ""
	}
}

func storeFaults() []storeFault {
	return []storeFault{
		{
			name:    "vault down",
			breakIt: func(e *env) { e.kv.SetDown(true) },
			cause: func(err error) string {
				var ke *azkv.Error
				if !errors.As(err, &ke) || ke.StatusCode != 0 || errors.As(err, new(*azcore.ResponseError)) {
					return "no *azkv.Error without an answer (a transport error)"
				}
				return ""
			},
		},
		{
			name:    "403 no role assignment",
			breakIt: func(e *env) { e.kv.InjectFault(azkvtest.OpGetSecret, azkvtest.Fault{Status: 403}) },
			cause:   answered(http.StatusForbidden, azkv.ErrAccessDenied),
		},
		{
			name: "429 throttled, Retry-After 5s",
			breakIt: func(e *env) {
				e.kv.InjectFault(azkvtest.OpGetSecret, azkvtest.Fault{Status: 429, RetryAfter: 5 * time.Second})
			},
			cause: answered(http.StatusTooManyRequests, azkv.ErrThrottled),
		},
		{
			name:    "latest version disabled",
			breakIt: func(e *env) { e.kv.SetEnabled(secretName, "", false) },
			cause:   answered(http.StatusForbidden, azkv.ErrDisabled),
		},
		{
			name:    "secret deleted",
			breakIt: func(e *env) { e.kv.Delete(secretName) },
			cause:   answered(http.StatusNotFound, azkv.ErrNotFound),
		},
		{
			name:    "malformed value",
			breakIt: func(e *env) { e.kv.SetSecret(secretName, `{"username":"app","password":`) },
			cause: func(err error) string {
				if !errors.Is(err, secrets.ErrMalformed) {
					return "errors.Is(err, secrets.ErrMalformed) = false"
				}
				return ""
			},
		},
		{
			// The token is revoked (401) and a new one cannot be had.
			name: "identity endpoint down after a 401",
			breakIt: func(e *env) {
				e.kv.Credential().SetError(errIdentityDown)
				e.kv.InjectFault(azkvtest.OpGetSecret, azkvtest.Fault{Status: 401})
			},
			cause: func(err error) string {
				if !errors.Is(err, errIdentityDown) {
					return "the credential's error is not in the chain"
				}
				return ""
			},
		},
	}
}

// TestStoreFaults breaks the vault while the application runs: the
// background refresh (every 100 ms) meets the fault, but the cached
// credential still works, so no statement may fail and the credential must
// not change. Then the role's password is changed in the database, so that
// the cached credential dies too: every one of 16 concurrent Connects must
// then fail, within the rotation wait, with a *rotating.AuthError that is
// rejected and fetch-failed at once, holds the driver's 28P01, names the
// secret, wraps the vault's error, and quotes no password or token.
//
// The cases run in parallel: each has a vault and a role of its own, and
// spends most of its time waiting for the refresh to meet the fault and
// for the rotation wait.
func TestStoreFaults(t *testing.T) {
	for _, d := range drivers.All {
		for _, f := range storeFaults() {
			t.Run(d.Name+"/"+f.name, func(t *testing.T) {
				t.Parallel()
				testStoreFault(t, d, f)
			})
		}
	}
}

func testStoreFault(t *testing.T, d drivers.Driver, f storeFault) {
	const (
		workers      = 16
		rotationWait = 2 * time.Second
		callers      = 16
	)
	e := newEnv(t)
	role, pw := e.newRole(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	e.setSecret(ctx, t, e.secretJSON(t, role, pw))

	c, db := e.newApp(t, d,
		rotating.WithRefreshInterval(100*time.Millisecond),
		rotating.WithFetchTimeout(2*time.Second),
		rotating.WithBackoff(50*time.Millisecond, 400*time.Millisecond),
		rotating.WithRotationWait(rotationWait))
	db.SetConnMaxLifetime(50 * time.Millisecond) // new logins all the time
	table := createTable(ctx, t, db)
	load := testkit.StartInserts(ctx, db, table, workers, 100_000, 10*time.Millisecond)
	waitAcks(ctx, t, load, workers, "the first inserts")

	// The vault fails; the cached credential keeps working.
	before := c.Stats()
	okBefore := load.OK.Load()
	e.kv.ResetCalls()
	f.breakIt(e)
	began := time.Now()
	testkit.WaitFor(ctx, t, 30*time.Second, "the background refresh to meet the fault", func() bool {
		return c.Stats().FetchErrors >= before.FetchErrors+2 && time.Since(began) >= time.Second
	})
	if err := testkit.Sleep(ctx, 300*time.Millisecond); err != nil { // more statements with the vault failing
		t.Fatal(err)
	}
	load.Finish()
	res := verify(ctx, t, load, e.pg)
	during := c.Stats()
	requests, refused := e.kv.Calls(azkvtest.OpGetSecret), e.kv.Refused()
	if during.CredentialVersion != before.CredentialVersion || during.CredentialGeneration != before.CredentialGeneration {
		t.Errorf("the failing vault replaced the working credential (version %q -> %q)",
			before.CredentialVersion, during.CredentialVersion)
	}
	if during.AuthFailures != before.AuthFailures {
		t.Errorf("%d logins were rejected while the cached credential worked", during.AuthFailures-before.AuthFailures)
	}

	// The cached password dies as well.
	if err := e.pg.SetPassword(ctx, role, e.newPassword(t)); err != nil {
		t.Fatalf("ALTER ROLE: %v", err)
	}
	authBefore := c.Stats()
	errs, slowest := testkit.ConnectAll(ctx, c, callers, 20*time.Second)
	after := c.Stats()

	// Each problem is reported once, with how many callers met it.
	testkit.ReportProblems(t, "concurrent Connects", errs, func(err error) []string {
		return e.connectErrorProblems(d, err, f.cause)
	})
	// The Connects wait for the rotation wait (2 s), plus a fetch that may
	// be in flight; allow for a loaded machine, not for a hang.
	if slowest > 15*time.Second {
		t.Errorf("the slowest Connect took %v, want the 2 s rotation wait and a fetch at most", slowest)
	}
	// database/sql hands the same error to the application.
	_, dbErr := db.ExecContext(ctx, "SELECT 1")
	for _, p := range e.connectErrorProblems(d, dbErr, f.cause) {
		t.Errorf("db.ExecContext: %s", p)
	}

	msg := "<nil>"
	if errs[0] != nil {
		msg = errs[0].Error()
	}
	e.assertNoSecret(t, "the error", msg)
	t.Logf("%s, %s: while the cached credential worked: %v (%d acknowledged during the fault), fetch errors %d, "+
		"GetSecret requests %d, connections refused %d; after ALTER ROLE: %d/%d concurrent Connects failed in at most %v "+
		"(%d rejected logins, %d give-ups); the error: %s",
		d.Name, f.name, res, res.Acknowledged-okBefore, during.FetchErrors-before.FetchErrors, requests, refused,
		testkit.CountErrors(errs), callers, slowest.Round(time.Millisecond),
		after.AuthFailures-authBefore.AuthFailures, after.RecoveryFailures-authBefore.RecoveryFailures, msg)
	e.assertNoSecret(t, "the application's logs", e.logs.String())
}

// connectErrorProblems checks a failed Connect's error: rejected and
// fetch-failed, an *AuthError holding the driver's 28P01 and the vault's
// error as cause checks it, naming the secret, and no secret in any
// rendering of it. It returns what is wrong.
func (e *env) connectErrorProblems(d drivers.Driver, err error, cause func(error) string) []string {
	return apptest.Rejected{
		Driver: d, Secret: secretName, Secrets: &e.known, FetchFailed: true,
		Store: func(err error) []string {
			var problems []string
			var kvErr *azkv.Error
			if !errors.As(err, &kvErr) {
				problems = append(problems, "no *azkv.Error in the error")
			}
			if p := cause(err); p != "" {
				problems = append(problems, "the vault's error: "+p)
			}
			return problems
		},
	}.Problems(err)
}
