package main

import (
	"fmt"
	"io"
	"strconv"
	"text/template"
	"time"
)

// VaultCalls counts the application's calls to the Vault server, by
// operation, as the server counted them.
type VaultCalls struct {
	// Reads are credential reads: GET database/static-creds/:name or
	// database/creds/:role (each of which makes a new lease).
	Reads int64
	// Renewals are PUT sys/leases/renew.
	Renewals int64
	// Token are the token's upkeep: auth/token/lookup-self and renew-self.
	Token int64
}

// Total is the number of calls.
func (v VaultCalls) Total() int64 { return v.Reads + v.Renewals + v.Token }

func (v VaultCalls) minus(w VaultCalls) VaultCalls {
	return VaultCalls{v.Reads - w.Reads, v.Renewals - w.Renewals, v.Token - w.Token}
}

// VaultRun is what a -store vault run adds to the report.
type VaultRun struct {
	Role string // roleStatic or roleDynamic
	Name string // the role's name in Vault
	Path string // "database/static-creds/<name>" or "database/creds/<name>"
	URL  string // the local server's address

	// A static role: its PostgreSQL user, rotation_period, and the
	// rotations on demand planned (-rotations).
	Username       string
	RotationPeriod time.Duration
	OnDemand       int
	// A dynamic role: default_ttl and max_ttl, and the connector's margins
	// (WithSessionMargin, WithRefreshBeforeExpiry).
	DefaultTTL, MaxTTL         time.Duration
	SessionMargin, RefreshLead time.Duration

	// Calls are the application's calls; RotateRole the operator's
	// rotate-role calls; Total every call the server answered.
	Calls             VaultCalls
	RotateRole, Total int64
	// Rejected are the application's rejected logins over the whole run,
	// as the connector counted them (Stats().AuthFailures); Logged as the
	// server log counted them, -1 if it could not be read.
	Rejected uint64
	Logged   int64

	// Leases are a dynamic role's leases, in the order they were read;
	// LeaseNote says why their figures may be incomplete.
	Leases    []LeaseResult
	LeaseNote string
}

// LeaseResult is one lease of a dynamic role, as the server saw it.
// Offsets are from the start of the run, -1 for what has not happened.
type LeaseResult struct {
	N        int
	ID       string // the lease id (not a secret)
	Username string // the PostgreSQL user it created

	// Issued is when it was read, Expires its end as last renewed,
	// MaxExpires issue + max_ttl, Ended when its revocation began.
	Issued, Expires, MaxExpires, Ended time.Duration
	Renewals                           int
	EndReason                          string // "expired", ..., "" while open
	// SessionsAtEnd are the user's sessions open when the revocation
	// began: sessions that outlived the lease. SessionsAfterEnd those left
	// after the server ended them.
	SessionsAtEnd, SessionsAfterEnd int
	RevokeError                     string
}

// EndedInRun reports whether the lease ended while the demo ran (rather
// than being revoked when it stopped).
func (l LeaseResult) EndedInRun() bool { return l.Ended >= 0 }

// LeasesEnded is the number of leases that ended during the run.
func (v *VaultRun) LeasesEnded() int {
	n := 0
	for _, l := range v.Leases {
		if l.EndedInRun() {
			n++
		}
	}
	return n
}

// SessionsPastEnd is the number of sessions that outlived their lease, over
// every lease that ended.
func (v *VaultRun) SessionsPastEnd() int {
	n := 0
	for _, l := range v.Leases {
		n += l.SessionsAtEnd
	}
	return n
}

// EndedRenewals are the renewals of each lease that ended during the run:
// the renewals a whole lease took.
func (v *VaultRun) EndedRenewals() []int64 {
	var ns []int64
	for _, l := range v.Leases {
		if l.EndedInRun() {
			ns = append(ns, int64(l.Renewals))
		}
	}
	return ns
}

// PerLease is the application's reads and renewals per lease read.
func (v *VaultRun) PerLease() string {
	if len(v.Leases) == 0 {
		return "-"
	}
	n := float64(len(v.Leases))
	return fmt.Sprintf("%.1f reads and %.1f renewals", float64(v.Calls.Reads)/n, float64(v.Calls.Renewals)/n)
}

// Renewal is about how long each renewal of a dynamic role's lease lasts:
// default_ttl less the session margin and the mean refresh lead.
func (v *VaultRun) Renewal() time.Duration {
	return (v.DefaultTTL - v.SessionMargin - v.RefreshLead*5/4).Round(10 * time.Millisecond)
}

