package main

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
	"text/template"
)

// The hot path: a cached credential's Connect, through a no-op dial
// (BenchmarkConnectCached in the root package for the lib/pq seam,
// BenchmarkConnectCachedPgx in pgxv5 for the pgx path) and through real
// logins (BenchmarkRealConnect, one pair per driver).

// noopTarget is issue 9's bound on what the Connector adds to a no-op dial
// per cached Connect, with 0 allocations.
const noopTarget = 100 // ns

// hotRatioTarget is the least rotating/plain real-login ratio.
const hotRatioTarget = 0.98

// The drivers of BenchmarkRealConnect, as the document names them.
var realDrivers = []struct{ key, label, plain string }{
	{"pq", "lib/pq", "`pq.Connector`"},
	{"pgx", "pgx v5", "`stdlib.GetConnector`"},
}

var realContexts = []struct{ key, label string }{
	{"background", "`context.Background()`"},
	{"deadline", "context with a deadline"},
}

func realName(drv, ctx string) string { return fmt.Sprintf("%s%s/ctx=%s", realConnect, drv, ctx) }

// The cases of BenchmarkConnectCachedPgx, in the order of its table.
var pgxCachedCases = []struct{ key, label string }{
	{"direct", "direct (the no-op dial alone)"},
	{"boundConnector", "`boundConnector` alone (pgxv5's login bound around the no-op)"},
	{"rotating-driver", "rotating through `WithDriver`, the no-op as the credential's connector"},
	{"rotating-pgx", "rotating through `WithDriver`, the no-op as pgxv5 wraps a one-host login: the pgx path"},
	{"rotating-pgx-multihost", "the same for a DSN with several hosts (the no-op inside `boundConnector` too)"},
}

func pgxCachedName(ctx, c string) string { return fmt.Sprintf("%s%s/%s", cachedPgx, ctx, c) }

// noopCost is what the rotating case name adds to the direct no-op dial
// direct: nanoseconds per Connect, and the rotating case's allocations and
// bytes.
type noopCost struct {
	ns, over, allocs, bytes, directNs float64
}

func (r *results) noopCost(name, direct string) noopCost {
	return noopCost{
		ns: r.med(name, "ns/op"), over: r.med(name, "ns/op") - r.med(direct, "ns/op"),
		allocs: r.med(name, "allocs/op"), bytes: r.med(name, "B/op"), directNs: r.med(direct, "ns/op"),
	}
}

func (c noopCost) verdict() string {
	return verdict(c.over <= noopTarget && c.allocs == 0, c.over)
}

// summaryRow is the summary table's row for c.
func (c noopCost) summaryRow(label string) string {
	return fmt.Sprintf("| %s | %s ns, %s allocs (%s B) | no connector: %s ns | +%s ns | ≤ %d ns, 0 allocs | %s |\n",
		label, num(c.ns), num(c.allocs), num(c.bytes), num(c.directNs), num(c.over), noopTarget, c.verdict())
}

// hotRatio is rotating/plain logins per second over all runs.
func (r *results) hotRatio(drv, ctx string) float64 {
	name := realName(drv, ctx)
	return r.pooled(name, "rotating-conns/s") / r.pooled(name, "plain-conns/s")
}

// hotVerdict judges the hot-path ratio against hotRatioTarget, saying so
// when only the measures that resist noise meet it.
func (r *results) hotVerdict(drv, ctx string) string {
	v := r.hotRatio(drv, ctx)
	name := realName(drv, ctx)
	pair, med := r.med(name, "pair-ratio"), r.med(name, "median-ratio")
	switch {
	case math.IsNaN(v):
		return "not measured"
	case v >= hotRatioTarget:
		return "met"
	case pair >= hotRatioTarget && med >= hotRatioTarget:
		return fmt.Sprintf("**not met** by throughput; met login by login (%s) and by median login time (%s)", ratio(pair), ratio(med))
	default:
		return "**not met**"
	}
}

