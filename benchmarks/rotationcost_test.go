package benchmarks

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/naive"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/secrets"
)

// BenchmarkRotationCost measures, against a real PostgreSQL server, the
// latency of a login that meets a rotation (its cached password was just
// changed with ALTER ROLE, so its first attempt is rejected with 28P01 and
// it recovers) beside ordinary logins with the cached credential. Each op is
// one rotation met by a process that has been running: a fresh Connector
// logs in once (its first fetch, not measured), makes ordinary logins for
// a little more than the minimum backoff (so that the rotation's refresh is
// not paced by the first fetch; real rotations are weeks apart), then the
// store and the database are rotated and one Connect is timed.
//
// The budget "one extra dial plus one store round trip" is measured in the
// same op: a login the server rejects followed at once by one it accepts,
// through lib/pq (the rotated login's two dials without the connector),
// plus one store call (Fetch on the same source) per store call the
// rotation made.
//
// store=memory: an in-memory store, updated before ALTER ROLE.
// store=awssm: AWS Secrets Manager (awssmtest on loopback), the new version
// put as AWSCURRENT before ALTER ROLE (one GetSecretValue expected).
// store=awssm-pending-window: single-user rotation between setSecret and
// finishSecret: AWSCURRENT is stale, AWSPENDING live (two expected).
//
// Metrics, in milliseconds: ordinary-p50/p99, rotated-p50/p99, extra-p50
// (rotated-p50 minus ordinary-p50), rejected-login-p50, rejected+login-p50
// (the pair), store-rt-p50, budget-p50 (the pair plus store-rt-p50 times the
// store calls per rotation); rotated/budget (at most 1 meets the target)
// and op-rotated/budget (the same op by op: the median over ops of the
// rotated login over that op's own pair and store call, which drift in the
// machine's load cannot move); store-calls/rotation and dials/rotation
// (from the Connector's Stats: the target is 2 dials and 1 store call, 2 in
// the pending window).
func BenchmarkRotationCost(b *testing.B) {
	for _, store := range []string{"memory", "awssm", "awssm-pending-window"} {
		b.Run("store="+store, func(b *testing.B) { benchRotationCost(b, store) })
	}
}

