package main

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/pgrotate/rotating"
)

// The store cases of BenchmarkStoreCalls, as the document names them, with
// the rotating Connector's bounds in each.
type storeCallsCase struct {
	key   string // the benchmark's store= value
	label string
	// wantCalls bounds the store calls per rotation; extraRejected is the
	// rejected logins allowed beyond one per dialer (the re-checks of the
	// rejected credential while the store lags).
	wantCalls     float64
	extraRejected int
}

// storeLag is the lag of BenchmarkStoreCalls/store=memory-lagging-1s
// (storeLag in benchmarks/storecalls_test.go).
const storeLag = time.Second

// lagRechecks are the times, counted from the first store call after the
// rejection, at which the rotating Connector with the default backoff asks
// the store again and re-checks the rejected credential, up to the first
// that finds the store caught up: one per backoff step.
func lagRechecks() []time.Duration {
	var at []time.Duration
	t, b := time.Duration(0), rotating.DefaultMinBackoff
	for t < storeLag {
		t += b
		b = min(2*b, rotating.DefaultMaxBackoff)
		at = append(at, t)
	}
	return at
}

func storeCallsCases() []storeCallsCase {
	steps := len(lagRechecks())
	return []storeCallsCase{
		{key: "memory", label: "store updated first", wantCalls: 1},
		{key: "awssm-pending-window", label: "AWS pending window", wantCalls: 2},
		{key: "memory-lagging-1s", label: "store lagging 1 s", wantCalls: float64(steps + 1), extraRejected: steps},
	}
}

func storeCallsName(store string, n int, kind string) string {
	return fmt.Sprintf("%s%s/dialers=%d/%s", storeCalls, store, n, kind)
}

// spread is the median of the runs, with their range when they differ.
func (r *results) spread(name, unit string) string {
	m, lo, hi := r.med(name, unit), r.lo(name, unit), r.hi(name, unit)
	if lo == hi {
		return num(m)
	}
	return fmt.Sprintf("%s (%s–%s)", num(m), num(lo), num(hi))
}

// The kinds in the order of the table's column groups: the rotating
// Connector, then the peers' approach, then the simplest one.
var storeCallsKinds = []string{"rotating", "refetch-on-auth-failure", "fetch-per-connection"}

type storeCallsRow struct {
	Store                   string
	Dialers                 int
	Rejected, Calls, Failed []string // by storeCallsKinds
}

// storeCallsVerdict lists the rotating rows over their bounds, or says
// there is none.
func (r *results) storeCallsVerdict() string {
	var over []string
	measured := false
	for _, sc := range storeCallsCases() {
		for _, n := range dialerCounts {
			name := storeCallsName(sc.key, n, "rotating")
			if r.runs(name, "rejected-logins/rotation") == 0 {
				continue
			}
			measured = true
			if hi, bound := r.hi(name, "rejected-logins/rotation"), rejectedBound(sc, n); hi > bound {
				over = append(over, fmt.Sprintf("%s, %d dialers: up to %s rejected logins (bound %s)", sc.label, n, num(hi), num(bound)))
			}
			if hi := r.hi(name, "store-calls/rotation"); hi > sc.wantCalls {
				over = append(over, fmt.Sprintf("%s, %d dialers: up to %s store calls (bound %s)", sc.label, n, num(hi), num(sc.wantCalls)))
			}
			if hi := r.hi(name, "failed-connects/rotation"); hi > 0 {
				over = append(over, fmt.Sprintf("%s, %d dialers: %s failed connects", sc.label, n, num(hi)))
			}
		}
	}
	switch {
	case !measured:
		return "Not measured."
	case len(over) == 0:
		return "Every run of the rotating Connector is within these bounds."
	}
	return "**Over the bounds:** " + strings.Join(over, "; ") + "."
}

// rejectedBound is the rotating Connector's bound on rejected logins per
// rotation with n dialers in case sc, as the document states it.
func rejectedBound(sc storeCallsCase, n int) float64 { return float64(n + sc.extraRejected) }

func seconds(ds []time.Duration) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
	}
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

