package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pgrotate/rotating"
)

// Report is what a demo run measured. Tests read it; write prints it.
type Report struct {
	// Mode is "local" (everything started by the demo) or "external"
	// (-dsn/-secret-id).
	Mode     string
	Server   string // "PostgreSQL 15.4 on 127.0.0.1:5432 (throwaway)"
	SecretID string // the rotating approach's secret
	Strategy string // the AWS rotation strategy
	Workers  int
	Rate     int           // statements per second per approach; 0: unlimited
	Seconds  int           // whole seconds the workload ran
	Window   time.Duration // how long each rotation kept the store behind the database
	Recycle  time.Duration // how long each worker kept a connection

	// Interrupted is set when Ctrl-C cut the run short.
	Interrupted bool

	// Rotating is the library's run: sql.OpenDB(rotating.NewConnector(...)).
	Rotating ApproachResult
	// StartupFetches are the rotating approach's secret fetches before the
	// first rotation.
	StartupFetches FetchCounts
	// Rotations are the rotations that started, in order; PlannedRotations
	// how many were planned.
	Rotations        []RotationResult
	PlannedRotations int

	// Naive are the approaches of -compare, in the order static DSN,
	// secret fetched per login, pool rebuilt on auth error.
	Naive []ApproachResult

	// Endpoint is what the local Secrets Manager endpoint counted (local
	// mode only).
	Endpoint *EndpointCalls
}

// ApproachResult is one approach's workload.
type ApproachResult struct {
	Key  string // "rotating", "static", "per-login", "rebuild"
	Name string

	// Statements: INSERT ... RETURNING id, acknowledged or failed.
	OK, Failed int64
	// Rows the database acknowledged, rows found in the table afterwards,
	// and acknowledged rows not found.
	RowsAcked, RowsFound, RowsMissing int64
	// VerifyError is set if the table could not be read back.
	VerifyError string

	// Fetches are the approach's GetSecretValue calls, by staging label.
	Fetches FetchCounts
	// Logins are the approach's Connect calls.
	Logins LoginSummary
	// PerSecond counts statements by the second of the run they ended in.
	PerSecond []Second
	// Errors are the most frequent statement errors.
	Errors []ErrorCount
	// Stats are the connector's counters (rotating only).
	Stats *rotating.Stats
}

// FetchCounts counts GetSecretValue calls by staging label.
type FetchCounts struct {
	Current, Pending, Other int64
}

// Total is the number of calls.
func (f FetchCounts) Total() int64 { return f.Current + f.Pending + f.Other }

func (f FetchCounts) minus(g FetchCounts) FetchCounts {
	return FetchCounts{f.Current - g.Current, f.Pending - g.Pending, f.Other - g.Other}
}

// LoginSummary describes the Connect calls database/sql made, each timed
// from its call to its return.
type LoginSummary struct {
	// Ordinary are the successful Connects whose first attempt logged in.
	Ordinary LatencySummary
	// MetRotation are the successful Connects within which the database
	// rejected a login attempt: the connector bridged a rotation.
	MetRotation LatencySummary
	// Failed counts the Connects that returned an error.
	Failed int
}

// LatencySummary is the count and percentiles (nearest rank) of a set of
// durations.
type LatencySummary struct {
	N             int
	P50, P99, Max time.Duration
}

// Second is the statements that ended in one second of the run.
type Second struct {
	OK, Failed int64
}

// ErrorCount is a statement error and how often it occurred.
type ErrorCount struct {
	Error string
	Count int64
}

// RotationResult is one rotation and how the rotating approach went
// through it, from its start to the start of the next one.
type RotationResult struct {
	N    int
	Kind string // "single-user", "alternating-users" or "runbook"
	// Offsets from the start of the run; -1 if it did not happen. Open is
	// when the database changed (setSecret, ALTER ROLE), Close when the
	// store caught up (finishSecret, PutSecretValue).
	Start, End, Open, Close time.Duration
	// The rotating approach's GetSecretValue calls, rejected logins,
	// Connects that recovered from one and that gave up, and failed
	// statements.
	Fetches                     FetchCounts
	Rejected, Recovered, GaveUp uint64
	Failed                      int64
	// Bridged are the Connects that met this rotation and logged in.
	Bridged LatencySummary
	// Err is the rotation's error, "interrupted", or empty.
	Err string
}

// Window is how long the store was behind the database.
func (r RotationResult) Window() time.Duration {
	if r.Open < 0 || r.Close < 0 {
		return 0
	}
	return r.Close - r.Open
}

