package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"text/template"
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
	Driver   string // the driver every approach logged in with: "lib/pq" or "pgx"
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
	// first rotation; StartupRejected and StartupLogged its rejected logins
	// then, as the connector and the server log counted them.
	StartupFetches  FetchCounts
	StartupRejected uint64
	StartupLogged   int64
	// Roles are the rotating approach's roles (two with alternating users),
	// whose refused logins the server log shows. ServerLogNote says why
	// the server-log figures are missing, if they are (Logged is -1 then).
	Roles         []string
	ServerLogNote string
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

	// Vault is set with -store vault: the role, its settings, the calls
	// the server counted and the leases it made. StartupVault are the
	// application's Vault calls before the first rotation (a static
	// role's).
	Vault        *VaultRun
	StartupVault VaultCalls
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
	// Vault are the approach's Vault calls (-store vault).
	Vault VaultCalls
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
	Vault                       VaultCalls
	Rejected, Recovered, GaveUp uint64
	Failed                      int64
	// Logged counts the server log's lines `password authentication failed
	// for user "<role>"` for the rotating approach's roles, -1 if the log
	// could not be read; RotationRefused counts those of them that the
	// rotation function caused (its setSecret first tries AWSPENDING).
	Logged, RotationRefused int64
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

// AppLogged is the application's refused logins in the server log:
// Logged less the rotation function's; -1 if the log could not be read.
func (r RotationResult) AppLogged() int64 {
	if r.Logged < 0 {
		return -1
	}
	return r.Logged - r.RotationRefused
}

// RejectedLogins is the application's refused logins in the rotation: as
// the server logged them if the demo could read its log, else as the
// connector counted them (Stats().AuthFailures).
func (r RotationResult) RejectedLogins() int64 {
	if r.Logged < 0 {
		return int64(r.Rejected)
	}
	return r.AppLogged()
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
	if v := r.Vault; v != nil && v.Role == roleDynamic && (len(v.Leases) == 0 || v.SessionsPastEnd() > 0) {
		return false
	}
	return len(r.Rotations) == r.PlannedRotations
}

