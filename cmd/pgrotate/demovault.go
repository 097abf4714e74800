package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/lib/pq"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/vault"
	"github.com/pgrotate/rotating/secrets/vault/vaulttest"
)

// This file is the demo with -store vault: the workload reads its
// credential from a local Vault-compatible server (vaulttest) through the
// secrets/vault sources, from a static role that the demo rotates on demand
// between the role's scheduled rotations, or from a dynamic role whose
// leases the connector renews and replaces.

// Values of -store and -role.
const (
	storeAWS    = "aws"
	storeVault  = "vault"
	roleStatic  = "static"
	roleDynamic = "dynamic"
)

// Kinds of a static role's rotations.
const (
	kindScheduled  = "scheduled"   // on the role's rotation_period, by the server
	kindRotateRole = "rotate-role" // on demand: POST database/rotate-role/:name
)

// checkStoreFlags checks the flags of -store and -role against the others
// (given: the flags set on the command line) and returns a usage error's
// text, or "".
func checkStoreFlags(cfg *demoConfig, given map[string]bool) string {
	wholeSeconds := func(name string, d, lo, hi time.Duration) string {
		if d < lo || d > hi || d%time.Second != 0 {
			return fmt.Sprintf("-%s %v: want whole seconds, %v to %v", name, d, lo, hi)
		}
		return ""
	}
	switch cfg.store {
	case storeAWS:
		for _, f := range []string{"role", "rotation-period", "ttl", "max-ttl"} {
			if given[f] {
				return "-" + f + " goes with -store vault"
			}
		}
		return ""
	case storeVault:
	default:
		return fmt.Sprintf("-store %q: want aws or vault", cfg.store)
	}
	switch {
	case given["dsn"] || given["secret-id"]:
		return "-store vault runs against the local server only; to check your own Vault, use pgrotate check -store vault"
	case given["compare"]:
		return "-compare goes with -store aws"
	case given["strategy"] || given["window"]:
		return "-strategy and -window go with -store aws (AWS's rotations)"
	}
	switch cfg.role {
	case roleStatic:
		if given["ttl"] || given["max-ttl"] {
			return "-ttl and -max-ttl go with -role dynamic"
		}
		return wholeSeconds("rotation-period", cfg.rotationPeriod, 3*time.Second, time.Hour)
	case roleDynamic:
		switch {
		case given["rotation-period"]:
			return "-rotation-period goes with -role static"
		case given["rotations"]:
			return "-rotations goes with -role static: a dynamic role's leases are renewed and replaced, nothing is rotated"
		}
		if msg := wholeSeconds("ttl", cfg.ttl, 2*time.Second, time.Hour); msg != "" {
			return msg
		}
		return wholeSeconds("max-ttl", cfg.maxTTL, cfg.ttl, 24*time.Hour)
	}
	return fmt.Sprintf("-role %q: want static or dynamic", cfg.role)
}

// dynamicMargins are the connector's margins the demo gives a dynamic role
// of default_ttl ttl: connections retire a quarter of the TTL before a
// lease ends (WithSessionMargin), and the lease is renewed, or the next one
// read, an eighth of it (times 1 to 1.5) before that
// (WithRefreshBeforeExpiry). Each renewal then buys about
// ttl − margin − 1.25·lead = 0.59·ttl, and default_ttl is well above
// margin + 1.5·lead, as docs/vault.md asks.
func dynamicMargins(ttl time.Duration) (margin, lead time.Duration) { return ttl / 4, ttl / 8 }

// vaultCounter counts the application's Vault calls as the server counts
// them: the operator's calls are rotate-role only, and the demo reads
// nothing else through the server's API.
type vaultCounter struct {
	srv    *vaulttest.Server
	readOp vaulttest.Op // OpStaticCreds or OpCreds
}

// counts returns the calls so far; none for a nil counter (an approach
// that does not read Vault).
func (c *vaultCounter) counts() VaultCalls {
	if c == nil {
		return VaultCalls{}
	}
	return VaultCalls{
		Reads:    c.srv.Calls(c.readOp),
		Renewals: c.srv.Calls(vaulttest.OpLeaseRenew),
		Token:    c.srv.Calls(vaulttest.OpLookupSelf) + c.srv.Calls(vaulttest.OpRenewSelf),
	}
}

// leasesEnded returns how many of the server's leases have ended.
func (c *vaultCounter) leasesEnded() int {
	n := 0
	for _, l := range c.srv.Leases() {
		if l.Ended {
			n++
		}
	}
	return n
}

// vaultSetup is what runVault made, removed in reverse order at the end.
type vaultSetup struct {
	pg     *pgserver.Server
	shared bool // pg outlives the demo: drop what was made on it
	srv    *vaulttest.Server
	table  string
	user   string // the static role's PostgreSQL user
	log    *slog.Logger
}

