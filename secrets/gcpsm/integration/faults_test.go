package gcpsmintegration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/internal/testkit/apptest"
	"github.com/pgrotate/rotating/internal/testkit/drivers"
	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/gcpsm"
	"github.com/pgrotate/rotating/secrets/gcpsm/gcpsmtest"
)

// storeFault is one way Secret Manager fails: how to cause it, how to end
// it, and how the source's error shows it.
type storeFault struct {
	name string
	// breakIt causes the fault; current is the version the application
	// uses, and payload that version's payload.
	breakIt func(e *env, secret, current string, payload []byte)
	// repair ends it, leaving the same login in the store.
	repair func(t *testing.T, e *env, secret string, payload []byte)
	// cause checks the source's error inside the connector's.
	cause func(err error) bool
	// inLog is what the connector's Warn lines say about it.
	inLog string
}

func clearFaults(_ *testing.T, e *env, _ string, _ []byte) { e.sm.ClearFaults() }

// readdSame adds a version holding the same login, as an operator
// restoring a working secret would.
func readdSame(t *testing.T, e *env, secret string, payload []byte) {
	e.sm.AddVersion(secret, payload)
}

func hasCode(code codes.Code) func(error) bool {
	return func(err error) bool { return status.Code(err) == code }
}

var storeFaults = []storeFault{
	{
		name:    "down",
		breakIt: func(e *env, _, _ string, _ []byte) { e.sm.Down() },
		repair: func(t *testing.T, e *env, _ string, _ []byte) {
			if err := e.sm.Up(); err != nil {
				t.Fatal(err)
			}
		},
		cause: hasCode(codes.Unavailable), inLog: "code = Unavailable",
	},
	{
		name: "permission denied",
		breakIt: func(e *env, _, _ string, _ []byte) {
			e.sm.InjectFault(gcpsmtest.MethodAccessSecretVersion, gcpsmtest.Fault{Code: codes.PermissionDenied})
		},
		repair: clearFaults, cause: hasCode(codes.PermissionDenied), inLog: "code = PermissionDenied",
	},
	{
		name: "throttled",
		breakIt: func(e *env, _, _ string, _ []byte) {
			e.sm.InjectFault(gcpsmtest.MethodAccessSecretVersion, gcpsmtest.Fault{Code: codes.ResourceExhausted})
		},
		repair: clearFaults, cause: hasCode(codes.ResourceExhausted), inLog: "code = ResourceExhausted",
	},
	{
		name: "hangs past the fetch timeout",
		breakIt: func(e *env, _, _ string, _ []byte) {
			e.sm.InjectFault(gcpsmtest.MethodAccessSecretVersion, gcpsmtest.Fault{Hang: true})
		},
		repair: clearFaults, cause: hasCode(codes.DeadlineExceeded), inLog: "code = DeadlineExceeded",
	},
	{
		name: "latest version disabled",
		breakIt: func(e *env, secret, current string, _ []byte) {
			if err := e.sm.DisableVersion(secret + "/versions/" + current); err != nil {
				panic(err)
			}
		},
		repair: func(t *testing.T, e *env, secret string, _ []byte) {
			if err := e.sm.EnableVersion(secret + "/versions/latest"); err != nil {
				t.Fatal(err)
			}
		},
		cause: hasCode(codes.FailedPrecondition), inLog: "is in DISABLED state",
	},
	{
		name: "latest version destroyed",
		breakIt: func(e *env, secret, current string, _ []byte) {
			if err := e.sm.DestroyVersion(secret + "/versions/" + current); err != nil {
				panic(err)
			}
		},
		repair: readdSame, cause: hasCode(codes.FailedPrecondition), inLog: "is in DESTROYED state",
	},
	{
		name: "malformed payload",
		breakIt: func(e *env, secret, _ string, payload []byte) {
			e.sm.AddVersion(secret, payload[:len(payload)/2]) // cut in the middle of the JSON
		},
		repair: readdSame, cause: func(err error) bool { return errors.Is(err, secrets.ErrMalformed) }, inLog: "malformed secret",
	},
	{
		name: "payload corrupted on the way",
		breakIt: func(e *env, _, _ string, _ []byte) {
			e.sm.InjectFault(gcpsmtest.MethodAccessSecretVersion, gcpsmtest.Fault{CorruptChecksum: true})
		},
		repair: clearFaults, cause: func(err error) bool { return errors.Is(err, gcpsm.ErrChecksum) }, inLog: "payload checksum mismatch",
	},
}