// EndpointCalls is what the local endpoint counted.
type EndpointCalls struct {
	// GetSecretValue calls from everyone, of which the applications (every
	// approach) and the operator (rotation functions, runbook) made these.
	GetSecretValue, Applications, Operator int64
	// Total is every call of every operation.
	Total int64
}

// Passed reports whether the rotating approach lost nothing: no failed
// statement, no missing row, every rotation done.
func (r *Report) Passed() bool {
	rot := r.Rotating
	if rot.Failed > 0 || rot.RowsMissing > 0 || rot.VerifyError != "" || rot.OK == 0 {
		return false
	}
	for _, x := range r.Rotations {
		if x.Err != "" {
			return false
		}
	}
	return len(r.Rotations) == r.PlannedRotations
}

// write prints the report.
func (r *Report) write(w io.Writer) {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	rot := r.Rotating

	p("\npgrotate demo report\n\n")
	if r.Mode == "external" {
		p("  setup       %s, secret %q in AWS Secrets Manager\n", r.Server, r.SecretID)
		p("              %s inserting rows through sql.OpenDB(rotating.NewConnector(...)) with the\n", r.workload())
		p("              awssm source, each worker logging in anew every %v, for %ds; pgrotate rotated nothing\n", r.Recycle, r.Seconds)
	} else {
		p("  setup       %s, local Secrets Manager endpoint\n", r.Server)
		p("              %s inserting rows through sql.OpenDB(rotating.NewConnector(...)) with the\n", r.workload())
		p("              awssm source, each worker logging in anew every %v, for %ds\n", r.Recycle, r.Seconds)
		p("  rotations   %d AWS four-step (%s; setSecret to finishSecret held %v), then 1 manual runbook\n",
			max(r.PlannedRotations-1, 0), r.Strategy, r.Window)
		p("              (ALTER ROLE, then PutSecretValue %v later)\n", r.Window)
	}
	if r.Interrupted {
		p("              INTERRUPTED after %ds: the figures cover what ran\n", r.Seconds)
	}
	p("\n")

	p("  statements  %d ok, %d failed (%s/s)\n", rot.OK, rot.Failed, perSecond(rot.OK, r.Seconds))
	if rot.VerifyError != "" {
		p("  rows        %d acknowledged; the table could not be read back: %s\n", rot.RowsAcked, rot.VerifyError)
	} else {
		p("  rows        %d acknowledged, %d in the table, %d missing\n", rot.RowsAcked, rot.RowsFound, rot.RowsMissing)
	}
	for _, e := range rot.Errors {
		p("  error       %d × %s\n", e.Count, e.Error)
	}

	ls := rot.Logins
	p("  logins      %d Connect calls (database/sql opening a connection), timed from call to return:\n",
		ls.Ordinary.N+ls.MetRotation.N+ls.Failed)
	p("                ordinary        %6d   p50 %8s   p99 %8s\n", ls.Ordinary.N, ms(ls.Ordinary.P50), ms(ls.Ordinary.P99))
	p("                met a rotation  %6d   p50 %8s   p99 %8s   max %s\n", ls.MetRotation.N, ms(ls.MetRotation.P50), ms(ls.MetRotation.P99), ms(ls.MetRotation.Max))
	if ls.Failed > 0 {
		p("                failed          %6d\n", ls.Failed)
	}
	p("              (a login met a rotation when the database rejected an attempt inside that Connect\n")
	p("              and the connector went on to log in with a newer credential; attempts are counted by\n")
	p("              a wrapper around lib/pq's connector, given with rotating.WithNewConnector)\n")
	if s := rot.Stats; s != nil {
		p("  connector   Stats(): %d fetches + %d AWSPENDING fetches, %d credential changes (%d from AWSPENDING),\n",
			s.Fetches, s.PendingFetches, s.CredentialChanges, s.PendingPromotions)
		p("              %d logins rejected, %d Connects recovered, %d gave up; now on generation %d\n",
			s.AuthFailures, s.Recoveries, s.RecoveryFailures, s.CredentialGeneration)
	}
	p("\n")

	if r.Mode != "external" || len(r.Rotations) > 0 {
		r.writeRotations(p)
	} else {
		p("  secret      %d GetSecretValue calls (%d AWSCURRENT, %d AWSPENDING) for %d statements and %d logins\n\n",
			rot.Fetches.Total(), rot.Fetches.Current, rot.Fetches.Pending, rot.OK+rot.Failed, ls.Ordinary.N+ls.MetRotation.N+ls.Failed)
	}
	r.writeTimeline(p)
	if len(r.Naive) > 0 {
		r.writeComparison(p)
	}

	switch {
	case r.Interrupted:
		p("  INTERRUPTED  %d statements failed and %d acknowledged rows are missing so far\n", rot.Failed, rot.RowsMissing)
	case r.Passed():
		n := len(r.Rotations)
		if n == 0 {
			p("  PASS  no statement failed and no acknowledged row is missing\n")
		} else {
			p("  PASS  no statement failed and no acknowledged row is missing through %d rotations\n", n)
		}
	default:
		p("  FAIL  %d statements failed, %d acknowledged rows are missing", rot.Failed, rot.RowsMissing)
		for _, x := range r.Rotations {
			if x.Err != "" {
				p("; rotation %d: %s", x.N, x.Err)
			}
		}
		p("\n")
	}
	io.WriteString(w, b.String())
}