// remove closes the server (which revokes the leases still open: their
// users are dropped) and, on a server that outlives the demo, drops the
// table and the static role's user.
func (s *vaultSetup) remove() {
	if s.srv != nil {
		if err := s.srv.Close(); err != nil {
			s.log.Warn("revoking the leases left", slog.Any("error", err))
		}
	}
	if !s.shared {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if s.table != "" {
		if err := s.pg.ExecSerialized(ctx, "DROP TABLE IF EXISTS "+pq.QuoteIdentifier(s.table)); err != nil {
			s.log.Warn("cleaning up", slog.Any("error", err))
		}
	}
	if s.user != "" {
		if err := s.pg.DropRole(ctx, s.user); err != nil {
			s.log.Warn("cleaning up", slog.Any("error", err))
		}
	}
}

// runVault is the demo with -store vault, everything local.
func runVault(ctx context.Context, cfg demoConfig, hooks *demoHooks, con *console, log *slog.Logger) (rep *Report, err error) {
	pg, stopPG, err := startPostgreSQL(ctx, cfg, hooks, log)
	if err != nil {
		return nil, err
	}
	defer stopPG()
	setupErr := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &exitError{code: exitDatabase, msg: "setting up: " + err.Error()}
	}

	setup := &vaultSetup{pg: pg, shared: hooks.pg != nil, log: log}
	defer setup.remove()
	var srvOpts []vaulttest.Option
	if cfg.verbose {
		srvOpts = append(srvOpts, vaulttest.WithLogger(log))
	}
	srv, err := vaulttest.NewServer(pg.Admin(), srvOpts...)
	if err != nil {
		return nil, setupErr(err)
	}
	setup.srv = srv
	if err := srv.Start(); err != nil {
		return nil, &exitError{code: exitSource, msg: "starting the Vault-compatible server: " + err.Error()}
	}

	suffix := randomSuffix(6)
	run := &VaultRun{Role: cfg.role, URL: srv.URL()}
	setup.table = "demo_vault_" + suffix + "_rows"
	table := pq.QuoteIdentifier(setup.table)
	if err := pg.ExecSerialized(ctx, "CREATE TABLE "+table+
		" (id bigserial PRIMARY KEY, worker int NOT NULL, seq int NOT NULL, at timestamptz NOT NULL DEFAULT now())"); err != nil {
		return nil, setupErr(err)
	}
	grants := []string{
		"GRANT SELECT, INSERT ON " + table + " TO %s",
		"GRANT USAGE ON SEQUENCE " + pq.QuoteIdentifier(setup.table+"_id_seq") + " TO %s",
	}
	readOp := vaulttest.OpCreds
	if cfg.role == roleStatic {
		readOp = vaulttest.OpStaticCreds
		run.Name, run.Username, run.RotationPeriod = "st"+suffix, "demo_static_"+suffix, cfg.rotationPeriod
		run.OnDemand = cfg.rotations
		run.Path = "database/static-creds/" + run.Name
		if err := pg.CreateRole(ctx, run.Username, newPassword()); err != nil {
			return nil, setupErr(err)
		}
		setup.user = run.Username
		user := pq.QuoteIdentifier(run.Username)
		if err := pg.ExecSerialized(ctx, fmt.Sprintf(grants[0], user), fmt.Sprintf(grants[1], user)); err != nil {
			return nil, setupErr(err)
		}
		// Vault rotates a static role's password when the role is created.
		if err := srv.SetStaticRole(ctx, run.Name, vaulttest.StaticRole{Username: run.Username, RotationPeriod: cfg.rotationPeriod}); err != nil {
			return nil, setupErr(err)
		}
	} else {
		run.Name, run.DefaultTTL, run.MaxTTL = "dm"+suffix, cfg.ttl, cfg.maxTTL
		run.Path = "database/creds/" + run.Name
		run.SessionMargin, run.RefreshLead = dynamicMargins(cfg.ttl)
		name := `"{{name}}"`
		if err := srv.SetRole(run.Name, vaulttest.DynamicRole{DefaultTTL: cfg.ttl, MaxTTL: cfg.maxTTL, CreationStatements: []string{
			`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`,
			fmt.Sprintf(grants[0], name), fmt.Sprintf(grants[1], name),
		}}); err != nil {
			return nil, setupErr(err)
		}
	}
	log.Info("ready", slog.String("postgresql", pg.Version), slog.String("address", fmt.Sprintf("%s:%d", pg.Host, pg.Port)),
		slog.String("vault_addr", srv.URL()), slog.String("path", run.Path))

	// The application's own token, renewable and longer-lived than any
	// lease (leases die with the token that read them).
	token, err := srv.CreateToken(vaulttest.TokenOptions{TTL: time.Hour})
	if err != nil {
		return nil, setupErr(err)
	}
	apiClient, err := srv.Client(token)
	if err != nil {
		return nil, setupErr(err)
	}
	vc, err := vault.NewClient(apiClient, vault.WithLogger(log))
	if err != nil {
		return nil, setupErr(err)
	}
	var (
		src  secrets.Source
		opts []rotating.Option
	)
	if cfg.role == roleStatic {
		src, err = vault.StaticRole(vc, "", run.Name)
	} else {
		src, err = vault.DynamicRole(vc, "", run.Name)
		opts = append(opts, rotating.WithSessionMargin(run.SessionMargin), rotating.WithRefreshBeforeExpiry(run.RefreshLead))
	}
	if err != nil {
		return nil, setupErr(err)
	}

	dsn := fmt.Sprintf("host=%s port=%d dbname=postgres sslmode=disable application_name=pgrotate-demo", pg.Host, pg.Port)
	a, err := newVaultApproach(cfg.driver, dsn, src, &vaultCounter{srv: srv, readOp: readOp}, opts, log, cfg.workers, cfg.recycle,
		cfg.role == roleDynamic)
	if err != nil {
		return nil, &exitError{code: exitDatabase, msg: fmt.Sprintf("opening %s: %v", approachTitles[keyRotating], err)}
	}
	st := &runState{cfg: cfg, duration: cfg.duration, log: log, approaches: []*approach{a}, tables: []string{setup.table}}
	// The pool is closed before the server revokes the leases left.
	defer st.closeApproaches(log)

	var plan rotator
	if cfg.role == roleStatic {
		st.roles = []string{run.Username}
		st.refusals = newRefusalLog(pg, run.Username)
		rot, err := srv.Client("")
		if err != nil {
			return nil, setupErr(err)
		}
		vr := &vaultRotations{srv: srv, ops: rot, name: run.Name, period: cfg.rotationPeriod}
		for n, kind := range staticPlan(cfg.rotations, cfg.rotationPeriod, cfg.duration) {
			ev := &rotationEvent{n: n + 1, kind: kind}
			st.events = append(st.events, ev)
			vr.events = append(vr.events, ev)
		}
		plan = vr
	} else {
		// Vault names a dynamic role's users v-<token's display name>-<role>-...
		st.roles = []string{"v-token-" + run.Name + "-*"}
		st.refusals = newRefusalLogPrefix(pg, "v-token-"+run.Name+"-")
	}
	if st.refusals != nil {
		st.logStart, st.logErr = st.refusals.offset()
	}

	log.Info("running the workload", slog.String("driver", string(cfg.driver)), slog.Int("workers", cfg.workers),
		slog.Duration("duration", cfg.duration), slog.String("vault_role", cfg.role), slog.String("path", run.Path))
	st.execute(ctx, plan, con)

	rep = st.report(ctx, pg.Admin())
	rep.Mode = "local"
	rep.Server = fmt.Sprintf("PostgreSQL %s on %s:%d (throwaway)", pg.Version, pg.Host, pg.Port)
	rep.SecretID = run.Path
	run.Calls = rep.Rotating.Vault
	run.RotateRole = srv.Calls(vaulttest.OpRotateRole)
	if s := rep.Rotating.Stats; s != nil {
		run.Rejected = s.AuthFailures
	}
	run.Logged = st.logged(st.logStart, st.logOffset())
	if cfg.role == roleDynamic {
		run.Leases, run.LeaseNote = leaseResults(ctx, srv, st.start)
	}
	run.Total = srv.TotalCalls()
	rep.Vault = run
	return rep, nil
}