// TestStoreFaultsWhileCredentialWorks keeps the application running, with
// no rotation, while Secret Manager fails in each way in turn for at least
// a second: down, permission denied, throttled, hanging past the fetch
// timeout, the latest version disabled or destroyed, a malformed payload,
// a corrupted one. A background refresh every 100 ms makes the connector
// read the store all the time and new logins happen all the time; the
// cached credential still works, so no statement may fail and it must not
// be replaced. After each fault ends, a read succeeds again. It runs
// through each driver.
//
// The drivers run in parallel, each with a Secret Manager and a role of
// its own: the faults are the store's, met by the background refresh at
// its own pace, and each lasts at least faultFor whatever else runs.
func TestStoreFaultsWhileCredentialWorks(t *testing.T) {
	for _, d := range drivers.All {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			testStoreFaultsWhileCredentialWorks(t, d)
		})
	}
}

func testStoreFaultsWhileCredentialWorks(t *testing.T, d drivers.Driver) {
	const (
		workers  = 16
		faultFor = time.Second
	)
	e := newEnv(t)
	role, pw := e.newRole(t)
	secret := e.newSecret(t, role, pw)
	payload := e.payload(t, role, pw)
	c, db := e.newApp(t, secret, d.With(
		rotating.WithFetchTimeout(500*time.Millisecond),
		rotating.WithRefreshInterval(100*time.Millisecond),
		rotating.WithBackoff(50*time.Millisecond, 400*time.Millisecond))...)
	db.SetConnMaxLifetime(50 * time.Millisecond) // new logins all the time

	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	table := createTable(ctx, t, db)
	load := testkit.StartInserts(ctx, db, table, workers, 100_000, 10*time.Millisecond)
	waitAcks(ctx, t, load, workers, "the first inserts")
	start := c.Stats()

	for _, f := range storeFaults {
		before, failedBefore, okBefore := c.Stats(), load.Failed.Load(), load.OK.Load()
		logBefore := countLines(e, f.inLog)
		load.TakeSlowest()
		e.sm.ResetCalls()
		f.breakIt(e, secret, before.CredentialVersion, payload)
		began := time.Now()
		// Met at least twice, and for at least faultFor.
		testkit.WaitFor(ctx, t, 30*time.Second, "fetch errors under "+f.name, func() bool {
			return countLines(e, f.inLog) >= logBefore+2 && time.Since(began) >= faultFor
		})
		requests := e.accessCalls()
		during := c.Stats()
		successes := e.successes()
		f.repair(t, e, secret, payload)
		testkit.WaitFor(ctx, t, 30*time.Second, "a successful fetch after "+f.name, func() bool {
			return e.successes() > successes
		})
		after := c.Stats()
		logged := countLines(e, f.inLog) - logBefore
		line := fmt.Sprintf("%s: %d fetches, %d failed, %d AccessSecretVersion requests, %d Warn lines saying %q; %d statements, %d failed, slowest %v",
			f.name, during.Fetches-before.Fetches, during.FetchErrors-before.FetchErrors, requests, logged, f.inLog,
			load.OK.Load()-okBefore, load.Failed.Load()-failedBefore, load.TakeSlowest().Round(time.Millisecond))
		t.Log(line)
		if during.FetchErrors < before.FetchErrors+2 {
			t.Errorf("%s: Stats().FetchErrors grew by %d, want at least 2", f.name, during.FetchErrors-before.FetchErrors)
		}
		if after.CredentialChanges != start.CredentialChanges || after.CredentialGeneration != start.CredentialGeneration {
			t.Errorf("%s: the cached credential was replaced (generation %d -> %d)", f.name, start.CredentialGeneration, after.CredentialGeneration)
		}
	}
	load.Finish()
	if ctx.Err() != nil {
		t.Fatalf("test ran out of time: %v", ctx.Err())
	}
	res := check(ctx, t, e, load)
	st := c.Stats()
	t.Logf("%s: store faults, %d workers: %v; stats: fetches %d, fetch errors %d, rejected logins %d, give-ups %d",
		d.Name, workers, res, st.Fetches, st.FetchErrors, st.AuthFailures, st.RecoveryFailures)
	if st.AuthFailures != 0 || st.RecoveryFailures != 0 {
		t.Errorf("Stats(): %d rejected logins and %d give-ups, want none", st.AuthFailures, st.RecoveryFailures)
	}
	e.assertNoPassword(t, "the application's log", e.logs.String())
}

