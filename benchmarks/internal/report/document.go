package main

import (
	"bytes"
	_ "embed"
	"fmt"
	"math"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/pgrotate/rotating"
)

// The document is document.md.tmpl over a document value: the template
// holds the prose and the tables' layout, the document the figures, each
// taken from the runs (medians, ranges) and formatted, and every judgement
// the prose makes (a verdict, a finding, a paragraph that applies only to
// some runs) derived from those figures here rather than written into the
// prose.
//
//go:embed document.md.tmpl
var documentText string

var documentTemplate = template.Must(template.New("document").Parse(documentText))

// The periodic-refresh scenario of BenchmarkFleet (fleetRefreshInterval and
// fleetObserve in benchmarks/fleet_test.go), with the connector's jitter of
// the interval (refresh.go).
const (
	fleetInterval = 2 * time.Second
	fleetObserve  = 6 * time.Second
	refreshJitter = 0.1
)

// refreshBound is the most periodic calls per process per interval taken as
// the design's one: half a call more allows for the run's edges.
const refreshBound = 1.5

type document struct {
	Date, Commit string
	Count        int

	HotPathSummary string // rows written by hotpath.go
	StoreSummary   []storeSummaryRow
	CostSummary    []costSummaryRow
	FleetSummary   []fleetSummaryRow

	CPU, NProc, Mem, Kernel, Go, PostgreSQL, LoadStart, LoadEnd, Duration string

	HotPath, StoreCalls string // sections written by hotpath.go and storecalls.go

	Rotations string // rotated logins per run (BENCH_ROTATIONS)
	Cost      []costRow
	CostDials []string // dials per rotated login: memory, awssm, pending window

	Quota         string
	FleetRotation []fleetRotationRow
	// RotationCalls is a rotation's store calls per process (the fleet of
	// 1,000), RotationFleetAtQuota the fleet that would reach the quota if
	// all met it within one second.
	RotationCalls, RotationFleetAtQuota string

	Refresh      refreshDesign
	FleetRefresh []fleetRefreshRow
	Jitter       jitterFigures
	// LateFirstRefresh is set when a first periodic refresh came after the
	// jittered interval (the machine could not serve the fleet in time).
	LateFirstRefresh *lateFirstRefresh
	// Finding is set when the fleet polled the store more often than once
	// per interval.
	Finding *refreshFinding

	// Vault is the HashiCorp Vault section, nil if it was not measured.
	Vault *vaultSection
	Agent []agentRow // BenchmarkAgentStoreCalls, by agentModes

	Commands string
	Raw      string
}

type storeSummaryRow struct {
	Dialers                                                   int
	Case                                                      string
	Rejected, RefetchRejected, FetchRejected                  string
	RefetchFailed, FetchFailed, RejectedRatio, RejectedBound  string
	RejectedVerdict                                           string
	Calls, RefetchCalls, FetchCalls, RefetchFewer, FetchFewer string
	WantCalls, CallsVerdict                                   string
}

type costSummaryRow struct {
	Label, Rotated, Ordinary, Budget, Ratio, OpRatio, Target, Verdict string
}

type fleetSummaryRow struct {
	Processes, Peak, OfQuota string
	// Rotation: FleetAtQuota; refresh: PerInterval and its Verdict.
	Refresh                            bool
	FleetAtQuota, PerInterval, Verdict string
}

type costRow struct {
	Store                                                      string
	OrdinaryP50, OrdinaryP99, RotatedP50, RotatedP99, ExtraP50 string
	Times, StoreCalls, OrdinarySamples                         string
	RejectedP50, PairP50, StoreP50, BudgetP50                  string
	Ratio, Ratios, OpRatio, OpRatios, Verdict                  string
}

type fleetRotationRow struct {
	Processes, Calls, StartPeak, Peak, Peak100ms, BurstMs, FleetAtQuota, FetchErrors string
}

type fleetRefreshRow struct {
	Processes, Calls, PerInterval, StartBurstMs, StartPeak100ms, FirstMin, FirstMax string
	FirstRoundMs, FirstRoundPeak100ms, After, Peak, FleetAtQuota, FetchErrors       string
}

// refreshDesign is what the periodic-refresh scenario should show by design.
type refreshDesign struct {
	Interval, Observe, JitterPercent string
	// The first periodic refresh falls within FirstLo..FirstHi of a
	// process's start; the run sees CallsLo to CallsHi periodic calls
	// per process, PerIntervalLo to PerIntervalHi per interval.
	FirstLo, FirstHi             string
	CallsLo, CallsHi             int
	PerIntervalLo, PerIntervalHi string
	// Span is the jitter's span as a fraction of the interval, SpreadMs
	// the same in milliseconds.
	Span, SpreadMs string
}

