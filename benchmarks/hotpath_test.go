package benchmarks

import (
	"context"
	"database/sql/driver"
	"slices"
	"testing"
	"time"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/pgxv5"
)

// BenchmarkRealConnect measures real logins (Connect, then Close) to a local
// PostgreSQL server through a driver's own connector and through the
// rotating Connector over the same driver with a cached credential, for the
// same role: driver=pq is lib/pq's pq.NewConnectorConfig beside the default
// rotating Connector, driver=pgx is pgx's stdlib.GetConnector beside
// rotating.WithDriver(pgxv5.Driver()). The two of a pair are interleaved
// login by login, in alternating order (plain then rotating, rotating then
// plain), so that drift in the machine's load falls on both alike; each op
// is one login of each. Metrics: plain-conns/s and rotating-conns/s (logins
// per second of login time), ratio (rotating/plain; 1 means no cost) and
// median-ratio (the same by median login time, robust to the odd login
// slowed by other work).
//
// ctx=background logs in with context.Background(); ctx=deadline with a
// context that has a deadline, as database/sql callers usually pass. Over
// lib/pq the rotating Connector then also watches the login's socket so
// that the deadline bounds the whole login; pgx honours the context by
// itself. Over pgx, every rotating login is also bounded by the rotation
// wait (pgxv5's boundConnector), whatever the context.
func BenchmarkRealConnect(b *testing.B) {
	srv := pgtest.Shared(b)
	role, pw := pgtest.NewRole(b, srv)
	for _, d := range []struct {
		name  string
		plain driver.Connector
		opts  []rotating.Option
	}{
		{"pq", plainConnector(b, srv, role, pw), nil},
		{"pgx", plainPgxConnector(b, srv, role, pw), []rotating.Option{rotating.WithDriver(pgxv5.Driver())}},
	} {
		b.Run("driver="+d.name, func(b *testing.B) {
			store := newMemStore(role, pw)
			rot := newRotating(b, endpointDSN(srv), store, d.opts...)
			defer rot.Close()
			for _, withDeadline := range []bool{false, true} {
				name := "ctx=background"
				if withDeadline {
					name = "ctx=deadline"
				}
				b.Run(name, func(b *testing.B) {
					// For docs/benchmarks.md (a benchmark's log is always printed).
					b.Logf("PostgreSQL server version: %s", srv.Version)
					ctx := context.Background()
					if withDeadline {
						var cancel context.CancelFunc
						ctx, cancel = context.WithTimeout(ctx, time.Hour)
						defer cancel()
					}
					interleavedLogins(b, ctx, d.plain, rot)
					if n := store.calls.Load(); n != 1 {
						b.Fatalf("the store was called %d times; want 1 (first use only)", n)
					}
				})
			}
		})
	}
}

// interleavedLogins makes b.N logins through plain and b.N through rot,
// alternating, and reports BenchmarkRealConnect's metrics.
func interleavedLogins(b *testing.B, ctx context.Context, plain, rot driver.Connector) {
	// One login each before timing: the rotating Connector's first fetch
	// and the first backend of the role are not measured.
	for _, c := range []driver.Connector{plain, rot} {
		if err := login(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	var tPlain, tRot time.Duration
	dPlain, dRot := make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		// Which login is whose goes by a flag, not by comparing
		// connectors: pgx's is a struct value with func fields, which ==
		// cannot compare.
		order := [2]bool{false, true} // isRot
		if i%2 == 1 {
			order = [2]bool{true, false}
		}
		for _, isRot := range order {
			c := plain
			if isRot {
				c = rot
			}
			d, err := timedLogin(ctx, c)
			if err != nil {
				b.Fatal(err)
			}
			if isRot {
				tRot += d
				dRot = append(dRot, d)
			} else {
				tPlain += d
				dPlain = append(dPlain, d)
			}
		}
	}
	b.StopTimer()
	plainRate := float64(b.N) / tPlain.Seconds()
	rotRate := float64(b.N) / tRot.Seconds()
	b.ReportMetric(plainRate, "plain-conns/s")
	b.ReportMetric(rotRate, "rotating-conns/s")
	b.ReportMetric(rotRate/plainRate, "ratio")
	// The same comparison by median login time, which one login slowed by
	// other work on the machine cannot move.
	b.ReportMetric(float64(percentile(dPlain, 0.5))/float64(percentile(dRot, 0.5)), "median-ratio")
	// And login by login: the median of each op's plain/rotating time, the
	// two logins of an op being made back to back.
	pairs := make([]float64, b.N)
	for i := range pairs {
		pairs[i] = float64(dPlain[i]) / float64(dRot[i])
	}
	slices.Sort(pairs)
	b.ReportMetric(pairs[len(pairs)/2], "pair-ratio")
}