// write prints the report.
func (r *Report) write(w io.Writer) {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	rot := r.Rotating

	p("\npgrotate demo report\n\n")
	if r.Vault != nil {
		r.writeVaultSetup(&b)
	} else if r.Mode == "external" {
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
	p("  driver      %s\n", r.driverText())
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
	logins := [][]any{
		{"ordinary", ls.Ordinary.N, "p50 " + ms(ls.Ordinary.P50), "p99 " + ms(ls.Ordinary.P99)},
		{"met a rotation", ls.MetRotation.N, "p50 " + ms(ls.MetRotation.P50), "p99 " + ms(ls.MetRotation.P99), "max " + ms(ls.MetRotation.Max)},
	}
	if ls.Failed > 0 {
		logins = append(logins, []any{"failed", ls.Failed})
	}
	p("%s", table("                ", logins...))
	p("              (a login met a rotation when the database rejected an attempt inside that Connect\n")
	p("              and the connector went on to log in with a newer credential; attempts are counted by\n")
	if r.Driver == string(driverPGX) {
		p("              a wrapper around the pgxv5 driver's connectors, given with rotating.WithDriver)\n")
	} else {
		p("              a wrapper around lib/pq's connector, given with rotating.WithNewConnector)\n")
	}
	if s := rot.Stats; s != nil && r.Vault != nil {
		p("  connector   Stats(): %d fetches + %d FetchPending calls, %d credential changes, %d connections retired\n",
			s.Fetches, s.PendingFetches, s.CredentialChanges, s.RetiredConnections)
		p("              before their sessions' end, %d logins rejected, %d Connects recovered, %d gave up;\n",
			s.AuthFailures, s.Recoveries, s.RecoveryFailures)
		p("              now on generation %d\n", s.CredentialGeneration)
	} else if s != nil {
		p("  connector   Stats(): %d fetches + %d AWSPENDING fetches, %d credential changes (%d from AWSPENDING),\n",
			s.Fetches, s.PendingFetches, s.CredentialChanges, s.PendingPromotions)
		p("              %d logins rejected, %d Connects recovered, %d gave up; now on generation %d\n",
			s.AuthFailures, s.Recoveries, s.RecoveryFailures, s.CredentialGeneration)
	}
	p("\n")

	if r.Vault != nil {
		r.writeVault(&b)
	} else if r.Mode != "external" || len(r.Rotations) > 0 {
		r.writeRotations(&b)
	} else {
		p("  secret      %d GetSecretValue calls (%d AWSCURRENT, %d AWSPENDING) for %d statements and %d logins\n",
			rot.Fetches.Total(), rot.Fetches.Current, rot.Fetches.Pending, rot.OK+rot.Failed, ls.Ordinary.N+ls.MetRotation.N+ls.Failed)
		if s := rot.Stats; s != nil {
			// Rotations here are the user's, at times the demo does not
			// know: one figure for the run, from the connector alone.
			p("  rejected    %d of the application's logins rejected, as the connector counted them (Stats().AuthFailures);\n", s.AuthFailures)
			p("              not checked against the server log: %s\n", r.ServerLogNote)
		}
		p("\n")
	}
	r.writeTimeline(p)
	if len(r.Naive) > 0 {
		r.writeComparison(p)
	}

	switch {
	case r.Interrupted:
		p("  INTERRUPTED  %d statements failed and %d acknowledged rows are missing so far\n", rot.Failed, rot.RowsMissing)
	case r.Passed() && r.Vault != nil && r.Vault.Role == roleDynamic:
		p("  PASS  no statement failed, no acknowledged row is missing, and no session outlived its lease\n")
		p("        (%d leases ended during the run)\n", r.Vault.LeasesEnded())
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
		if v := r.Vault; v != nil && v.Role == roleDynamic {
			p("; %d sessions alive past a lease end", v.SessionsPastEnd())
			if len(v.Leases) == 0 {
				p("; no lease was read")
			}
		}
		p("\n")
	}
	io.WriteString(w, b.String())
}

// rotationsReport is the report's rotations section: the table of
// rotations, what its columns mean, the check of rejected logins, and the
// secret calls.
var rotationsReport = template.Must(template.New("rotations").Funcs(template.FuncMap{"join": joinCounts}).Parse(
	`  rotations   what the rotating connector did, from each rotation's start to the next's:
{{.RotationTable}}              window: setSecret to finishSecret, or ALTER ROLE to PutSecretValue (the runbook)
              AWSCURRENT, AWSPENDING: the application's GetSecretValue calls, by staging label
              rejected: logins the database rejected, as the connector counted them (Stats().AuthFailures)
{{- if .ServerLogNote}}
              server log: not counted ({{.ServerLogNote}})
{{- else}}
              server log: PostgreSQL's log lines saying password authentication failed for user {{.QuotedRoles}}
{{- with .SumRotationRefused}}
                less the {{.}} caused by the rotation functions' setSecret, which tries AWSPENDING first
{{- end}}
{{- end}}
              bridged: Connects that met the rotation and logged in; p50, max: how long they took
              failed: statements that failed
{{- if .RunbookMetRejection}}
              in the runbook's window no credential in the store logs in: new logins wait for the
              store (re-checked with backoff) while open connections keep working
{{- end}}
{{- with .RejectedCheck}}
  rejected    the application's logins rejected per rotation ({{.Source}}):
{{- with .AWS}}
                AWS rotations  {{join .}}: at most 1 per worker ({{$.Workers}} workers) in each
{{- with $.RejectedCheck.OverBound}}: EXCEEDED in rotation {{join .}}{{else}}: holds{{end}}
{{- end}}
{{- with .Runbook}}
                runbook        {{join .}} for {{$.Workers}} workers
{{- end}}
{{- end}}
  secret      {{.Rotating.Fetches.Total}} GetSecretValue calls by the application for {{.Statements}} statements and {{.LoginCount}} logins
{{- with .Endpoint}}
              (the endpoint counted {{.GetSecretValue}} GetSecretValue calls: {{.Applications}} from {{$.Applications}},
              {{.Operator}} from the rotation functions and the runbook; {{.Total}} calls of all operations)
{{- end}}

`))

func (r *Report) writeRotations(w io.Writer) {
	if err := rotationsReport.Execute(w, r); err != nil {
		panic(err) // neither the template nor the Report's methods fail
	}
}

// RotationTable is the table of rotations, a line per rotation.
func (r *Report) RotationTable() string {
	var rows [][]any
	row := func(cells ...any) { rows = append(rows, cells) }
	row("#", "kind", "starts", "window", "AWSCURRENT", "AWSPENDING", "rejected", "server log", "bridged", "p50", "max", "failed")
	row("-", "first login", "", "", r.StartupFetches.Current, r.StartupFetches.Pending, r.StartupRejected, count(r.StartupLogged), "", "", "", "")
	for _, x := range r.Rotations {
		logged := "-"
		if x.Logged >= 0 {
			logged = strconv.FormatInt(x.AppLogged(), 10)
		}
		row(x.N, x.Kind, secs(x.Start), secs(x.Window()), x.Fetches.Current, x.Fetches.Pending, x.Rejected, logged,
			x.Recovered, ms(x.Bridged.P50), ms(x.Bridged.Max), x.Failed, x.Err)
	}
	rot := r.Rotating
	row("", "total", "", "", rot.Fetches.Current, rot.Fetches.Pending, r.SumRejected(), count(r.SumAppLogged()), r.SumRecovered(), "", "", rot.Failed)
	return table("                ", rows...)
}

// table lays rows out in columns with text/tabwriter, each line starting
// with indent: a column is as wide as its widest cell, two spaces from the
// next, and no line ends in spaces.
func table(indent string, rows ...[]any) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	cols := 0
	for _, r := range rows {
		cols = max(cols, len(r))
	}
	// Every row has every column and ends with a tab, so that a short row
	// does not split a column in two; the padding this leaves at the end
	// of a line is trimmed below.
	for _, r := range rows {
		fmt.Fprint(tw, indent)
		for i := range cols {
			if i < len(r) {
				fmt.Fprint(tw, r[i])
			}
			fmt.Fprint(tw, "\t")
		}
		fmt.Fprint(tw, "\n")
	}
	tw.Flush()
	var out strings.Builder
	for line := range strings.Lines(b.String()) {
		out.WriteString(strings.TrimRight(line, " \n") + "\n")
	}
	return out.String()
}

