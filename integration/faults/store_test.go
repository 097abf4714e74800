package faults

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/smithy-go"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/awssm"
	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
)

// storeFault is one way AWS Secrets Manager can misbehave.
type storeFault struct {
	name string
	// breakStore makes the store misbehave from now on. user and password
	// are the login the database accepts at that moment.
	breakStore func(t *testing.T, a *awsStore, w *watch, user, password string)
	// rotateStore is set for faults under which the store still works: it
	// stores the rotated password, in the fault's own way. For the others
	// the store keeps failing through the rotation.
	rotateStore func(t *testing.T, a *awsStore, user, password string) (version string)
	// cause checks that the store's own error is reachable, classified,
	// through the error a caller gets.
	cause func(t *testing.T, err error)
	// opts override the connector's options.
	opts []func(*storeTimings)
}

// storeTimings are the connector timings of one store-fault case.
type storeTimings struct {
	wait, fetchTimeout time.Duration
}

// storeFetchTimeout is the fetch timeout of the store-fault cases whose
// store answers: each case checks that the store's own error reaches the
// caller, and on a loaded machine under -race one SDK call (or the three
// attempts of a retried error) can take longer than the package's 300 ms,
// and then the timeout, not the store's error, rightly ends the fetch.
const storeFetchTimeout = time.Second

func injected(f awssmtest.Fault) func(*testing.T, *awsStore, *watch, string, string) {
	return func(_ *testing.T, a *awsStore, _ *watch, _, _ string) {
		a.srv.InjectFault(awssmtest.OpGetSecretValue, f)
	}
}

func wantAPIError(code string, status int) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var apiErr smithy.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode() != code {
			t.Errorf("%v: want the SDK's smithy.APIError with code %s", err, code)
		}
		var re *awshttp.ResponseError
		if !errors.As(err, &re) || re.HTTPStatusCode() != status {
			t.Errorf("%v: want the SDK's *awshttp.ResponseError with HTTP status %d", err, status)
		}
	}
}

func wantIs(target error) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, target) {
			t.Errorf("%v: does not match %v", err, target)
		}
	}
}

func wantAs[E error]() func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var target E
		if !errors.As(err, &target) {
			t.Errorf("%v: errors.As(%T) = false", err, target)
		}
	}
}

// slowStore is the latency of the slow-responses fault: longer than a login
// takes on a loaded machine under -race, so that a statement taking as long
// as the store has waited for it.
const slowStore = time.Second + slack

var storeFaults = []storeFault{
	{
		name:       "http-500",
		breakStore: injected(awssmtest.Fault{Status: http.StatusInternalServerError}),
		cause:      wantAPIError("InternalServiceError", http.StatusInternalServerError),
	},
	{
		name:       "throttling",
		breakStore: injected(awssmtest.Fault{Error: "ThrottlingException"}),
		cause:      wantAPIError("ThrottlingException", http.StatusBadRequest),
	},
	{
		name:       "hang-beyond-fetch-timeout",
		breakStore: injected(awssmtest.Fault{Hang: true}),
		cause:      wantIs(context.DeadlineExceeded),
		// The package's short fetch timeout: the case is about it.
		opts: []func(*storeTimings){func(s *storeTimings) { s.fetchTimeout = fetchTimeout }},
	},
	{
		name:       "malformed-response-body",
		breakStore: injected(awssmtest.Fault{MalformedBody: true}),
		cause:      wantAs[*smithy.DeserializationError](),
	},
	{
		name: "malformed-json-secret",
		breakStore: func(_ *testing.T, a *awsStore, w *watch, user, _ string) {
			// A trailing comma: invalid JSON around a password.
			a.put(`{"username":"` + user + `","password":"` + w.password() + `",}`)
		},
		cause: wantIs(secrets.ErrMalformed),
	},
	{
		name: "deleted-secret",
		breakStore: func(_ *testing.T, a *awsStore, _ *watch, _, _ string) {
			a.srv.Delete(a.id)
		},
		cause: wantAs[*types.ResourceNotFoundException](),
	},
	{
		name: "empty-password",
		breakStore: func(_ *testing.T, a *awsStore, _ *watch, user, _ string) {
			a.put(credJSON(user, ""))
		},
		cause: wantIs(secrets.ErrEmptyPassword),
	},
	{
		name: "binary-secret-not-utf8",
		breakStore: func(t *testing.T, a *awsStore, w *watch, _, _ string) {
			pw := w.password()
			a.putBinary(t, append([]byte{0xff, 0xfe}, pw...))
		},
		cause: wantIs(secrets.ErrMalformed),
	},
	{
		// Every answer takes two seconds, within the fetch timeout: slow,
		// not failing.
		name:       "slow-responses",
		breakStore: injected(awssmtest.Fault{Latency: slowStore}),
		rotateStore: func(_ *testing.T, a *awsStore, user, password string) string {
			return a.put(credJSON(user, password))
		},
		opts: []func(*storeTimings){func(s *storeTimings) { s.wait, s.fetchTimeout = 4*time.Second, 3*time.Second }},
	},
	{
		// The secret moves to SecretBinary (UTF-8 JSON): a format change,
		// not a failure.
		name: "binary-secret",
		breakStore: func(t *testing.T, a *awsStore, _ *watch, user, password string) {
			a.putBinary(t, []byte(credJSON(user, password)))
		},
		rotateStore: func(t *testing.T, a *awsStore, user, password string) string {
			return a.putBinary(t, []byte(credJSON(user, password)))
		},
	},
}