// successes counts the source's Debug lines about a successful read.
func (e *env) successes() int {
	return e.logs.CountLines(func(line string) bool {
		return strings.Contains(line, `"msg":"gcpsm: accessed secret version"`)
	})
}

// countLines counts the connector's Warn lines about a failed fetch that
// contain sub.
func countLines(e *env, sub string) int {
	return e.logs.CountLines(func(line string) bool {
		return strings.Contains(line, `"level":"WARN"`) && strings.Contains(line, "credential fetch failed") && strings.Contains(line, sub)
	})
}

// TestCredentialDiesWhileStoreFails breaks the store in each way, then
// changes the role's password in the database, so that the cached
// credential dies too. Eight concurrent Connects must each fail within the
// rotation wait (2 s, plus a fetch timeout) with a *rotating.AuthError
// that is rejected (the driver's 28P01 reachable) and fetch-failed, wraps
// the *gcpsm.Error with the store's gRPC status (or the parse error),
// names the secret and quotes no password. It runs through each driver.
// The cases, each with a Secret Manager and a role of its own and no load,
// spend most of their time in the rotation wait: they run in parallel.
func TestCredentialDiesWhileStoreFails(t *testing.T) {
	for _, d := range drivers.All {
		t.Run(d.Name, func(t *testing.T) {
			for _, f := range storeFaults {
				t.Run(f.name, func(t *testing.T) {
					t.Parallel()
					testCredentialDiesWhileStoreFails(t, d, f)
				})
			}
		})
	}
}

func testCredentialDiesWhileStoreFails(t *testing.T, d drivers.Driver, f storeFault) {
	const (
		callers      = 8
		rotationWait = 2 * time.Second
		fetchTimeout = time.Second
	)
	e := newEnv(t)
	role, pw := e.newRole(t)
	secret := e.newSecret(t, role, pw)
	c, db := e.newApp(t, secret, d.With(
		rotating.WithFetchTimeout(fetchTimeout),
		rotating.WithBackoff(50*time.Millisecond, 400*time.Millisecond),
		rotating.WithRotationWait(rotationWait))...)
	db.SetMaxIdleConns(0) // every statement logs in anew: none on the old password is left
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("first login: %v", err)
	}
	f.breakIt(e, secret, c.Stats().CredentialVersion, e.payload(t, role, pw))
	if err := e.pg.SetPassword(ctx, role, e.newPassword(t)); err != nil {
		t.Fatal(err)
	}
	e.sm.ResetCalls()

	errs, slowest := testkit.ConnectAll(ctx, c, callers, 20*time.Second)
	requests := e.accessCalls()

	testkit.ReportProblems(t, "concurrent Connects", errs, func(err error) []string {
		return connectErrorProblems(e, d, err, secret, f.cause)
	})
	// database/sql hands the same error to the application.
	_, dbErr := db.ExecContext(ctx, "SELECT 1")
	for _, p := range connectErrorProblems(e, d, dbErr, secret, f.cause) {
		t.Errorf("db.ExecContext: %s", p)
	}
	if limit := rotationWait + fetchTimeout + 3*time.Second; slowest > limit {
		t.Errorf("the slowest Connect took %v, want at most the rotation wait and a fetch timeout (%v)", slowest, limit)
	}
	msg := "<nil>"
	if errs[0] != nil {
		msg = errs[0].Error()
	}
	t.Logf("%s: %d concurrent Connects failed, the slowest after %v, with %d AccessSecretVersion requests; the error: %s",
		f.name, testkit.CountErrors(errs), slowest.Round(time.Millisecond), requests, msg)
	e.assertNoPassword(t, "the application's log", e.logs.String())
}

// connectErrorProblems lists what is wrong with a failed Connect's error.
func connectErrorProblems(e *env, d drivers.Driver, err error, secret string, cause func(error) bool) []string {
	return apptest.Rejected{
		Driver: d, Secret: secret, Secrets: &e.known, FetchFailed: true,
		Store: func(err error) []string {
			var problems []string
			var gerr *gcpsm.Error
			if !errors.As(err, &gerr) {
				problems = append(problems, "no *gcpsm.Error in the error")
			}
			if !cause(err) {
				problems = append(problems, fmt.Sprintf("the store's error is not the one caused (status.Code %v)", status.Code(err)))
			}
			return problems
		},
	}.Problems(err)
}