// RejectedLoginsCheck is the report's check of the application's rejected logins
// per rotation against the bound of one per worker for AWS rotations.
type RejectedLoginsCheck struct {
	Source       string  // where the figures come from
	AWS, Runbook []int64 // per rotation, in order
	OverBound    []int64 // the AWS rotations (N) over one per worker
}

// RejectedCheck returns the check of rejected logins, nil with no rotation.
func (r *Report) RejectedCheck() *RejectedLoginsCheck {
	if len(r.Rotations) == 0 {
		return nil
	}
	c := &RejectedLoginsCheck{Source: r.rejectedSource()}
	for _, x := range r.Rotations {
		n := x.RejectedLogins()
		if x.Kind == kindRunbook {
			c.Runbook = append(c.Runbook, n)
			continue
		}
		c.AWS = append(c.AWS, n)
		if n > int64(r.Workers) {
			c.OverBound = append(c.OverBound, int64(x.N))
		}
	}
	return c
}

// rejectedSource says where the rejected-login counts of the rotations
// come from: the server log, and whether the connector's Stats agree.
func (r *Report) rejectedSource() string {
	if r.ServerLogNote != "" {
		return "Stats().AuthFailures; the server log was not read"
	}
	var stats []int64
	agree := true
	for _, x := range r.Rotations {
		stats = append(stats, int64(x.Rejected))
		agree = agree && x.RejectedLogins() == int64(x.Rejected)
	}
	if !agree {
		return "server log; Stats().AuthFailures counted " + joinCounts(stats)
	}
	return "server log; Stats().AuthFailures agrees"
}

// RunbookMetRejection reports whether a runbook rotation had rejected
// logins, which the report then explains.
func (r *Report) RunbookMetRejection() bool {
	for _, x := range r.Rotations {
		if x.Kind == kindRunbook && x.Rejected > 0 {
			return true
		}
	}
	return false
}

// SumRejected, SumAppLogged (-1 if any is unknown), SumRotationRefused and
// SumRecovered are the rotations' totals.
func (r *Report) SumRejected() (n uint64) {
	for _, x := range r.Rotations {
		n += x.Rejected
	}
	return n
}

func (r *Report) SumAppLogged() (n int64) {
	for _, x := range r.Rotations {
		if x.Logged < 0 {
			return -1
		}
		n += x.AppLogged()
	}
	return n
}

func (r *Report) SumRotationRefused() (n int64) {
	for _, x := range r.Rotations {
		n += x.RotationRefused
	}
	return n
}

func (r *Report) SumRecovered() (n uint64) {
	for _, x := range r.Rotations {
		n += x.Recovered
	}
	return n
}

// Statements and LoginCount are the rotating approach's statements and
// Connect calls.
func (r *Report) Statements() int64 { return r.Rotating.OK + r.Rotating.Failed }

func (r *Report) LoginCount() int {
	ls := r.Rotating.Logins
	return ls.Ordinary.N + ls.MetRotation.N + ls.Failed
}

// Applications names who the endpoint's application calls came from.
func (r *Report) Applications() string {
	if len(r.Naive) > 0 {
		return "the applications (all approaches)"
	}
	return "the application"
}

// QuotedRoles names the rotating approach's roles as the server log
// does: "app" (or "app_clone").
func (r *Report) QuotedRoles() string {
	var b strings.Builder
	for i, role := range r.Roles {
		if i > 0 {
			b.WriteString(" (or ")
		}
		fmt.Fprintf(&b, "%q", role)
		if i > 0 {
			b.WriteString(")")
		}
	}
	return b.String()
}

// count formats a count, "-" for an unknown (negative) one.
func count(n int64) string {
	if n < 0 {
		return "-"
	}
	return strconv.FormatInt(n, 10)
}