// TestStoreFaults runs every store fault twice: while the cached credential
// still works (phase A: no statement may fail, the credential is not
// evicted, although a background refresh meets the fault every 50 ms), and
// after ALTER ROLE made it useless (phase B: every caller gets a clear error
// wrapping both the rejection and the store's error within the rotation
// wait, with store calls bounded by the backoff; or, where the store still
// works, no failure at all). Phase C repairs the store with the new password:
// the next logins work.
//
// The cases run three at a time, each with its own store, role and
// connector; the goroutine check covers all of them once every pool is
// closed.
//
// Through lib/pq only: the faults are the store's, and the driver's part
// in them (a 28P01 inside the *AuthError beside the store's error) is the
// same for every fault; TestRotationWhileStoreDown proves it through each
// driver. testStoreFault takes the driver, for a run through pgx by hand.
func TestStoreFaults(t *testing.T) {
	pg := sharedServer(t)
	leakCheck(t)
	sem := make(chan struct{}, 3)
	for _, f := range storeFaults {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			sem <- struct{}{}
			defer func() { <-sem }()
			testStoreFault(t, libPQ, pg, f)
		})
	}
}

func testStoreFault(t *testing.T, d testDriver, pg *pgserver.Server, f storeFault) {
	timing := storeTimings{wait: rotationWait, fetchTimeout: storeFetchTimeout}
	for _, o := range f.opts {
		o(&timing)
	}
	const workers, callers, interval = 4, 8, 50 * time.Millisecond
	failing := f.rotateStore == nil

	w := newWatch(t)
	pw1 := w.password()
	role := newRole(t, pg, uniqueRole(t), pw1)
	a := newAWSStore(t, w, credJSON(role, pw1))
	c := newConnector(t, d, baseDSN(pg), a.src,
		rotating.WithLogger(w.logger),
		rotating.WithRotationWait(timing.wait),
		rotating.WithFetchTimeout(timing.fetchTimeout),
		rotating.WithBackoff(minBackoff, maxBackoff),
		rotating.WithRefreshInterval(interval))
	db := openDB(t, c)
	db.SetMaxIdleConns(0) // every statement is a new login
	ctx := t.Context()
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("first login: %v", err)
	}
	v1 := c.Stats().CredentialVersion

	// Phase A: the store misbehaves; the cached credential still works.
	f.breakStore(t, a, w, role, pw1)
	before := c.Stats()
	l := startLoad(t, ctx, workers, 5*time.Millisecond, selectUser(db, func() []string { return []string{role} }))
	start := time.Now()
	testkit.WaitFor(t.Context(), t, 10*time.Second, "the background refresh to meet the fault", func() bool {
		st := c.Stats()
		if failing {
			return st.FetchErrors >= before.FetchErrors+2
		}
		return st.Fetches >= before.Fetches+2
	})
	testkit.Sleep(ctx, max(0, 300*time.Millisecond-time.Since(start)))
	outs := l.finish()
	ok, failed, first := tally(outs)
	st := c.Stats()
	slowest := slices.MaxFunc(outs, func(a, b outcome) int { return int(a.took - b.took) }).took
	t.Logf("phase A (credential still valid): %d statements, %d failed, slowest %v; fetches %d, fetch errors %d",
		ok+failed, failed, slowest.Round(time.Millisecond), st.Fetches-before.Fetches, st.FetchErrors-before.FetchErrors)
	if failed != 0 {
		t.Errorf("phase A: %d of %d statements failed while the cached credential was valid: %v", failed, ok+failed, first)
	}
	if st.CredentialGeneration != before.CredentialGeneration || st.CredentialVersion != v1 {
		t.Errorf("phase A: the cached credential changed (generation %d -> %d, version %s -> %s)",
			before.CredentialGeneration, st.CredentialGeneration, v1, st.CredentialVersion)
	}
	if st.AuthFailures != 0 {
		t.Errorf("phase A: %d rejected logins, want 0", st.AuthFailures)
	}
	if f.name == "slow-responses" && slowest >= slowStore {
		t.Errorf("phase A: a statement took %v: it waited for the slow store instead of using the cached credential", slowest)
	}

	// Phase B: ALTER ROLE; the store still misbehaves (or, if it works,
	// holds the new password in its own way).
	pw2 := w.password()
	setPassword(t, pg, role, pw2)
	v2 := ""
	if !failing {
		v2 = f.rotateStore(t, a, role, pw2)
	}
	// Requests are read before Stats: a fetch is counted before its
	// request is sent, so every request counted belongs to a counted fetch
	// (plus one fetch that may have been in flight at the start).
	getsBefore, before := a.gets(), c.Stats()
	start = time.Now()
	results := pings(t, ctx, db, callers)
	elapsed := time.Since(start)
	gets := a.gets() - getsBefore
	st = c.Stats()
	fetches := int(st.Fetches - before.Fetches + st.PendingFetches - before.PendingFetches)
	bound := maxFetches(elapsed, minBackoff, maxBackoff) + 2
	t.Logf("phase B (rotated away): %d callers in %v; %d fetches (bound %d), %d GetSecretValue requests; %d rejected logins",
		callers, elapsed.Round(time.Millisecond), fetches, bound, gets, st.AuthFailures-before.AuthFailures)
	if fetches > bound {
		t.Errorf("phase B: %d store calls in %v, more than the backoff allows (%d)", fetches, elapsed, bound)
	}
	if gets > int64(3*(fetches+1)) {
		t.Errorf("phase B: %d GetSecretValue requests for %d fetches: more than the SDK's 3 attempts each", gets, fetches)
	}
	for i, r := range results {
		w.checkErr(r.err)
		if !failing {
			if r.err != nil {
				t.Errorf("phase B caller %d: %v; the store works (slowly or in another format), so the rotation must be bridged", i, r.err)
			}
			continue
		}
		ae := wantRejected(t, d, r.err, "28P01", a.src.Describe(), role)
		if ae != nil && ae.FetchErr == nil {
			t.Errorf("phase B caller %d: the error does not carry the store's failure: %v", i, r.err)
		}
		if !errors.Is(r.err, rotating.ErrFetchFailed) {
			t.Errorf("phase B caller %d: %v does not match rotating.ErrFetchFailed", i, r.err)
		}
		var awsErr *awssm.Error
		if !errors.As(r.err, &awsErr) || awsErr.SecretID != a.id {
			t.Errorf("phase B caller %d: %v: want an *awssm.Error naming the secret", i, r.err)
		}
		f.cause(t, r.err)
		wantGaveUpInTime(t, fmt.Sprintf("phase B caller %d", i), r, ae, timing.wait)
	}
	if !failing && c.Stats().CredentialVersion != v2 {
		t.Errorf("phase B: cached version %q, want the rotated %q", c.Stats().CredentialVersion, v2)
	}

	// Phase C: the store is repaired and holds the new password.
	if failing {
		a.srv.ClearFaults()
		if a.srv.Versions(a.id) == nil {
			_, v2 = a.srv.CreateSecret(a.id, credJSON(role, pw2))
		} else {
			v2 = a.put(credJSON(role, pw2))
		}
		wantAllOK(t, "phase C caller", pings(t, ctx, db, callers))
		if got := c.Stats().CredentialVersion; got != v2 {
			t.Errorf("phase C: cached version %q, want the repaired store's %q", got, v2)
		}
	}
}

// uniqueRole returns a fresh role name for the test.
func uniqueRole(t *testing.T) string {
	return "r_" + randomHex(6) + "_" + sanitize(t.Name())
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			if c >= 'A' && c <= 'Z' {
				b[i] = c + 'a' - 'A'
			} else {
				b[i] = '_'
			}
		}
	}
	return string(b[:min(len(b), 40)])
}