// writeHotPathSummary writes the summary table's hot-path rows.
func writeHotPathSummary(w *bytes.Buffer, r *results) {
	w.WriteString(r.noopCost(cachedRotating, cachedDirect).summaryRow(
		"connector cost per `Connect`, cached credential, no-op dial, lib/pq seam (`WithNewConnector`)"))
	w.WriteString(r.noopCost(pgxCachedName("background", "rotating-driver"), pgxCachedName("background", "direct")).summaryRow(
		"connector cost per `Connect`, cached credential, no-op dial, pgx: the Connector through `WithDriver`"))
	w.WriteString(r.noopCost(pgxCachedName("background", "rotating-pgx"), pgxCachedName("background", "direct")).summaryRow(
		"the same with what pgxv5 puts around a one-host login, the pgx path as built"))
	for _, d := range realDrivers {
		for _, c := range realContexts {
			name := realName(d.key, c.key)
			fmt.Fprintf(w, "| real logins/s, %s, %s | %s | plain %s: %s | %s (runs %s–%s) | ≥ %s | %s |\n", d.label, c.label,
				num(r.pooled(name, "rotating-conns/s")), d.plain, num(r.pooled(name, "plain-conns/s")),
				ratio(r.hotRatio(d.key, c.key)), ratio(r.lo(name, "ratio")), ratio(r.hi(name, "ratio")),
				strconv.FormatFloat(hotRatioTarget, 'f', -1, 64), r.hotVerdict(d.key, c.key))
		}
	}
}

type hotRow struct{ Label, Ns, Bytes, Allocs string }

type pgxCachedRow struct {
	Label string
	Cols  []string // ns/op, B/op, allocs/op for each of realContexts
}

type realRow struct {
	Driver, Plain, Context                                  string
	PlainRate, RotRate, Ratio, Runs, MedianRatio, PairRatio string
	Bytes, Allocs                                           string
}

var hotPathTemplate = template.Must(template.New("hotpath").Parse(`## 1. Hot path

### No-op dial

` + "`BenchmarkConnectCached`" + ` (root package): the connector's own cost per ` + "`Connect`" + ` with a cached credential, through a no-op dial that returns a prebuilt connection; ` + "`direct`" + ` calls the same no-op dial without the connector. The no-op enters through ` + "`WithNewConnector`" + `, lib/pq's seam, which replaces lib/pq's connector and with it the Connector's own bound on a lib/pq login (` + "`contextBoundConnector`" + ` in ` + "`dial.go`" + `: a ` + "`dialWatch`" + `, a ` + "`context.WithValue`" + ` and, for a context that can end, a ` + "`context.AfterFunc`" + ` per login, all allocated): that bound is part of the dial here, not of the figure.

| | ns/op | B/op | allocs/op |
|---|---|---|---|
{{range .Root}}| {{.Label}} | {{.Ns}} | {{.Bytes}} | {{.Allocs}} |
{{end}}
` + "`BenchmarkConnectCachedPgx`" + ` (package pgxv5): the same for the pgx path, layer by layer. For a DSN with one host, ` + "`pgxv5`" + ` bounds each login by the rotation wait with pgx's own ` + "`ConnConfig.ConnectTimeout`" + ` (inside pgx's login, which allocates anyway) and puts only ` + "`redacting`" + ` (which removes the password from pgx's login errors) around ` + "`stdlib.GetConnector`" + `; with several hosts, where ` + "`ConnectTimeout`" + ` applies per host, ` + "`boundConnector`" + ` bounds the whole login with ` + "`context.WithTimeout`" + `, unless the caller's context already ends sooner. Here the inner connector is the no-op. ` + "`background`" + ` is how database/sql calls ` + "`Connect`" + ` to refill its pool; ` + "`deadline`" + ` is a caller's context with a deadline (an hour, later than the rotation wait).

| | background ns/op | B/op | allocs/op | deadline ns/op | B/op | allocs/op |
|---|---|---|---|---|---|---|
{{range .Pgx}}| {{.Label}} |{{range .Cols}} {{.}} |{{end}}
{{end}}
{{.PgxFinding}}

### Real logins

` + "`BenchmarkRealConnect`" + `: real logins (` + "`Connect`" + ` then ` + "`Close`" + `, SCRAM-SHA-256 password authentication) to the local server, for one role, through the driver's own connector and through the rotating Connector over the same driver: lib/pq's ` + "`pq.NewConnectorConfig`" + ` beside the default Connector, and pgx's ` + "`stdlib.GetConnector`" + ` (on ` + "`pgx.ParseConfig`" + ` of the DSN with the password) beside ` + "`WithDriver(pgxv5.Driver())`" + `. The two of a pair alternate login by login (plain then rotating, then rotating then plain) so that changes in the machine's load fall on both; the store is not called (the benchmark fails if it is). The pairs run one after the other in the same run.

| driver | context | plain logins/s | rotating logins/s | ratio rotating/plain | ratio per run | by median login time | login by login (median of pairs) | B/op, allocs/op (one login of each) |
|---|---|---|---|---|---|---|---|---|
{{range .Real}}| {{.Driver}} ({{.Plain}}) | {{.Context}} | {{.PlainRate}} | {{.RotRate}} | {{.Ratio}} | {{.Runs}} | {{.MedianRatio}} | {{.PairRatio}} | {{.Bytes}}, {{.Allocs}} |
{{end}}
Logins per second are all logins of all runs over the time spent in them, and the ratio is rotating/plain of those (1: no cost; above 1: noise in rotating's favour); the ratio per run shows how much one run of {{.Ops}} logins each varies on this machine. The last two ratio columns make the same comparison in ways that a login slowed by other work on the machine cannot move: the ratio of the median login times, and the median over ops of plain/rotating time for the two logins of one op, which are made back to back (medians over the runs).

With a context that can end (` + "`deadline`" + `), the rotating Connector over lib/pq also registers the login's socket so that the caller's deadline bounds the whole login, which lib/pq alone does not do; pgx honours the context by itself. Over pgx the rotating Connector's logins are bounded by the rotation wait as well, with either context (` + "`ConnectTimeout`" + `, or ` + "`boundConnector`" + ` for several hosts).

`))