func (r *Report) writeRotations(p func(string, ...any)) {
	rot := r.Rotating
	p("  rotations   what the rotating connector did, from each rotation's start to the next's:\n")
	p("                #  kind               starts  window  GetSecretValue     rejected  bridged logins              failed\n")
	p("                                                      CURRENT  PENDING   logins       n       p50       max  statements\n")
	p("                -  first login                        %7d  %7d\n", r.StartupFetches.Current, r.StartupFetches.Pending)
	runbook := false
	for _, x := range r.Rotations {
		p("               %2d  %-17s %7s %7s  %7d  %7d  %7d  %6d  %8s  %8s  %10d", x.N, x.Kind, secs(x.Start), secs(x.Window()),
			x.Fetches.Current, x.Fetches.Pending, x.Rejected, x.Recovered, ms(x.Bridged.P50), ms(x.Bridged.Max), x.Failed)
		if x.Err != "" {
			p("  %s", x.Err)
		}
		p("\n")
		runbook = runbook || x.Kind == kindRunbook && x.Rejected > 0
	}
	p("                   total                              %7d  %7d  %7d  %6d                      %10d\n",
		rot.Fetches.Current, rot.Fetches.Pending, sumRejected(r.Rotations), sumRecovered(r.Rotations), rot.Failed)
	p("              window: setSecret to finishSecret, or ALTER ROLE to PutSecretValue (the runbook)\n")
	if runbook {
		p("              in the runbook's window no credential in the store logs in: new logins wait for the\n")
		p("              store (re-checked with backoff) while open connections keep working\n")
	}
	logins := rot.Logins.Ordinary.N + rot.Logins.MetRotation.N + rot.Logins.Failed
	p("  secret      %d GetSecretValue calls by the application for %d statements and %d logins\n",
		rot.Fetches.Total(), rot.OK+rot.Failed, logins)
	if e := r.Endpoint; e != nil {
		who := "the application"
		if len(r.Naive) > 0 {
			who = "the applications (all approaches)"
		}
		p("              (the endpoint counted %d GetSecretValue calls: %d from %s,\n", e.GetSecretValue, e.Applications, who)
		p("              %d from the rotation functions and the runbook; %d calls of all operations)\n", e.Operator, e.Total)
	}
	p("\n")
}

const barWidth = 40

func (r *Report) writeTimeline(p func(string, ...any)) {
	rot := r.Rotating
	var peak int64
	for _, s := range rot.PerSecond {
		peak = max(peak, s.OK)
	}
	p("  timeline    statements acknowledged per second")
	if len(r.Rotations) > 0 {
		p("; ▲n: rotation n changes the database, ▼n: the store catches up")
	}
	p("\n")
	for sec, s := range rot.PerSecond {
		var marks []string
		for _, x := range r.Rotations {
			if in(x.Open, sec) {
				what := "setSecret"
				if x.Kind == kindRunbook {
					what = "ALTER ROLE"
				}
				marks = append(marks, fmt.Sprintf("▲%d %s", x.N, what))
			}
			if in(x.Close, sec) {
				what := "finishSecret"
				if x.Kind == kindRunbook {
					what = "PutSecretValue"
				}
				marks = append(marks, fmt.Sprintf("▼%d %s", x.N, what))
			}
		}
		if s.Failed > 0 {
			marks = append(marks, fmt.Sprintf("✗ %d failed", s.Failed))
		}
		p("    %3ds │%s %6d", sec, bar(s.OK, peak, barWidth), s.OK)
		if len(marks) > 0 {
			p("   %s", strings.Join(marks, ", "))
		}
		p("\n")
	}
	p("\n")
}

