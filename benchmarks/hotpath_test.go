package benchmarks

import (
	"context"
	"database/sql/driver"
	"slices"
	"testing"
	"time"

	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
)

// BenchmarkRealConnect measures real logins (Connect, then Close) to a local
// PostgreSQL server through lib/pq's own connector and through the rotating
// Connector with a cached credential, for the same role. The two are
// interleaved login by login, in alternating order (plain then rotating,
// rotating then plain), so that drift in the machine's load falls on both
// alike; each op is one login of each. Metrics: plain-conns/s and
// rotating-conns/s (logins per second of login time), ratio
// (rotating/plain; 1 means no cost) and median-ratio (the same by median
// login time, robust to the odd login slowed by other work).
//
// ctx=background logs in with context.Background(); ctx=deadline with a
// context that has a deadline, as database/sql callers usually pass, for
// which the rotating Connector also watches the login's socket so that the
// deadline bounds the whole login.
func BenchmarkRealConnect(b *testing.B) {
	srv := pgtest.Shared(b)
	role, pw := newRole(b, srv)
	plain := plainConnector(b, srv, role, pw)
	store := newMemStore(role, pw)
	rot := newRotating(b, endpointDSN(srv), store)
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
			// One login each before timing: the rotating Connector's first
			// fetch and the first backend of the role are not measured.
			for _, c := range []driver.Connector{plain, rot} {
				if err := login(ctx, c); err != nil {
					b.Fatal(err)
				}
			}
			var tPlain, tRot time.Duration
			dPlain, dRot := make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				order := []driver.Connector{plain, rot}
				if i%2 == 1 {
					order[0], order[1] = rot, plain
				}
				for _, c := range order {
					d, err := timedLogin(ctx, c)
					if err != nil {
						b.Fatal(err)
					}
					if c == plain {
						tPlain += d
						dPlain = append(dPlain, d)
					} else {
						tRot += d
						dRot = append(dRot, d)
					}
				}
			}
			b.StopTimer()
			if n := store.calls.Load(); n != 1 {
				b.Fatalf("the store was called %d times; want 1 (first use only)", n)
			}
			plainRate := float64(b.N) / tPlain.Seconds()
			rotRate := float64(b.N) / tRot.Seconds()
			b.ReportMetric(plainRate, "plain-conns/s")
			b.ReportMetric(rotRate, "rotating-conns/s")
			b.ReportMetric(rotRate/plainRate, "ratio")
			// The same comparison by median login time, which one login
			// slowed by other work on the machine cannot move.
			b.ReportMetric(float64(percentile(dPlain, 0.5))/float64(percentile(dRot, 0.5)), "median-ratio")
			// And login by login: the median of each op's plain/rotating
			// time, the two logins of an op being made back to back.
			pairs := make([]float64, b.N)
			for i := range pairs {
				pairs[i] = float64(dPlain[i]) / float64(dRot[i])
			}
			slices.Sort(pairs)
			b.ReportMetric(pairs[len(pairs)/2], "pair-ratio")
		})
	}
}