// joinCounts formats counts as "1, 1, 4".
func joinCounts(ns []int64) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.FormatInt(n, 10)
	}
	return strings.Join(s, ", ")
}

const barWidth = 40

func (r *Report) writeTimeline(p func(string, ...any)) {
	rot := r.Rotating
	var peak int64
	for _, s := range rot.PerSecond {
		peak = max(peak, s.OK)
	}
	p("  timeline    statements acknowledged per second")
	switch {
	case r.Vault != nil && r.Vault.Role == roleDynamic:
		p("; +n: lease n read, ✕n: lease n ends")
	case r.Vault != nil && len(r.Rotations) > 0:
		p("; ▲n: rotation n (Vault changes the password, then answers the new one)")
	case len(r.Rotations) > 0:
		p("; ▲n: rotation n changes the database, ▼n: the store catches up")
	}
	p("\n")
	for sec, s := range rot.PerSecond {
		var marks []string
		for _, x := range r.Rotations {
			opened, closed := markWords(x.Kind)
			if in(x.Open, sec) {
				marks = append(marks, fmt.Sprintf("▲%d %s", x.N, opened))
			}
			if closed != "" && in(x.Close, sec) {
				marks = append(marks, fmt.Sprintf("▼%d %s", x.N, closed))
			}
		}
		if r.Vault != nil {
			for _, l := range r.Vault.Leases {
				if in(l.Issued, sec) {
					marks = append(marks, fmt.Sprintf("+%d", l.N))
				}
				if l.EndedInRun() && in(l.Ended, sec) {
					marks = append(marks, fmt.Sprintf("✕%d", l.N))
				}
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

// markWords names what a rotation of kind does when the database changes
// and when the store catches up ("" if that is the same moment).
func markWords(kind string) (opened, closed string) {
	switch kind {
	case kindRunbook:
		return "ALTER ROLE", "PutSecretValue"
	case kindScheduled:
		return "scheduled rotation", ""
	case kindRotateRole:
		return "rotate-role", ""
	}
	return "setSecret", "finishSecret"
}

func (r *Report) writeComparison(p func(string, ...any)) {
	all := append([]ApproachResult{r.Rotating}, r.Naive...)
	p("  compare     the same workload at the same time on the same server and through the same driver,\n")
	p("              each approach with its own role, secret and table, and the same rotations applied to\n")
	p("              every secret at the same moments; they share the machine, so throughput is relative\n")
	p("              to rotating's\n\n")
	rows := [][]any{{"approach", "ok", "failed", "missing", "GetSecretValue", "failed logins", "throughput"}}
	for _, a := range all {
		missing := fmt.Sprint(a.RowsMissing)
		if a.VerifyError != "" {
			missing = "?"
		}
		ratio := "-"
		if r.Rotating.OK > 0 {
			ratio = fmt.Sprintf("%.2f", float64(a.OK)/float64(r.Rotating.OK))
		}
		rows = append(rows, []any{a.Name, a.OK, a.Failed, missing, a.Fetches.Total(), a.Logins.Failed, ratio})
	}
	p("%s\n", table("                ", rows...))
	var peak int64
	for _, a := range all {
		for _, s := range a.PerSecond {
			peak = max(peak, s.OK)
		}
	}
	p("                per second (▁ to █: 0 to %d statements; × a second with failures)\n", peak)
	var sparks [][]any
	for _, a := range all {
		sparks = append(sparks, []any{a.Key, spark(a.PerSecond, peak)})
		if a.Failed > 0 {
			var f strings.Builder
			for _, s := range a.PerSecond {
				if s.Failed > 0 {
					f.WriteString("×")
				} else {
					f.WriteString(" ")
				}
			}
			sparks = append(sparks, []any{"  failed", strings.TrimRight(f.String(), " ")})
		}
	}
	marks := []rune(strings.Repeat(" ", r.Seconds))
	for _, x := range r.Rotations {
		if x.Open >= 0 && int(x.Open/time.Second) < len(marks) {
			marks[int(x.Open/time.Second)] = rune('0' + x.N%10)
		}
	}
	sparks = append(sparks, []any{"rotation", strings.TrimRight(string(marks), " ")})
	p("%s", table("                ", sparks...))
	for _, a := range r.Naive {
		if len(a.Errors) > 0 {
			p("                %s: %d × %s\n", a.Key, a.Errors[0].Count, a.Errors[0].Error)
		}
	}
	p("\n")
}

// driverText names the driver the report's logins went through, and how
// the rotating connector was given it.
func (r *Report) driverText() string {
	d, ok := parseDriver(r.Driver)
	if !ok {
		d = driverPQ
	}
	return d.describe()
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
