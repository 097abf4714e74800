package benchmarks

import (
	"context"
	"database/sql/driver"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/lib/pq"
	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/naive"
	"github.com/pgrotate/rotating/secrets"
)

// fakeLoginLatency is how long a login to the fake database takes: about
// what a password login to a local PostgreSQL costs, so that concurrent
// dialers overlap as they do against a real server.
const fakeLoginLatency = time.Millisecond

// storeLag is how far the store lags the database in the
// store=memory-lagging-1s case: the runbook order, ALTER ROLE first and the
// vault updated a second later.
const storeLag = time.Second

// Kinds of connector compared.
const (
	kindRotating  = "rotating"
	kindFetchEach = "fetch-per-connection"
	kindRefetch   = "refetch-on-auth-failure"
)

var connectorKinds = []string{kindRotating, kindFetchEach, kindRefetch}

// Store cases of BenchmarkStoreCalls.
const (
	storeFirst     = "memory"
	storeAWSWindow = "awssm-pending-window"
	storeLagging1s = "memory-lagging-1s"
)

var storeCases = []string{storeFirst, storeAWSWindow, storeLagging1s}

// BenchmarkStoreCalls counts secret-store calls and rejected logins per
// rotation when n concurrent dialers of one process meet it. Each op is one
// rotation met by a process that has been running (its connector has cached
// the credential in use; that first fetch and login are not counted): the
// rotation happens, then n goroutines call Connect at the same moment.
//
// store=memory: an in-memory store that is updated before the database
// (the order AWS's alternating-users rotation and a careful runbook give):
// the fresh credential is in the store when the first login fails.
//
// store=awssm-pending-window: AWS Secrets Manager (awssmtest) with a
// single-user rotation stopped between setSecret and finishSecret:
// AWSCURRENT holds the dead password and AWSPENDING the live one.
//
// store=memory-lagging-1s: the in-memory store gets the new password
// storeLag after the database (a runbook that runs ALTER ROLE first). The
// rotating Connector's Connect calls wait for it (the rotation wait, 10 s
// by default, exceeds the lag); the alternatives fail at once. This case
// costs at least storeLag per rotating op: scripts/bench.sh runs it with
// fewer ops than the others.
//
// The rotating Connector runs with the defaults (rotation wait
// DefaultRotationWait, backoff DefaultMinBackoff doubling to
// DefaultMaxBackoff), as an application that sets nothing. The database is
// a fake that accepts one password (see fakeDB). Metrics, per rotation:
// rejected-logins (logins the fake database rejected, counted by the
// database, not by the connector), store-calls (counted by the store) and
// failed-connects (Connect calls that returned an error; the rotating
// Connector must have none); and slowest-connect-ms, the median over the
// rotations of the slowest Connect of the herd (in the lagging case, how
// long the rotating Connector held its callers).
func BenchmarkStoreCalls(b *testing.B) {
	for _, store := range storeCases {
		b.Run("store="+store, func(b *testing.B) {
			for _, n := range []int{1, 16, 64, 256} {
				b.Run(fmt.Sprintf("dialers=%d", n), func(b *testing.B) {
					for _, kind := range connectorKinds {
						b.Run(kind, func(b *testing.B) { benchStoreCalls(b, store, n, kind) })
					}
				})
			}
		})
	}
}

// storeCase is a store wired to a fake database: the source the connectors
// read, its own count of calls, and the rotation.
type storeCase struct {
	src   secrets.Source
	calls func() int64
	// rotate changes the password to pw in the store and the database, in
	// the case's order. finish completes the rotation once the dialers are
	// done: afterwards store and database agree on pw.
	rotate func(pw string) (finish func())
}