type jitterFigures struct {
	StartBurstMs, StartPeak100ms, RoundMs, RoundPeak100ms string
	// Derived: a fleet started in step reaches the quota at about
	// QuotaPerSecond × I processes (I in seconds); AtQuarterHour and AtHour
	// for I = 15 min and 1 h.
	QuotaPerSecond, AtQuarterHour, AtHour string
}

type lateFirstRefresh struct {
	Latest, Bound, NProc string
	// Finding says the finding below applies: early processes were
	// already polling again.
	Finding bool
}

type refreshFinding struct {
	PerInterval, Rate, Every string
	// MinBackoff is set when the rate is within a quarter of one call per
	// DefaultMinBackoff: the pace of the connector's store steps.
	MinBackoff   string
	FleetAtQuota string
	// Capped is set when the fleet of 1,000 sent well under what the rate
	// predicts: the machine, not the fleet, set the pace.
	Capped            bool
	Want, Sent, NProc string
}

func write(w *bytes.Buffer, r *results, commands string) {
	if err := documentTemplate.Execute(w, newDocument(r, commands)); err != nil {
		panic(err) // the template is fixed and every field is a plain value
	}
}

func newDocument(r *results, commands string) *document {
	d := &document{
		Date: env("BENCH_DATE", "?"), Commit: env("BENCH_COMMIT", "?"),
		Count: r.runs(realName("pq", "background"), "ratio"),
		CPU:   env("BENCH_CPU", "?"), NProc: env("BENCH_NPROC", "?"), Mem: env("BENCH_MEM", "?"),
		Kernel: env("BENCH_KERNEL", "?"), Go: env("BENCH_GO", "?"), PostgreSQL: cmp(r.pgVer, "?"),
		LoadStart: env("BENCH_LOAD_START", "?"), LoadEnd: env("BENCH_LOAD_END", "?"), Duration: env("BENCH_DURATION", "?"),
		Rotations: env("BENCH_ROTATIONS", "?"),
		Quota:     commas(strconv.Itoa(quota)),
		Commands:  commands,
		Raw:       strings.Join(r.raw, "\n"),
	}
	var b bytes.Buffer
	writeHotPathSummary(&b, r)
	d.HotPathSummary = b.String()
	b.Reset()
	writeHotPath(&b, r)
	d.HotPath = b.String()
	b.Reset()
	writeStoreCalls(&b, r)
	d.StoreCalls = b.String()

	d.summary(r)
	d.rotationCost(r)
	d.fleet(r)
	d.Vault = r.vault()
	d.agent(r)
	return d
}