// newVaultApproach is the README's recommendation with a Vault source: src
// behind rotating.NewConnector, and sql.OpenDB, logging in through drv.
// With pooled, every statement goes through a pool whose connections are
// recycled (see openRecyclingPool): a dynamic role's connections must be
// retired before their lease ends, which the connector does through the
// pool. Otherwise each worker holds a connection and replaces it every
// recycle, as in the AWS demo: a static role's sessions outlive a rotation.
func newVaultApproach(drv driverName, dsn string, src secrets.Source, calls *vaultCounter, opts []rotating.Option, log *slog.Logger,
	workers int, recycle time.Duration, pooled bool) (*approach, error) {
	c, err := rotating.NewConnector(dsn, src, append([]rotating.Option{rotating.WithLogger(log), drv.probedOption()}, opts...)...)
	if err != nil {
		return nil, err
	}
	logins := new(loginRecorder)
	timed := &timedConnector{inner: c, logins: logins}
	db := openPool(timed, workers)
	if pooled {
		db = openRecyclingPool(timed, workers, recycle)
	}
	return &approach{
		key: keyRotating, title: approachTitles[keyRotating],
		pool: fixed(db), logins: logins, vault: calls, closeFn: db.Close, pooled: pooled,
		db: db, conn: c,
	}, nil
}

