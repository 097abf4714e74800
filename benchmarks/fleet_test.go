package benchmarks

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/pgrotate/rotating"
)

// AWS's GetSecretValue quota, requests per second per account and region.
const getSecretValueQuota = 10_000

// Fleet refresh scenario: a short refresh interval observed for a bounded
// time, so that one run shows the first refresh round and what follows.
const (
	fleetRefreshInterval = 2 * time.Second
	fleetObserve         = 6 * time.Second
)

// BenchmarkFleet runs N rotating Connectors, each standing for one
// application process with its own Secrets Manager client, against one
// local Secrets Manager endpoint (awssmtest on loopback) and a fake
// database, and records when every GetSecretValue request arrives.
//
// rotation: the fleet starts (every process logs in at once: the start
// burst), then a single-user rotation reaches the window between setSecret
// and finishSecret, and every process needs a new connection at the same
// moment: the worst case, every process meeting the rotation in the same
// instant. Each op is one such rotation.
//
// refresh: the fleet starts at once with WithRefreshInterval(2s) (±10%
// jitter) and is observed for 6 s with no rotation. Each op is one such run.
//
// Metrics: store-calls/process, peak-req/s (the most requests that arrived
// within any one second), peak-100ms-req/s (the most within any 100 ms,
// times ten), fleet-at-quota (the fleet size at which peak-req/s would reach
// AWS's 10,000/s, scaling linearly), and per scenario: burst-ms (first to
// last request of the rotation), start-peak-req/s; start-burst-ms and
// start-peak-100ms-req/s (the fleet's start, for comparison with its first
// periodic round), first-round-ms (first to
// last process's first periodic refresh), first-offset-min-s and
// first-offset-max-s (a process's first periodic refresh after its start),
// first-round-peak-100ms-req/s, after-first-round-req/s (the rate from the
// end of the first round to the end of the run) and
// refresh-calls/process/interval (periodic calls per process per refresh
// interval; one is the design); fetch-errors (failed store calls, which
// would mean the endpoint, not the fleet, set the pace).
func BenchmarkFleet(b *testing.B) {
	for _, scenario := range []string{"rotation", "refresh"} {
		b.Run(scenario, func(b *testing.B) {
			for _, n := range []int{100, 1000} {
				b.Run(fmt.Sprintf("processes=%d", n), func(b *testing.B) {
					if scenario == "rotation" {
						benchFleetRotation(b, n)
					} else {
						benchFleetRefresh(b, n)
					}
				})
			}
		})
	}
}

// fleet is n connectors sharing one endpoint and one fake database.
type fleet struct {
	e     *smEndpoint
	db    *fakeDB
	conns []*rotating.Connector
}

func newFleet(b *testing.B, e *smEndpoint, db *fakeDB, n int, opts ...rotating.Option) *fleet {
	f := &fleet{e: e, db: db}
	opts = append(opts, rotating.WithNewConnector(db.newConnector))
	for i := range n {
		f.conns = append(f.conns, newRotating(b, "host=127.0.0.1 dbname=app sslmode=disable", e.source(b, i), opts...))
	}
	return f
}

// loginAll makes every process log in once, all at the same moment, and
// fails b if any login fails.
func (f *fleet) loginAll(b *testing.B, what string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, err := range herd(len(f.conns), func(i int) error { return login(ctx, f.conns[i]) }) {
		if err != nil {
			b.Fatalf("%s: process %d: %v", what, i, err)
		}
	}
}

// close closes every connector and returns their fetch errors (the
// endpoint failing or timing out under the load), which would otherwise
// hide calls.
func (f *fleet) close() (fetchErrors uint64) {
	for _, c := range f.conns {
		fetchErrors += c.Stats().FetchErrors
		_ = c.Close()
	}
	return fetchErrors
}

func arrivalTimes(as []arrival) []time.Time {
	ts := make([]time.Time, len(as))
	for i, a := range as {
		ts[i] = a.at
	}
	return ts
}

func benchFleetRotation(b *testing.B, n int) {
	const user = "app"
	e := startSM(b, n)
	e.srv.CreateSecret(secretName, secretValue(b, user, "p0"))
	db := newFakeDB("p0", fakeLoginLatency)

	var calls, peak1s, peak100ms, startPeak, burst, fetchErrors float64
	b.ResetTimer()
	for r := 1; r <= b.N; r++ {
		b.StopTimer()
		f := newFleet(b, e, db, n)
		f.loginAll(b, "fleet start")
		start := arrivalTimes(e.takeArrivals())
		startPeak += float64(peakInWindow(start, time.Second))
		// Let the start's fetches age past the minimum backoff: the
		// rotation comes long after the start.
		time.Sleep(rotating.DefaultMinBackoff + 50*time.Millisecond)
		_ = e.takeArrivals()

		rot := e.createSecret(b, user, fmt.Sprintf("p%d", r)) // createSecret
		db.setPassword(fmt.Sprintf("p%d", r))                 // setSecret
		b.StartTimer()
		f.loginAll(b, "rotation")
		b.StopTimer()
		ts := arrivalTimes(e.takeArrivals())
		rot.finishSecret()
		fetchErrors += float64(f.close())

		calls += float64(len(ts))
		peak1s += float64(peakInWindow(ts, time.Second))
		peak100ms += float64(peakInWindow(ts, 100*time.Millisecond))
		if len(ts) > 0 {
			burst += ms(ts[len(ts)-1].Sub(ts[0]))
		}
	}
	N := float64(b.N)
	b.ReportMetric(calls/N/float64(n), "store-calls/process")
	b.ReportMetric(peak1s/N, "peak-req/s")
	b.ReportMetric(10*peak100ms/N, "peak-100ms-req/s")
	b.ReportMetric(burst/N, "burst-ms")
	b.ReportMetric(startPeak/N, "start-peak-req/s")
	b.ReportMetric(getSecretValueQuota*float64(n)/(peak1s/N), "fleet-at-quota")
	b.ReportMetric(fetchErrors/N, "fetch-errors")
	b.ReportMetric(0, "ns/op")
}