// RejectedSource says where the run's rejected logins come from.
func (v *VaultRun) RejectedSource() string {
	switch {
	case v.Logged < 0:
		return "Stats().AuthFailures; the server log was not read"
	case v.Logged == int64(v.Rejected):
		return "server log; Stats().AuthFailures agrees"
	}
	return fmt.Sprintf("server log; Stats().AuthFailures counted %d", v.Rejected)
}

// RejectedLogins is the run's rejected logins: as the server logged them
// if the demo could read its log, else as the connector counted them.
func (v *VaultRun) RejectedLogins() int64 {
	if v.Logged < 0 {
		return int64(v.Rejected)
	}
	return v.Logged
}

var vaultSetupReport = template.Must(template.New("vault setup").Parse(
	`  setup       {{.Server}}, local Vault-compatible server (vaulttest) at {{.Vault.URL}}
              {{.Workload}} inserting rows through sql.OpenDB(rotating.NewConnector(...)) with
{{- with .Vault}}{{if eq .Role "static"}}
              vault.StaticRole ({{.Path}}, user {{.Username}}), each worker
              logging in anew every {{$.Recycle}}, for {{$.Seconds}}s
{{- else}}
              vault.DynamicRole ({{.Path}}), each statement through a pool whose
              connections live {{$.Recycle}} (SetConnMaxLifetime), for {{$.Seconds}}s
{{- end}}{{end}}
{{- with .Vault}}{{if eq .Role "static"}}
  rotations   {{.OnDemand}} on demand (POST database/rotate-role/{{.Name}}), each half a period after one on
              the role's schedule (rotation_period {{.RotationPeriod}}); {{$.PlannedRotations}} in all
{{- else}}
  leases      default_ttl {{.DefaultTTL}}, max_ttl {{.MaxTTL}}; the connector: WithSessionMargin({{.SessionMargin}}),
              WithRefreshBeforeExpiry({{.RefreshLead}}): a lease's connections retire {{.SessionMargin}} before it ends,
              and it is renewed (or the next one read) {{.RefreshLead}} to 1.5 × {{.RefreshLead}} before that, so each
              renewal lasts about {{.Renewal}}; at max_ttl the server ends it (REVOKE, sessions ended, DROP ROLE)
{{- end}}{{end}}
`))

// writeVaultSetup prints the setup lines of a -store vault run.
func (r *Report) writeVaultSetup(w io.Writer) {
	if err := vaultSetupReport.Execute(w, r); err != nil {
		panic(err) // neither the template nor the Report's methods fail
	}
}

// Workload describes the workers and their pace.
func (r *Report) Workload() string { return r.workload() }

var vaultReport = template.Must(template.New("vault").Funcs(template.FuncMap{"join": joinCounts}).Parse(
	`{{- with .Vault}}{{if eq .Role "static" -}}
{{"  "}}rotations   what the rotating connector did, from each rotation's start to the next's:
{{$.StaticRotationTable}}              reads: the application's GET {{.Path}}, as the server counted them
              rejected: logins the database rejected, as the connector counted them (Stats().AuthFailures)
{{- if $.ServerLogNote}}
              server log: not counted ({{$.ServerLogNote}})
{{- else}}
              server log: PostgreSQL's log lines saying password authentication failed for user "{{.Username}}"
{{- end}}
              bridged: Connects that met the rotation and logged in; p50, max: how long they took
              failed: statements that failed
              a scheduled rotation's time is in the answer (ttl): the connector reads again just after it;
              one on demand is learnt from the first rejected login
{{- with $.StaticRejected}}
  rejected    the application's logins rejected per rotation ({{.Source}}):
{{- with .Scheduled}}
                scheduled    {{join .}}
{{- end}}
{{- with .OnDemand}}
                rotate-role  {{join .}}
{{- end}}
                at most 1 per worker ({{$.Workers}} workers) in each
{{- with .OverBound}}: EXCEEDED in rotation {{join .}}{{else}}: holds{{end}}
{{- end}}
  vault       {{.Calls.Reads}} reads by the application for {{$.Statements}} statements and {{$.LoginCount}} logins: per rotation
              {{join $.StaticReads}} (the first login: {{$.StartupVault.Reads}}); token calls (lookup-self, renew-self): {{.Calls.Token}};
              the server answered {{.Total}} calls, {{.RotateRole}} of them the operator's rotate-role
{{- else -}}
{{"  "}}leases      every lease the application read, with its renewals (PUT sys/leases/renew) and its end:
{{$.LeaseTable}}              ends: the lease's end as last renewed; max: issue + max_ttl; ended: when its revocation began
              open: the lease was still open when the workload stopped (revoked when the demo stops)
              sessions at end: the user's sessions open when the revocation began (pg_stat_activity): sessions
              that outlived the lease; the connector retires them before the lease's SessionsEnd
{{- with .LeaseNote}}
              note: {{.}}
{{- end}}
  vault       {{.Calls.Reads}} reads ({{.Path}}) and {{.Calls.Renewals}} renewals for {{len .Leases}} leases: {{.PerLease}} per lease
{{- with .EndedRenewals}}
              (the leases that ended: 1 read and {{join .}} renewals each)
{{- end}}
              for {{$.Statements}} statements and {{$.LoginCount}} logins; token calls (lookup-self, renew-self): {{.Calls.Token}};
              the server answered {{.Total}} calls
  ended       {{.LeasesEnded}} leases ended during the run, {{.SessionsPastEnd}} sessions alive past a lease end
{{- with $.Rotating.Stats}}; {{.RetiredConnections}} connections
              retired by the connector (Stats().RetiredConnections)
{{- end}}
  rejected    {{.RejectedLogins}} of the application's logins rejected ({{.RejectedSource}})
{{- end}}{{end}}

`))