func (r *Report) writeComparison(p func(string, ...any)) {
	all := append([]ApproachResult{r.Rotating}, r.Naive...)
	p("  compare     the same workload at the same time on the same server, each approach with its own\n")
	p("              role, secret and table, and the same rotations applied to every secret at the same\n")
	p("              moments; they share the machine, so throughput is relative to rotating's\n\n")
	p("                approach                         ok   failed  missing  GetSecretValue  failed logins  throughput\n")
	for _, a := range all {
		missing := fmt.Sprint(a.RowsMissing)
		if a.VerifyError != "" {
			missing = "?"
		}
		ratio := "-"
		if r.Rotating.OK > 0 {
			ratio = fmt.Sprintf("%.2f", float64(a.OK)/float64(r.Rotating.OK))
		}
		p("                %-27s %8d %8d %8s %15d %14d %11s\n", a.Name, a.OK, a.Failed, missing, a.Fetches.Total(), a.Logins.Failed, ratio)
	}
	p("\n")
	var peak int64
	for _, a := range all {
		for _, s := range a.PerSecond {
			peak = max(peak, s.OK)
		}
	}
	p("                per second (▁ to █: 0 to %d statements; × a second with failures)\n", peak)
	for _, a := range all {
		p("                %-10s %s\n", a.Key, spark(a.PerSecond, peak))
		if a.Failed > 0 {
			var f strings.Builder
			for _, s := range a.PerSecond {
				if s.Failed > 0 {
					f.WriteString("×")
				} else {
					f.WriteString(" ")
				}
			}
			p("                %-10s %s\n", "  failed", strings.TrimRight(f.String(), " "))
		}
	}
	marks := []rune(strings.Repeat(" ", r.Seconds))
	for _, x := range r.Rotations {
		if x.Open >= 0 && int(x.Open/time.Second) < len(marks) {
			marks[int(x.Open/time.Second)] = rune('0' + x.N%10)
		}
	}
	p("                %-10s %s\n", "rotation", strings.TrimRight(string(marks), " "))
	for _, a := range r.Naive {
		if len(a.Errors) > 0 {
			p("                %s: %d × %s\n", a.Key, a.Errors[0].Count, a.Errors[0].Error)
		}
	}
	p("\n")
}

func (r *Report) workload() string {
	if r.Rate == 0 {
		return fmt.Sprintf("%d workers (unpaced)", r.Workers)
	}
	return fmt.Sprintf("%d workers (%d statements/s in all)", r.Workers, r.Rate)
}

// bar draws v of peak as a bar of width cells, in eighths of a cell.
func bar(v, peak int64, width int) string {
	if peak <= 0 {
		return strings.Repeat(" ", width)
	}
	eighths := int((v*int64(width)*8 + peak/2) / peak)
	if v > 0 && eighths == 0 {
		eighths = 1
	}
	partial := []string{"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"}
	s := strings.Repeat("█", eighths/8) + partial[eighths%8]
	return s + strings.Repeat(" ", width-len([]rune(s)))
}

// spark draws one character per second, ▁ to █ by statements acknowledged;
// a second with none is blank.
func spark(seconds []Second, peak int64) string {
	levels := []rune("▁▂▃▄▅▆▇█")
	var b strings.Builder
	for _, s := range seconds {
		if s.OK == 0 || peak == 0 {
			b.WriteRune(' ')
			continue
		}
		b.WriteRune(levels[min(int(s.OK*int64(len(levels))/(peak+1)), len(levels)-1)])
	}
	return b.String()
}

// in reports whether the offset d falls in second sec of the run.
func in(d time.Duration, sec int) bool {
	return d >= 0 && int(d/time.Second) == sec
}

func sumRejected(rs []RotationResult) (n uint64) {
	for _, r := range rs {
		n += r.Rejected
	}
	return n
}

func sumRecovered(rs []RotationResult) (n uint64) {
	for _, r := range rs {
		n += r.Recovered
	}
	return n
}

func perSecond(n int64, seconds int) string {
	if seconds <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", float64(n)/float64(seconds))
}

// ms formats d in milliseconds with one decimal (seconds from 1 s on),
// "-" for zero.
func ms(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

// secs formats d in seconds with one decimal; "-" for a negative d.
func secs(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}