// pgxFinding explains the pgx path's no-op figures: the Connector's own
// cost, and what boundConnector adds when it is over the target.
func (r *results) pgxFinding() string {
	bg := func(c string) string { return pgxCachedName("background", c) }
	drv := r.noopCost(bg("rotating-driver"), bg("direct"))
	full := r.noopCost(bg("rotating-pgx"), bg("direct"))
	bound := r.noopCost(bg("boundConnector"), bg("direct"))
	if math.IsNaN(full.ns) {
		return "Not measured."
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Through the Driver seam the Connector itself adds %s ns and %s allocations to the no-op (through lib/pq's seam: %s ns). ",
		num(drv.over), num(drv.allocs), num(r.noopCost(cachedRotating, cachedDirect).over))
	multi := r.noopCost(bg("rotating-pgx-multihost"), bg("direct"))
	if full.over <= noopTarget && full.allocs == 0 {
		fmt.Fprintf(&b, "The pgx path as built for a one-host DSN adds %s ns and no allocation: within the target. ", num(full.over))
	} else {
		fmt.Fprintf(&b, "**Finding: the pgx path as built for a one-host DSN adds %s ns and %s allocations: over the target of %d ns and 0 allocations.** ",
			num(full.over), num(full.allocs), noopTarget)
	}
	fmt.Fprintf(&b, "With several hosts, `boundConnector`'s `context.WithTimeout` (a `timerCtx`, its runtime timer and two closures) adds %s ns, %s B and %s allocations per `Connect` (a caller whose deadline comes sooner than the rotation wait needs no timer and pays none); beside a real pgx login (about %s B in %s allocations, and milliseconds) that is small.",
		num(multi.over), num(bound.bytes), num(multi.allocs),
		num(r.med(realName("pgx", "background"), "B/op")/2), num(r.med(realName("pgx", "background"), "allocs/op")/2))
	return b.String()
}

func writeHotPath(w *bytes.Buffer, r *results) {
	data := struct {
		Root       []hotRow
		Pgx        []pgxCachedRow
		PgxFinding string
		Real       []realRow
		Ops        string
	}{PgxFinding: r.pgxFinding(), Ops: env("BENCH_REAL_CONNECT_OPS", "?")}
	for _, c := range []struct{ name, label string }{
		{cachedDirect, "direct (no connector)"}, {cachedRotating, "rotating"}, {cachedParallel, "rotating, `RunParallel` on all CPUs"},
	} {
		data.Root = append(data.Root, hotRow{c.label, num(r.med(c.name, "ns/op")), num(r.med(c.name, "B/op")), num(r.med(c.name, "allocs/op"))})
	}
	for _, c := range pgxCachedCases {
		row := pgxCachedRow{Label: c.label}
		for _, ctx := range realContexts {
			name := pgxCachedName(ctx.key, c.key)
			row.Cols = append(row.Cols, num(r.med(name, "ns/op")), num(r.med(name, "B/op")), num(r.med(name, "allocs/op")))
		}
		data.Pgx = append(data.Pgx, row)
	}
	for _, d := range realDrivers {
		for _, c := range realContexts {
			name := realName(d.key, c.key)
			data.Real = append(data.Real, realRow{
				Driver: d.label, Plain: d.plain, Context: c.key,
				PlainRate: num(r.pooled(name, "plain-conns/s")), RotRate: num(r.pooled(name, "rotating-conns/s")),
				Ratio: ratio(r.hotRatio(d.key, c.key)), Runs: joinRatios(r.all(name, "ratio")),
				MedianRatio: ratio(r.med(name, "median-ratio")), PairRatio: ratio(r.med(name, "pair-ratio")),
				Bytes: num(r.med(name, "B/op")), Allocs: num(r.med(name, "allocs/op")),
			})
		}
	}
	if err := hotPathTemplate.Execute(w, data); err != nil {
		fatal(err)
	}
}