// writeVault prints the rotations (static role) or leases (dynamic role)
// of a -store vault run, and its Vault calls.
func (r *Report) writeVault(w io.Writer) {
	if err := vaultReport.Execute(w, r); err != nil {
		panic(err) // neither the template nor the Report's methods fail
	}
}

// StaticRotationTable is the table of a static role's rotations.
func (r *Report) StaticRotationTable() string {
	var rows [][]any
	row := func(cells ...any) { rows = append(rows, cells) }
	row("#", "kind", "starts", "reads", "rejected", "server log", "bridged", "p50", "max", "failed")
	row("-", "first login", "", r.StartupVault.Reads, r.StartupRejected, count(r.StartupLogged), "", "", "", "")
	for _, x := range r.Rotations {
		row(x.N, x.Kind, secs(x.Start), x.Vault.Reads, x.Rejected, count(x.Logged),
			x.Recovered, ms(x.Bridged.P50), ms(x.Bridged.Max), x.Failed, x.Err)
	}
	row("", "total", "", r.Rotating.Vault.Reads, r.SumRejected(), count(r.SumLogged()), r.SumRecovered(), "", "", r.Rotating.Failed)
	return table("                ", rows...)
}

// SumLogged is the rotations' server log refusals, -1 if any is unknown.
func (r *Report) SumLogged() (n int64) {
	for _, x := range r.Rotations {
		if x.Logged < 0 {
			return -1
		}
		n += x.Logged
	}
	return n
}

// StaticRejectedCheck is the report's check of a static role's rejected
// logins per rotation, by kind, against one per worker.
type StaticRejectedCheck struct {
	Source              string
	Scheduled, OnDemand []int64 // per rotation of each kind, in order
	OverBound           []int64 // the rotations (N) over one per worker
}

// StaticReads are the application's Vault reads per rotation.
func (r *Report) StaticReads() []int64 {
	ns := make([]int64, 0, len(r.Rotations))
	for _, x := range r.Rotations {
		ns = append(ns, x.Vault.Reads)
	}
	return ns
}

// StaticRejected returns the check of a static role's rejected logins, nil
// with no rotation.
func (r *Report) StaticRejected() *StaticRejectedCheck {
	if len(r.Rotations) == 0 {
		return nil
	}
	c := &StaticRejectedCheck{Source: r.rejectedSource()}
	for _, x := range r.Rotations {
		// The rotation function of the AWS demo has no counterpart here:
		// every refusal logged is the application's.
		n := x.RejectedLogins()
		if x.Kind == kindRotateRole {
			c.OnDemand = append(c.OnDemand, n)
		} else {
			c.Scheduled = append(c.Scheduled, n)
		}
		if n > int64(r.Workers) {
			c.OverBound = append(c.OverBound, int64(x.N))
		}
	}
	return c
}

// LeaseTable is the table of a dynamic role's leases.
func (r *Report) LeaseTable() string {
	rows := [][]any{{"#", "lease", "user", "read", "renewals", "ends", "max", "ended", "reason", "sessions at end"}}
	for _, l := range r.Vault.Leases {
		reason, atEnd := l.EndReason, strconv.Itoa(l.SessionsAtEnd)
		if !l.EndedInRun() {
			reason, atEnd = "open", "-"
		}
		if l.RevokeError != "" {
			reason += "; revocation failed: " + l.RevokeError
		}
		rows = append(rows, []any{l.N, shortLease(l.ID), l.Username, secs(l.Issued), l.Renewals,
			secs(l.Expires), secs(l.MaxExpires), secs(l.Ended), reason, atEnd})
	}
	return table("                ", rows...)
}
