package awsintegration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
)

// TestEndpointFaults keeps the application running, with no rotation, while
// Secrets Manager answers every GetSecretValue in turn with
// ThrottlingException, with InternalServiceError (HTTP 500), and by hanging
// past the connector's fetch timeout. A background refresh every 100 ms
// makes the connector call the faulty endpoint; the cached credential still
// works, so no statement may fail and the credential must not change.
func TestEndpointFaults(t *testing.T) {
	const (
		workers      = 16
		fetchTimeout = 500 * time.Millisecond
		faultFor     = 1500 * time.Millisecond
	)
	e := newEnv(t)
	role, pw := e.newRole(t, "app")
	id := "prod/" + role
	e.logOnFailure(t, id)
	e.sm.CreateSecret(id, e.secretJSON(t, role, pw, nil))

	c, db := e.newApp(t, id,
		rotating.WithFetchTimeout(fetchTimeout),
		rotating.WithRefreshInterval(100*time.Millisecond),
		rotating.WithBackoff(50*time.Millisecond, 400*time.Millisecond))
	db.SetConnMaxLifetime(50 * time.Millisecond) // new logins all the time

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	table := createTable(ctx, t, db)
	load := startLoad(ctx, db, table, workers, 100_000, 10*time.Millisecond)
	load.waitAcks(ctx, t, workers, "the first inserts")
	start := c.Stats()

	faults := []struct {
		name  string
		fault awssmtest.Fault
		// inLog is what the log lines about the failed fetches say (any
		// of them). The SDK retries a ThrottlingException after a random
		// delay that mostly does not fit in the 500 ms fetch timeout, and
		// then reports only "request canceled, context deadline exceeded".
		inLog []string
	}{
		{"ThrottlingException", awssmtest.Fault{Error: "ThrottlingException"}, []string{"ThrottlingException", "deadline exceeded"}},
		{"InternalServiceError (500)", awssmtest.Fault{Error: "InternalServiceError"}, []string{"InternalServiceError"}},
		{fmt.Sprintf("hang (> %v fetch timeout)", fetchTimeout), awssmtest.Fault{Hang: true}, []string{"deadline exceeded"}},
	}
	var summary []string
	for _, f := range faults {
		before, failedBefore, okBefore := c.Stats(), load.Failed.Load(), load.OK.Load()
		warnsBefore := countAny(e.logs, f.inLog...)
		load.TakeSlowest()
		e.sm.ResetCalls()
		e.sm.InjectFault(awssmtest.OpGetSecretValue, f.fault)
		began := time.Now()
		testkit.WaitFor(ctx, t, 20*time.Second, "fetch errors under "+f.name, func() bool {
			return c.Stats().FetchErrors >= before.FetchErrors+2 && time.Since(began) >= faultFor
		})
		requests := e.sm.Calls(awssmtest.OpGetSecretValue)
		e.sm.ClearFaults()
		during := c.Stats()
		// Recovery: a fetch that succeeds after the fault is gone.
		testkit.WaitFor(ctx, t, 20*time.Second, "a successful fetch after "+f.name, func() bool {
			s := c.Stats()
			return s.Fetches-s.FetchErrors > during.Fetches-during.FetchErrors
		})
		after := c.Stats()
		line := fmt.Sprintf("%s: %d fetches, %d fetch errors, %d GetSecretValue requests (SDK retries included), %d log lines saying one of %q; "+
			"%d statements acknowledged, %d failed, slowest statement %v",
			f.name, during.Fetches-before.Fetches, during.FetchErrors-before.FetchErrors, requests,
			countAny(e.logs, f.inLog...)-warnsBefore, f.inLog, load.OK.Load()-okBefore, load.Failed.Load()-failedBefore,
			load.TakeSlowest().Round(time.Millisecond))
		summary = append(summary, line)
		t.Log(line)
		if during.FetchErrors == before.FetchErrors || requests == 0 {
			t.Errorf("%s: Stats().FetchErrors grew by %d with %d requests: the fault was never met",
				f.name, during.FetchErrors-before.FetchErrors, requests)
		}
		if countAny(e.logs, f.inLog...) == warnsBefore {
			t.Errorf("%s: no log line names the failure (%q)", f.name, f.inLog)
		}
		if after.CredentialChanges != start.CredentialChanges || after.CredentialGeneration != start.CredentialGeneration {
			t.Errorf("%s: the cached credential changed (generation %d -> %d)", f.name, start.CredentialGeneration, after.CredentialGeneration)
		}
	}
	load.finish()
	if ctx.Err() != nil {
		t.Fatalf("test ran out of time: %v", ctx.Err())
	}
	res := load.check(ctx, t, e.pg)
	st := c.Stats()
	t.Logf("endpoint faults: %d workers: %v; FetchErrors=%d; %s; stats: fetches %d, rejected logins %d, give-ups %d",
		workers, res, st.FetchErrors, strings.Join(summary, "; "), st.Fetches, st.AuthFailures, st.RecoveryFailures)
	if st.AuthFailures != 0 || st.RecoveryFailures != 0 {
		t.Errorf("Stats(): %d rejected logins and %d give-ups, want none", st.AuthFailures, st.RecoveryFailures)
	}
	e.assertNoPassword(t, "the application's logs", e.logs.String())
}