// staticPlan returns the kinds of a static role's rotations in a run:
// each of the rotations on demand comes half a period after a scheduled
// rotation, and scheduled ones follow while they fall within duration.
// Nominally (the role having rotated at the start), with period P the
// scheduled rotations come at P, 2.5P, 4P, ... and those on demand at
// 1.5P, 3P, ...; after the last on demand, every P.
func staticPlan(onDemand int, period, duration time.Duration) []string {
	var kinds []string
	at := time.Duration(0) // the last rotation
	for range onDemand {
		kinds = append(kinds, kindScheduled, kindRotateRole)
		at += period + period/2
	}
	for at+period <= duration {
		kinds = append(kinds, kindScheduled)
		at += period
	}
	return kinds
}

// scheduledLead is how long before a scheduled rotation its event starts,
// so that the counters are taken before the connector reacts to it.
const scheduledLead = 250 * time.Millisecond

// vaultRotations rotates a static role: it waits for the server's
// scheduled rotations and calls rotate-role on demand between them.
type vaultRotations struct {
	srv    *vaulttest.Server
	ops    *api.Client // the operator's client (root token)
	name   string
	period time.Duration
	events []*rotationEvent
}

var _ rotator = (*vaultRotations)(nil)

func (v *vaultRotations) due(start time.Time, i int) time.Time {
	if v.events[i].kind == kindScheduled {
		s, _ := v.srv.StaticRoleState(v.name)
		return s.NextRotation.Add(-scheduledLead)
	}
	prev := start
	if i > 0 {
		p := v.events[i-1]
		p.mu.Lock()
		prev = p.end
		p.mu.Unlock()
	}
	return prev.Add(v.period / 2)
}

func (v *vaultRotations) describe(ev *rotationEvent) string {
	if ev.kind == kindRotateRole {
		return "on demand: POST database/rotate-role/" + v.name
	}
	return "scheduled: the role's rotation_period of " + v.period.String() + " is up"
}

func (v *vaultRotations) apply(ctx context.Context, ev *rotationEvent) error {
	if ev.kind == kindRotateRole {
		ev.markOpen()
		_, err := v.ops.Logical().WriteWithContext(ctx, "database/rotate-role/"+v.name, nil)
		ev.markClose()
		if err != nil {
			return fmt.Errorf("rotate-role: %w", err)
		}
		return nil
	}
	before, ok := v.srv.StaticRoleState(v.name)
	if !ok {
		return errors.New("the static role is gone")
	}
	// The server rotates on time; allow for a loaded machine.
	deadline := before.NextRotation.Add(15 * time.Second)
	for {
		s, _ := v.srv.StaticRoleState(v.name)
		if s.Rotations > before.Rotations {
			ev.markAt(s.LastRotation, s.LastRotation)
			return nil
		}
		if time.Now().After(deadline) {
			if s.LastError != "" {
				return errors.New("the scheduled rotation failed: " + s.LastError)
			}
			return errors.New("the scheduled rotation did not happen within 15s of its time")
		}
		if err := testkit.Sleep(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
}

// leaseResults returns the server's leases, once the revocations under way
// have finished (they are bounded: a revocation that fails is reported as
// such). note says why figures are missing, if they are.
func leaseResults(ctx context.Context, srv *vaulttest.Server, start time.Time) (leases []LeaseResult, note string) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	for {
		busy := false
		for _, l := range srv.Leases() {
			busy = busy || l.Ended && l.RevokedAt.IsZero() && l.RevokeError == ""
		}
		if !busy {
			break
		}
		if testkit.Sleep(wctx, 20*time.Millisecond) != nil {
			note = "a revocation was still running when the report was made"
			break
		}
	}
	offset := func(t time.Time) time.Duration {
		if t.IsZero() {
			return -1
		}
		return t.Sub(start)
	}
	for i, l := range srv.Leases() {
		r := LeaseResult{
			N: i + 1, ID: l.ID, Username: l.Username,
			Issued: offset(l.IssueTime), Expires: offset(l.ExpireTime), MaxExpires: offset(l.MaxExpireTime), Ended: -1,
			Renewals: l.Renewals, RevokeError: l.RevokeError,
		}
		if l.Ended {
			r.Ended, r.EndReason = offset(l.EndedAt), string(l.EndReason)
			r.SessionsAtEnd, r.SessionsAfterEnd = l.SessionsAtEnd, l.SessionsAfterEnd
		}
		leases = append(leases, r)
	}
	return leases, note
}

// shortLease is the end of a lease id, enough to tell a run's leases apart.
func shortLease(id string) string {
	if i := strings.LastIndexByte(id, '/'); i >= 0 && len(id)-i-1 > 6 {
		return "…" + id[len(id)-6:]
	}
	return id
}