func (d *document) summary(r *results) {
	for _, sc := range storeCallsCases() {
		n := 256
		rot, rf, fe := storeCallsName(sc.key, n, "rotating"), storeCallsName(sc.key, n, "refetch-on-auth-failure"), storeCallsName(sc.key, n, "fetch-per-connection")
		bound := rejectedBound(sc, n)
		d.StoreSummary = append(d.StoreSummary, storeSummaryRow{
			Dialers: n, Case: sc.label,
			Rejected: num(r.med(rot, "rejected-logins/rotation")), RefetchRejected: num(r.med(rf, "rejected-logins/rotation")),
			FetchRejected: num(r.med(fe, "rejected-logins/rotation")),
			RefetchFailed: num(r.med(rf, "failed-connects/rotation")), FetchFailed: num(r.med(fe, "failed-connects/rotation")),
			RejectedRatio:   times(r.med(rf, "rejected-logins/rotation") / r.med(rot, "rejected-logins/rotation")),
			RejectedBound:   num(bound),
			RejectedVerdict: verdict(r.hi(rot, "rejected-logins/rotation") <= bound, r.med(rot, "rejected-logins/rotation")),
			Calls:           num(r.med(rot, "store-calls/rotation")), RefetchCalls: num(r.med(rf, "store-calls/rotation")),
			FetchCalls:   num(r.med(fe, "store-calls/rotation")),
			RefetchFewer: times(r.med(rf, "store-calls/rotation") / r.med(rot, "store-calls/rotation")),
			FetchFewer:   times(r.med(fe, "store-calls/rotation") / r.med(rot, "store-calls/rotation")),
			WantCalls:    num(sc.wantCalls),
			CallsVerdict: verdict(r.hi(rot, "store-calls/rotation") <= sc.wantCalls, r.med(rot, "store-calls/rotation")),
		})
	}
	for _, st := range []struct{ store, label, target string }{
		{"awssm", "store updated first (awssm)", "one extra dial + one store call"},
		{"awssm-pending-window", "AWS pending window", "one extra dial + two store calls"},
	} {
		name := rotationCost + st.store
		d.CostSummary = append(d.CostSummary, costSummaryRow{
			Label: st.label, Rotated: num(r.med(name, "rotated-p50-ms")), Ordinary: num(r.med(name, "ordinary-p50-ms")),
			Budget: num(r.med(name, "budget-p50-ms")), Ratio: ratio(r.med(name, "rotated/budget")),
			OpRatio: ratio(r.med(name, "op-rotated/budget")), Target: st.target, Verdict: r.costVerdict(st.store),
		})
	}
	for _, n := range fleetSizes {
		name := fmt.Sprintf("%s%d", fleetRotation, n)
		d.FleetSummary = append(d.FleetSummary, fleetSummaryRow{
			Processes: commas(strconv.Itoa(n)), Peak: num(r.med(name, "peak-req/s")),
			OfQuota: ratio(r.med(name, "peak-req/s") / quota), FleetAtQuota: num(r.med(name, "fleet-at-quota")),
		})
	}
	for _, n := range fleetSizes {
		name := fmt.Sprintf("%s%d", fleetRefresh, n)
		per := r.med(name, "refresh-calls/process/interval")
		d.FleetSummary = append(d.FleetSummary, fleetSummaryRow{
			Refresh: true, Processes: commas(strconv.Itoa(n)), Peak: num(r.med(name, "peak-req/s")),
			OfQuota: ratio(r.med(name, "peak-req/s") / quota), PerInterval: num(per),
			Verdict: verdict(per <= refreshBound, per),
		})
	}
}

func (d *document) rotationCost(r *results) {
	for _, st := range []string{"memory", "awssm", "awssm-pending-window"} {
		name := rotationCost + st
		d.Cost = append(d.Cost, costRow{
			Store:       st,
			OrdinaryP50: num(r.med(name, "ordinary-p50-ms")), OrdinaryP99: num(r.med(name, "ordinary-p99-ms")),
			RotatedP50: num(r.med(name, "rotated-p50-ms")), RotatedP99: num(r.med(name, "rotated-p99-ms")),
			ExtraP50: num(r.med(name, "extra-p50-ms")), Times: times(r.med(name, "rotated-p50-ms") / r.med(name, "ordinary-p50-ms")),
			StoreCalls: num(r.med(name, "store-calls/rotation")), OrdinarySamples: num(r.med(name, "ordinary-samples")),
			RejectedP50: num(r.med(name, "rejected-login-p50-ms")), PairP50: num(r.med(name, "rejected+login-p50-ms")),
			StoreP50: num(r.med(name, "store-rt-p50-ms")), BudgetP50: num(r.med(name, "budget-p50-ms")),
			Ratio: ratio(r.med(name, "rotated/budget")), Ratios: joinRatios(r.all(name, "rotated/budget")),
			OpRatio: ratio(r.med(name, "op-rotated/budget")), OpRatios: joinRatios(r.all(name, "op-rotated/budget")),
			Verdict: r.costVerdict(st),
		})
		d.CostDials = append(d.CostDials, num(r.med(name, "dials/rotation")))
	}
}