var storeCallsTemplate = template.Must(template.New("storecalls").Parse(`## 2. Rejected logins and store calls per rotation

` + "`BenchmarkStoreCalls`" + `: a process whose connector has cached the credential in use meets one rotation; then n goroutines call ` + "`Connect`" + ` at the same moment. Per rotation it counts:

- **rejected logins**: logins the database answered with ` + "`28P01`" + `, counted by the fake database itself (what the server's log, a failed-login alarm or an LDAP lockout sees), not by the connector;
- **store calls**: calls that reached the secret store (` + "`GetSecretValue`" + ` requests at the Secrets Manager endpoint, ` + "`Fetch`" + ` calls of the in-memory store); the warm-up fetch before the rotation is not counted;
- **failed connects**: ` + "`Connect`" + ` calls that returned an error (in these runs every one ended with the database's rejection: the benchmark fails on any other error).

The database is a fake that accepts one password and answers others with ` + "`28P01`" + ` after {{.Latency}} (` + "`WithNewConnector`" + `), so that the n logins overlap as they do against a real server. The rotating Connector runs with its defaults, as an application that sets no option: rotation wait {{.RotationWait}}, store calls paced by a backoff of {{.MinBackoff}} doubling to {{.MaxBackoff}}.

The alternatives (` + "`internal/naive`, shared with `pgrotate demo`" + `): **refetch-on-auth-failure** caches the credential and, when a login is rejected, refetches it and retries once: each failing dial does its own refetch, with no coalescing and no knowledge of AWSPENDING (what the peers do; one retry is the most frugal of them, so the comparison favours the alternative). **fetch-per-connection** calls the store before every login.

The store cases:

- **store updated first**: an in-memory store, then the database (AWS's alternating-users rotation, a careful runbook): the new password is in the store when the first login fails. {{.Ops}} rotations per run.
- **AWS pending window**: ` + "`awssm`" + ` against ` + "`awssmtest`" + `, a single-user rotation between setSecret and finishSecret: AWSCURRENT holds the dead password, AWSPENDING the live one. {{.Ops}} rotations per run.
- **store lagging 1 s**: an in-memory store that gets the new password 1 s after ` + "`ALTER ROLE`" + ` (a runbook that changes the database first). {{.LaggingOps}} rotations per run, as each costs more than a second; after the herd the store is updated at once if the second is not over (the alternatives gave up within milliseconds), so that every rotation starts from a store and a database that agree.

What to expect of the rotating Connector: one rejected login per dialer that was already dialing the cached password when it died (the herd is released at once, so up to n), and none from a caller that found the credential known to be rejected; the store asked once for all of them (twice in the AWS window: AWSCURRENT, then AWSPENDING). While the store lags, one store call and one re-check of the rejected credential per backoff step for the whole process: at {{.Rechecks}} s after the first store call, so up to n + {{.Steps}} rejected logins and {{.LagCalls}} store calls (the last re-check runs beside the store call that finds the new password). refetch-on-auth-failure has one rejected login per dialer per attempt: n when the store is ahead of the database, 2n and n failed connects when it is behind. refetch is refetch-on-auth-failure and fetch is fetch-per-connection below; medians over the runs, with the range where the runs differ.

| store | dialers | rejected logins: rotating | refetch | fetch | store calls: rotating | refetch | fetch | failed connects: rotating | refetch | fetch |
|---|---|---|---|---|---|---|---|---|---|---|
{{range .Rows}}| {{.Store}} | {{.Dialers}} |{{range .Rejected}} {{.}} |{{end}}{{range .Calls}} {{.}} |{{end}}{{range .Failed}} {{.}} |{{end}}
{{end}}
{{.Verdict}} With the store lagging, the rotating Connector's callers waited for it: the slowest ` + "`Connect`" + ` of a rotation returned after {{.LagWait}} ms with 1, 16, 64 and 256 dialers (median over the rotations), at the first backoff step after the store caught up.

fetch-per-connection makes one store call per login whether or not a rotation happens: its store calls are the cost of every burst of n logins. Neither alternative survives a store that is behind the database (the AWS window, the lagging store): both read the dead password and fail every ` + "`Connect`" + ` until the store catches up.

`))

func writeStoreCalls(w *bytes.Buffer, r *results) {
	rechecks := lagRechecks()
	cases := storeCallsCases()
	data := struct {
		Latency, RotationWait, MinBackoff, MaxBackoff string
		Ops, LaggingOps                               string
		Rechecks                                      string
		Steps                                         int
		LagCalls                                      string
		Rows                                          []storeCallsRow
		Verdict                                       string
		LagWait                                       string
	}{
		Latency:      "1 ms", // fakeLoginLatency in benchmarks/storecalls_test.go
		RotationWait: rotating.DefaultRotationWait.String(),
		MinBackoff:   rotating.DefaultMinBackoff.String(),
		MaxBackoff:   rotating.DefaultMaxBackoff.String(),
		Ops:          env("BENCH_STORE_CALLS_OPS", "?"),
		LaggingOps:   env("BENCH_LAGGING_OPS", "?"),
		Rechecks:     seconds(rechecks),
		Steps:        len(rechecks),
		LagCalls:     num(cases[2].wantCalls),
		Verdict:      r.storeCallsVerdict(),
	}
	var waits []string
	for _, n := range dialerCounts {
		waits = append(waits, num(r.med(storeCallsName(cases[2].key, n, "rotating"), "slowest-connect-ms")))
	}
	data.LagWait = strings.Join(waits, ", ")
	for _, sc := range cases {
		for _, n := range dialerCounts {
			row := storeCallsRow{Store: sc.label, Dialers: n}
			for _, k := range storeCallsKinds {
				name := storeCallsName(sc.key, n, k)
				row.Rejected = append(row.Rejected, r.spread(name, "rejected-logins/rotation"))
				row.Calls = append(row.Calls, r.spread(name, "store-calls/rotation"))
				row.Failed = append(row.Failed, r.spread(name, "failed-connects/rotation"))
			}
			data.Rows = append(data.Rows, row)
		}
	}
	if err := storeCallsTemplate.Execute(w, data); err != nil {
		fatal(err)
	}
}