// newStoreCase returns the store of case store, holding user with pw0 (the
// password db accepts), for up to n concurrent callers.
func newStoreCase(tb testing.TB, store string, n int, user, pw0 string, db *fakeDB) storeCase {
	tb.Helper()
	switch store {
	case storeFirst:
		ms := newMemStore(user, pw0)
		return storeCase{src: ms, calls: ms.calls.Load, rotate: func(pw string) func() {
			ms.setPassword(pw) // the store first,
			db.setPassword(pw) // then the database
			return func() {}
		}}
	case storeAWSWindow:
		e := startSM(tb, n)
		e.srv.CreateSecret(secretName, secretValue(tb, user, pw0))
		return storeCase{src: e.source(tb, 0), calls: e.getSecretValueCalls, rotate: func(pw string) func() {
			r := e.createSecret(tb, user, pw) // createSecret: AWSPENDING
			db.setPassword(pw)                // setSecret: ALTER ROLE
			return r.finishSecret             // finishSecret, after the dialers
		}}
	case storeLagging1s:
		ms := newMemStore(user, pw0)
		return storeCase{src: ms, calls: ms.calls.Load, rotate: func(pw string) func() {
			db.setPassword(pw) // the database first,
			updated := make(chan struct{})
			t := time.AfterFunc(storeLag, func() { // the store storeLag later
				ms.setPassword(pw)
				close(updated)
			})
			// Dialers that gave up before the lag was over (the
			// alternatives do at once) leave nothing to wait for: the store
			// is updated then, so that the next op starts from a store and
			// a database that agree.
			return func() {
				if t.Stop() {
					ms.setPassword(pw)
					return
				}
				<-updated
			}
		}}
	}
	tb.Fatalf("unknown store %q", store)
	return storeCase{}
}

func benchStoreCalls(b *testing.B, store string, n int, kind string) {
	const user = "app"
	db := newFakeDB("p0", fakeLoginLatency)
	sc := newStoreCase(b, store, n, user, "p0", db)

	var storeCalls, rejected, failed int64
	var slowest []time.Duration // per rotation, the slowest Connect of the herd
	b.ResetTimer()
	for r := 1; r <= b.N; r++ {
		b.StopTimer()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var c driver.Connector
		var closeConn func()
		switch kind {
		case kindRotating:
			// The defaults: DefaultRotationWait (10 s, more than storeLag)
			// and DefaultMinBackoff..DefaultMaxBackoff.
			rc := newRotating(b, "host=127.0.0.1 dbname=app sslmode=disable", sc.src,
				rotating.WithNewConnector(db.newConnector))
			c, closeConn = rc, func() { _ = rc.Close() }
		case kindFetchEach:
			c, closeConn = naive.PerLogin(sc.src, db.dial, &pq.Driver{}), func() {}
		case kindRefetch:
			c, closeConn = naive.RefetchOnAuthFailure(sc.src, db.dial, &pq.Driver{}, 1), func() {}
		}
		// The process has been running: one login with the current
		// credential, not counted.
		if err := login(ctx, c); err != nil {
			b.Fatalf("%s: login before the rotation: %v", kind, err)
		}
		finish := sc.rotate(fmt.Sprintf("p%d", r))
		callsBefore, rejectedBefore := sc.calls(), db.rejected.Load()

		took := make([]time.Duration, n)
		b.StartTimer()
		errs := herd(n, func(i int) (err error) { took[i], err = timedLogin(ctx, c); return err })
		b.StopTimer()
		slowest = append(slowest, slices.Max(took))

		storeCalls += sc.calls() - callsBefore
		rejected += db.rejected.Load() - rejectedBefore
		for _, err := range errs {
			if err == nil {
				continue
			}
			if kind == kindRotating {
				b.Fatalf("rotation %d: rotating Connect failed: %v", r, err)
			}
			if !naive.IsAuthFailure(err) {
				b.Fatalf("rotation %d: %s: unexpected error: %v", r, kind, err)
			}
			failed++
		}
		finish()
		closeConn()
		cancel()
	}
	b.ReportMetric(float64(rejected)/float64(b.N), "rejected-logins/rotation")
	b.ReportMetric(float64(storeCalls)/float64(b.N), "store-calls/rotation")
	b.ReportMetric(float64(failed)/float64(b.N), "failed-connects/rotation")
	b.ReportMetric(ms(percentile(slowest, 0.5)), "slowest-connect-ms")
	b.ReportMetric(0, "ns/op") // the time per op is mostly the connector's pacing, not a figure
}