func (d *document) fleet(r *results) {
	for _, n := range fleetSizes {
		name := fmt.Sprintf("%s%d", fleetRotation, n)
		d.FleetRotation = append(d.FleetRotation, fleetRotationRow{
			Processes: commas(strconv.Itoa(n)),
			Calls:     num(r.med(name, "store-calls/process")), StartPeak: num(r.med(name, "start-peak-req/s")),
			Peak: num(r.med(name, "peak-req/s")), Peak100ms: num(r.med(name, "peak-100ms-req/s")),
			BurstMs: num(r.med(name, "burst-ms")), FleetAtQuota: num(r.med(name, "fleet-at-quota")),
			FetchErrors: num(r.med(name, "fetch-errors")),
		})
	}
	rotCalls := r.med(fmt.Sprintf("%s%d", fleetRotation, 1000), "store-calls/process")
	d.RotationCalls = num(rotCalls)
	d.RotationFleetAtQuota = commas(strconv.Itoa(int(math.Round(quota / rotCalls))))

	// By design: a call per interval, jittered by ±refreshJitter.
	interval, observe := fleetInterval.Seconds(), fleetObserve.Seconds()
	lo, hi := interval*(1-refreshJitter), interval*(1+refreshJitter)
	callsLo, callsHi := int(observe/hi), int(observe/lo)
	d.Refresh = refreshDesign{
		Interval: plain(interval), Observe: plain(observe), JitterPercent: plain(100 * refreshJitter),
		FirstLo: plain(lo), FirstHi: plain(hi), CallsLo: callsLo, CallsHi: callsHi,
		PerIntervalLo: num(float64(callsLo) / (observe / interval)), PerIntervalHi: num(float64(callsHi) / (observe / interval)),
		Span: plain(2 * refreshJitter), SpreadMs: plain(math.Round(1000 * (hi - lo))),
	}
	for _, n := range fleetSizes {
		name := fmt.Sprintf("%s%d", fleetRefresh, n)
		d.FleetRefresh = append(d.FleetRefresh, fleetRefreshRow{
			Processes: commas(strconv.Itoa(n)),
			Calls:     num(r.med(name, "store-calls/process")), PerInterval: num(r.med(name, "refresh-calls/process/interval")),
			StartBurstMs: num(r.med(name, "start-burst-ms")), StartPeak100ms: num(r.med(name, "start-peak-100ms-req/s")),
			FirstMin: num(r.med(name, "first-offset-min-s")), FirstMax: num(r.med(name, "first-offset-max-s")),
			FirstRoundMs: num(r.med(name, "first-round-ms")), FirstRoundPeak100ms: num(r.med(name, "first-round-peak-100ms-req/s")),
			After: num(r.med(name, "after-first-round-req/s")), Peak: num(r.med(name, "peak-req/s")),
			FleetAtQuota: num(r.med(name, "fleet-at-quota")), FetchErrors: num(r.med(name, "fetch-errors")),
		})
	}

	small, big := fmt.Sprintf("%s%d", fleetRefresh, 100), fmt.Sprintf("%s%d", fleetRefresh, 1000)
	// A fleet started in step peaks at about N / (2 × jitter × I) requests
	// per second in its first round: the quota at N = quota × 2 × jitter × I.
	perSecond := quota * 2 * refreshJitter
	d.Jitter = jitterFigures{
		StartBurstMs: num(r.med(big, "start-burst-ms")), StartPeak100ms: num(r.med(big, "start-peak-100ms-req/s")),
		RoundMs: num(r.med(big, "first-round-ms")), RoundPeak100ms: num(r.med(big, "first-round-peak-100ms-req/s")),
		QuotaPerSecond: commas(strconv.Itoa(int(perSecond))),
		AtQuarterHour:  millions(perSecond * (15 * time.Minute).Seconds()),
		AtHour:         millions(perSecond * time.Hour.Seconds()),
	}

	per := r.med(small, "refresh-calls/process/interval")
	if per > refreshBound {
		rate := r.med(small, "after-first-round-req/s") / 100
		f := &refreshFinding{
			PerInterval: num(per), Rate: num(rate), Every: num(1000 / rate),
			FleetAtQuota: commas(strconv.Itoa(int(math.Round(quota / rate)))),
		}
		if perBackoff := 1 / rotating.DefaultMinBackoff.Seconds(); math.Abs(rate-perBackoff) <= perBackoff/4 {
			f.MinBackoff = plain(float64(rotating.DefaultMinBackoff.Milliseconds())) + " ms"
		}
		sent := r.med(big, "after-first-round-req/s")
		if want := 1000 * rate; sent < 0.8*want {
			f.Capped, f.Want, f.Sent, f.NProc = true, num(want), num(sent), d.NProc
		}
		d.Finding = f
	}
	// The latest first refresh, past the jitter's bound and a 100 ms margin.
	if latest := r.med(big, "first-offset-max-s"); latest > hi+0.1 {
		d.LateFirstRefresh = &lateFirstRefresh{Latest: num(latest), Bound: plain(hi), NProc: d.NProc, Finding: d.Finding != nil}
	}
}

// plain formats a constant of the design as short as it goes: "1.8".
func plain(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// millions formats a count of millions with one decimal: "1.8 million".
func millions(v float64) string {
	return strconv.FormatFloat(v/1e6, 'f', 1, 64) + " million"
}