func benchRotationCost(b *testing.B, store string) {
	srv := pgtest.Shared(b)
	role, pw := pgtest.NewRole(b, srv)
	dsn := endpointDSN(srv)
	ctx := context.Background()

	var (
		src       secrets.Source
		storeRot  func(newPW string) (finish func()) // the store's part of the rotation
		storeCall = func() error { _, err := src.Fetch(ctx); return err }
	)
	switch store {
	case "memory":
		ms := newMemStore(role, pw)
		src = ms
		storeRot = func(newPW string) func() { ms.setPassword(newPW); return func() {} }
	case "awssm", "awssm-pending-window":
		e := startSM(b, 4)
		e.srv.CreateSecret(secretName, secretValue(b, role, pw))
		src = e.source(b, 0)
		if store == "awssm" {
			storeRot = func(newPW string) func() {
				e.srv.PutValue(secretName, secretValue(b, role, newPW)) // AWSCURRENT
				return func() {}
			}
		} else {
			storeRot = func(newPW string) func() { return e.createSecret(b, role, newPW).finishSecret }
		}
	default:
		b.Fatalf("unknown store %q", store)
	}

	var ordinary, rotated, rejected, pair, storeRT []time.Duration
	var storeCalls, dials uint64
	var opRatios []float64 // per op: rotated / (pair + calls × store call)
	// measurePair times the reference for "one extra dial": a login the
	// server rejects followed at once by one it accepts, through lib/pq.
	measurePair := func(badPW, goodPW string) {
		start := time.Now()
		d, err := timedLogin(ctx, plainConnector(b, srv, role, badPW))
		if !naive.IsAuthFailure(err) {
			b.Fatalf("login with a wrong password: %v, want 28P01", err)
		}
		if err := login(ctx, plainConnector(b, srv, role, goodPW)); err != nil {
			b.Fatal(err)
		}
		pair = append(pair, time.Since(start))
		rejected = append(rejected, d)
	}
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		c := newRotating(b, dsn, src)
		if err := login(ctx, c); err != nil { // first use: the one fetch
			b.Fatal(err)
		}
		warm := time.Now()
		for time.Since(warm) < rotating.DefaultMinBackoff+10*time.Millisecond {
			d, err := timedLogin(ctx, c)
			if err != nil {
				b.Fatal(err)
			}
			ordinary = append(ordinary, d)
		}

		oldPW, newPW := pw, pgtest.RandomPassword(b)
		// The reference pair is timed just before the rotation in even
		// ops and just after the rotated login in odd ones, so that the
		// state the server is in (idle or busy) falls on both alike.
		if i%2 == 0 {
			measurePair(newPW, oldPW)
		}
		finish := storeRot(newPW) // the store first (or AWSPENDING) ...
		alter, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := srv.SetPassword(alter, role, newPW); err != nil { // ... then ALTER ROLE
			b.Fatal(err)
		}
		cancel()
		pw = newPW

		before := c.Stats()
		b.StartTimer()
		rotatedLogin, err := timedLogin(ctx, c)
		b.StopTimer()
		if err != nil {
			b.Fatalf("rotated login: %v", err)
		}
		after := c.Stats()
		if after.AuthFailures == before.AuthFailures || after.Recoveries == before.Recoveries {
			b.Fatalf("the timed login did not meet the rotation: stats before %+v, after %+v", before, after)
		}
		rotated = append(rotated, rotatedLogin)
		calls := after.Fetches + after.PendingFetches - before.Fetches - before.PendingFetches
		storeCalls += calls
		dials += after.Dials - before.Dials
		if i%2 == 1 {
			measurePair(oldPW, newPW)
		}
		finish()
		_ = c.Close()

		// One store call, for the store's share of the budget.
		start := time.Now()
		if err := storeCall(); err != nil {
			b.Fatal(err)
		}
		rt := time.Since(start)
		storeRT = append(storeRT, rt)
		opRatios = append(opRatios, float64(rotatedLogin)/float64(pair[len(pair)-1]+time.Duration(calls)*rt))
	}

	callsPerRotation := float64(storeCalls) / float64(b.N)
	ordP50, rotP50 := percentile(ordinary, 0.5), percentile(rotated, 0.5)
	budget := ms(percentile(pair, 0.5)) + callsPerRotation*ms(percentile(storeRT, 0.5))
	b.ReportMetric(ms(ordP50), "ordinary-p50-ms")
	b.ReportMetric(ms(percentile(ordinary, 0.99)), "ordinary-p99-ms")
	b.ReportMetric(ms(rotP50), "rotated-p50-ms")
	b.ReportMetric(ms(percentile(rotated, 0.99)), "rotated-p99-ms")
	b.ReportMetric(ms(rotP50-ordP50), "extra-p50-ms")
	b.ReportMetric(ms(percentile(rejected, 0.5)), "rejected-login-p50-ms")
	b.ReportMetric(ms(percentile(pair, 0.5)), "rejected+login-p50-ms")
	b.ReportMetric(ms(percentile(storeRT, 0.5)), "store-rt-p50-ms")
	b.ReportMetric(budget, "budget-p50-ms")
	b.ReportMetric(ms(rotP50)/budget, "rotated/budget")
	slices.Sort(opRatios)
	b.ReportMetric(opRatios[len(opRatios)/2], "op-rotated/budget")
	b.ReportMetric(callsPerRotation, "store-calls/rotation")
	b.ReportMetric(float64(dials)/float64(b.N), "dials/rotation")
	b.ReportMetric(float64(len(ordinary)), "ordinary-samples")
	b.ReportMetric(0, "ns/op")
}