func benchFleetRefresh(b *testing.B, n int) {
	e := startSM(b, n)
	e.srv.CreateSecret(secretName, secretValue(b, "app", "p0"))
	db := newFakeDB("p0", fakeLoginLatency)

	var (
		calls, peak1s, peak100ms             float64
		firstSpan, firstPeak100ms, afterRate float64
		fetchErrors, startSpan, startPeak100 float64
		offMin, offMax                       = time.Duration(1 << 62), time.Duration(0)
		periodicPerInterval                  float64
	)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		f := newFleet(b, e, db, n, rotating.WithRefreshInterval(fleetRefreshInterval))
		_ = e.takeArrivals()
		t0 := time.Now()
		f.loginAll(b, "fleet start")
		// The start's fetch of each process.
		started := make(map[int]time.Time, n)
		startAs := e.takeArrivals()
		for _, a := range startAs {
			if _, ok := started[a.process]; !ok {
				started[a.process] = a.at
			}
		}
		if ts := arrivalTimes(startAs); len(ts) > 0 {
			startPeak100 += float64(peakInWindow(ts, 100*time.Millisecond)) // sorts ts
			startSpan += ms(ts[len(ts)-1].Sub(ts[0]))
		}
		b.StartTimer()
		time.Sleep(time.Until(t0.Add(fleetObserve)))
		b.StopTimer()
		as := e.takeArrivals()
		end := time.Now()
		fetchErrors += float64(f.close())

		// Each process's first periodic refresh.
		first := make(map[int]time.Time, n)
		for _, a := range as {
			if _, ok := first[a.process]; !ok {
				first[a.process] = a.at
			}
		}
		var round []time.Time
		var roundEnd time.Time
		for p, at := range first {
			round = append(round, at)
			if s, ok := started[p]; ok {
				off := at.Sub(s)
				offMin, offMax = min(offMin, off), max(offMax, off)
			}
			if at.After(roundEnd) {
				roundEnd = at
			}
		}
		if len(round) > 0 {
			slices.SortFunc(round, func(a, b time.Time) int { return a.Compare(b) })
			firstSpan += ms(round[len(round)-1].Sub(round[0]))
			firstPeak100ms += float64(peakInWindow(round, 100*time.Millisecond))
		}
		after := 0
		for _, a := range as {
			if a.at.After(roundEnd) {
				after++
			}
		}
		if d := end.Sub(roundEnd); d > 0 {
			afterRate += float64(after) / d.Seconds()
		}

		ts := arrivalTimes(as)
		calls += float64(len(ts))
		peak1s += float64(peakInWindow(ts, time.Second))
		peak100ms += float64(peakInWindow(ts, 100*time.Millisecond))
		periodicPerInterval += float64(len(ts)) / float64(n) / (end.Sub(t0).Seconds() / fleetRefreshInterval.Seconds())
	}
	N := float64(b.N)
	b.ReportMetric(calls/N/float64(n), "store-calls/process")
	b.ReportMetric(periodicPerInterval/N, "refresh-calls/process/interval")
	b.ReportMetric(peak1s/N, "peak-req/s")
	b.ReportMetric(10*peak100ms/N, "peak-100ms-req/s")
	b.ReportMetric(startSpan/N, "start-burst-ms")
	b.ReportMetric(10*startPeak100/N, "start-peak-100ms-req/s")
	b.ReportMetric(firstSpan/N, "first-round-ms")
	b.ReportMetric(10*firstPeak100ms/N, "first-round-peak-100ms-req/s")
	b.ReportMetric(offMin.Seconds(), "first-offset-min-s")
	b.ReportMetric(offMax.Seconds(), "first-offset-max-s")
	b.ReportMetric(afterRate/N, "after-first-round-req/s")
	b.ReportMetric(getSecretValueQuota*float64(n)/(peak1s/N), "fleet-at-quota")
	b.ReportMetric(fetchErrors/N, "fetch-errors")
	b.ReportMetric(0, "ns/op")
}
