package benchmarks

import (
	"context"
	"database/sql/driver"
	"fmt"
	"testing"
	"time"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/secrets"
)

// fakeLoginLatency is how long a login to the fake database takes: about
// what a password login to a local PostgreSQL costs, so that concurrent
// dialers overlap as they do against a real server.
const fakeLoginLatency = time.Millisecond

// Kinds of connector compared.
const (
	kindRotating  = "rotating"
	kindFetchEach = "fetch-per-connection"
	kindRefetch   = "refetch-on-auth-failure"
)

var connectorKinds = []string{kindRotating, kindFetchEach, kindRefetch}

// BenchmarkStoreCalls counts secret-store calls per rotation when n
// concurrent dialers of one process meet it. Each op is one rotation met by
// a process that has been running (its connector has cached the credential
// in use; that first fetch is not counted): the rotation happens, then n
// goroutines call Connect at the same moment.
//
// store=memory: an in-memory store that is updated before the database
// (the order AWS's alternating-users rotation and a careful runbook give):
// the fresh credential is in the store when the first login fails.
//
// store=awssm-pending-window: AWS Secrets Manager (awssmtest) with a
// single-user rotation stopped between setSecret and finishSecret:
// AWSCURRENT holds the dead password and AWSPENDING the live one.
//
// The database is a fake that accepts one password (see fakeDB). Metrics:
// store-calls/rotation, and failed-connects/rotation (Connect calls that
// returned an error; the rotating Connector must have none).
func BenchmarkStoreCalls(b *testing.B) {
	for _, store := range []string{"memory", "awssm-pending-window"} {
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

func benchStoreCalls(b *testing.B, store string, n int, kind string) {
	const user = "app"
	db := newFakeDB("p0", fakeLoginLatency)

	// The store, how to count its calls, and how to rotate it.
	var (
		src    secrets.Source
		calls  func() int64
		rotate func(pw string) (finish func())
	)
	switch store {
	case "memory":
		ms := newMemStore(user, "p0")
		src, calls = ms, ms.calls.Load
		rotate = func(pw string) func() {
			ms.setPassword(pw) // the store first,
			db.setPassword(pw) // then the database
			return func() {}
		}
	case "awssm-pending-window":
		e := startSM(b, n)
		e.srv.CreateSecret(secretName, secretValue(b, user, "p0"))
		src, calls = e.source(b, 0), e.getSecretValueCalls
		rotate = func(pw string) func() {
			r := e.createSecret(b, user, pw) // createSecret: AWSPENDING
			db.setPassword(pw)               // setSecret: ALTER ROLE
			return r.finishSecret            // finishSecret, after the dialers
		}
	default:
		b.Fatalf("unknown store %q", store)
	}

	var storeCalls, failed int64
	b.ResetTimer()
	for r := 1; r <= b.N; r++ {
		b.StopTimer()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var c driver.Connector
		var closeConn func()
		switch kind {
		case kindRotating:
			rc := newRotating(b, "host=127.0.0.1 dbname=app sslmode=disable", src,
				rotating.WithNewConnector(db.newConnector))
			c, closeConn = rc, func() { _ = rc.Close() }
		case kindFetchEach:
			c, closeConn = &fetchPerConnection{src: src, dial: db.dial}, func() {}
		case kindRefetch:
			c, closeConn = &refetchOnAuthFailure{src: src, dial: db.dial, retries: 1}, func() {}
		}
		// The process has been running: one login with the current
		// credential, not counted.
		if err := login(ctx, c); err != nil {
			b.Fatalf("%s: login before the rotation: %v", kind, err)
		}
		finish := rotate(fmt.Sprintf("p%d", r))
		before := calls()

		b.StartTimer()
		errs := herd(n, func(int) error { return login(ctx, c) })
		b.StopTimer()

		storeCalls += calls() - before
		for _, err := range errs {
			if err == nil {
				continue
			}
			if kind == kindRotating {
				b.Fatalf("rotation %d: rotating Connect failed: %v", r, err)
			}
			if !isAuthFailure(err) {
				b.Fatalf("rotation %d: %s: unexpected error: %v", r, kind, err)
			}
			failed++
		}
		finish()
		closeConn()
		cancel()
	}
	b.ReportMetric(float64(storeCalls)/float64(b.N), "store-calls/rotation")
	b.ReportMetric(float64(failed)/float64(b.N), "failed-connects/rotation")
	b.ReportMetric(0, "ns/op") // the time per op is mostly the connector's pacing, not a figure
}
