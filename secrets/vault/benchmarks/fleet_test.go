package benchmarks

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/vault"
	"github.com/pgrotate/rotating/secrets/vault/vaulttest"
)

// The fleet's settings. A dynamic role's leases last fleetTTL, renewable
// to fleetMaxTTL, with the connector's margins at a quarter and an eighth
// of the TTL (as pgrotate demo -store vault gives them): each renewal lasts
// about TTL − margin − 1.25·lead = 1.19 s, so a lease is renewed about
// four times before the renewal is capped at max_ttl and the next lease is
// read. A static role rotates every fleetPeriod and, half a period after
// each scheduled rotation, on demand (rotate-role).
const (
	fleetTTL      = 2 * time.Second
	fleetMaxTTL   = 6 * time.Second
	fleetRun      = 15 * time.Second // a dynamic run
	fleetPeriod   = 3 * time.Second
	fleetOnDemand = 3 // rotate-role calls in a static run, each after a scheduled rotation
	queryEvery    = 20 * time.Millisecond
	connLifetime  = time.Second
)

// fleetSizes are the numbers of processes.
var fleetSizes = []int{1, 8, 32}

// BenchmarkVaultFleet runs N processes against one Vault (vaulttest) and
// one real PostgreSQL server for one run per op (use -benchtime 1x). Each
// process has its own token, vault.Client, source, rotating.Connector and
// sql.DB (two connections, each replaced when a second old), and runs
// SELECT 1 every 20 ms.
//
// role=dynamic: vault.DynamicRole, default_ttl 2s, max_ttl 6s, for 15 s.
// Metrics: leases/process, renewals/lease (over the leases that ended in
// the run: whole leases; -max the most), reads/process/min,
// renewals/process/min, token-calls/process, vault-calls/s (the fleet's),
// sessions-past-end (sessions of a lease's user open when its revocation
// began, as pg_stat_activity counted them: must be 0), failed-reads
// (reads that made no lease: Vault slower than the fetch timeout),
// rejected-logins (the connectors' Stats().AuthFailures), failed-queries.
//
// role=static: vault.StaticRole on one shared static role with
// rotation_period 3s, and rotate-role half a period after each of the
// first three scheduled rotations: six rotations. Metrics: per rotation and
// process, the application's reads (reads/rotation/process, and by kind
// reads/scheduled/process, reads/rotate-role/process: a read falls in the
// rotation during which it was made, so the second read of a scheduled
// rotation read before the server ran it, after the connector's longest
// backoff of 5 s, may land in the next rotation's) and rejected logins
// (rejected/scheduled/process, rejected/rotate-role/process; the most of
// any process and rotation in -max), token-calls/process, failed-queries.
func BenchmarkVaultFleet(b *testing.B) {
	pg := pgtest.Shared(b)
	for _, n := range fleetSizes {
		b.Run(fmt.Sprintf("role=dynamic/processes=%d", n), func(b *testing.B) { benchDynamicFleet(b, pg, n) })
	}
	for _, n := range fleetSizes {
		b.Run(fmt.Sprintf("role=static/processes=%d", n), func(b *testing.B) { benchStaticFleet(b, pg, n) })
	}
}

// process is one application process of a fleet.
type process struct {
	conn     *rotating.Connector
	db       *sql.DB
	accessor string // its token's

	ok, failed atomic.Int64
	firstErr   atomic.Pointer[error]
}

// startProcess opens a process's connector over src and its pool.
func startProcess(b *testing.B, pg *pgserver.Server, src secrets.Source, accessor string, opts ...rotating.Option) *process {
	b.Helper()
	c, err := rotating.NewConnector(endpointDSN(pg), src, opts...)
	if err != nil {
		b.Fatal(err)
	}
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(2)
	db.SetMaxIdleConns(2)
	db.SetConnMaxLifetime(connLifetime)
	return &process{conn: c, db: db, accessor: accessor}
}

// run queries until stop is closed.
func (p *process) run(stop <-chan struct{}) {
	t := time.NewTicker(queryEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		_, err := p.db.ExecContext(ctx, "SELECT 1")
		cancel()
		if err != nil {
			p.failed.Add(1)
			p.firstErr.CompareAndSwap(nil, &err)
			continue
		}
		p.ok.Add(1)
	}
}

// fleet is the processes of one op.
type fleet []*process

// run runs every process for d, or until the events of during (if any)
// are done and then settle more, whichever is later.
func (f fleet) run(d time.Duration, during func(), settle time.Duration) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, p := range f {
		wg.Go(func() { p.run(stop) })
	}
	start := time.Now()
	if during != nil {
		during()
	}
	_ = testkit.Sleep(context.Background(), max(time.Until(start.Add(d)), settle))
	close(stop)
	wg.Wait()
}

// close closes the pools (and the connectors).
func (f fleet) close(b *testing.B) {
	for _, p := range f {
		if err := p.db.Close(); err != nil {
			b.Errorf("closing a pool: %v", err)
		}
	}
}

// check fails b on failed queries, and returns the fleet's queries and
// rejected logins.
func (f fleet) check(b *testing.B) (ok, failed int64, rejected uint64) {
	b.Helper()
	for _, p := range f {
		ok += p.ok.Load()
		failed += p.failed.Load()
		rejected += p.conn.Stats().AuthFailures
		if e := p.firstErr.Load(); e != nil {
			b.Errorf("a process's query failed: %v", *e)
		}
	}
	if ok == 0 {
		b.Error("no query succeeded")
	}
	return ok, failed, rejected
}

func benchDynamicFleet(b *testing.B, pg *pgserver.Server, n int) {
	srv := startVault(b, pg)
	margin, lead := fleetTTL/4, fleetTTL/8
	var (
		leases, ended, renewals, maxRenewals, pastEnd float64
		reads, renews, token, total                   float64
		rejected, failed, lost                        float64
	)
	b.ResetTimer()
	for op := range b.N {
		b.StopTimer()
		role := fmt.Sprintf("fleet%d", op)
		if err := srv.SetRole(role, vaulttest.DynamicRole{DefaultTTL: fleetTTL, MaxTTL: fleetMaxTTL}); err != nil {
			b.Fatal(err)
		}
		srv.ResetCalls()
		var f fleet
		for range n {
			c, accessor := newClient(b, srv)
			src, err := vault.DynamicRole(c, "", role)
			if err != nil {
				b.Fatal(err)
			}
			f = append(f, startProcess(b, pg, src, accessor,
				rotating.WithSessionMargin(margin), rotating.WithRefreshBeforeExpiry(lead)))
		}
		b.StartTimer()
		start := time.Now()
		f.run(fleetRun, nil, 0)
		took := time.Since(start)
		b.StopTimer()
		_, bad, rej := f.check(b)
		rejected += float64(rej)
		failed += float64(bad)
		// Counted before the pools close: closing them is not the
		// application's work.
		r, w := srv.Calls(vaulttest.OpCreds), srv.Calls(vaulttest.OpLeaseRenew)
		t := srv.Calls(vaulttest.OpLookupSelf) + srv.Calls(vaulttest.OpRenewSelf)
		all := srv.TotalCalls()
		f.close(b)
		waitRevocations(b, srv)
		mine := 0
		for _, l := range srv.Leases() {
			if l.Role != role {
				continue
			}
			mine++
			pastEnd += float64(l.SessionsAtEnd)
			if l.Ended && l.EndReason == vaulttest.EndExpired {
				ended++
				renewals += float64(l.Renewals)
				maxRenewals = max(maxRenewals, float64(l.Renewals))
			}
			if l.SessionsAtEnd > 0 {
				b.Errorf("lease %s (%s): %d sessions outlived it", l.ID, l.EndReason, l.SessionsAtEnd)
			}
		}
		// A read that made no lease failed (Vault too slow for the fetch
		// timeout, say): the connector tried again after its backoff.
		lost += float64(r - int64(mine))
		leases += float64(mine)
		minutes := took.Minutes()
		reads += float64(r) / float64(n) / minutes
		renews += float64(w) / float64(n) / minutes
		token += float64(t) / float64(n)
		total += float64(all) / took.Seconds()
	}
	ops := float64(b.N)
	b.ReportMetric(float64(n), "processes")
	b.ReportMetric(leases/ops/float64(n), "leases/process")
	if ended > 0 {
		b.ReportMetric(renewals/ended, "renewals/lease")
	}
	b.ReportMetric(maxRenewals, "renewals/lease-max")
	b.ReportMetric(ended/ops, "leases-ended")
	b.ReportMetric(reads/ops, "reads/process/min")
	b.ReportMetric(renews/ops, "renewals/process/min")
	b.ReportMetric(token/ops, "token-calls/process")
	b.ReportMetric(total/ops, "vault-calls/s")
	b.ReportMetric(pastEnd/ops, "sessions-past-end")
	b.ReportMetric(lost/ops, "failed-reads")
	b.ReportMetric(rejected/ops, "rejected-logins")
	b.ReportMetric(failed/ops, "failed-queries")
	b.ReportMetric(0, "ns/op")
}

// waitRevocations waits (up to a minute) for the revocations under way to
// finish, so that their sessions-at-end are counted.
func waitRevocations(b *testing.B, srv *vaulttest.Server) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		busy := false
		for _, l := range srv.Leases() {
			busy = busy || l.Ended && l.RevokedAt.IsZero() && l.RevokeError == ""
		}
		if !busy {
			return
		}
		if time.Now().After(deadline) {
			b.Fatal("revocations still running a minute after the run")
		}
		_ = testkit.Sleep(context.Background(), 20*time.Millisecond)
	}
}

// staticSnapshot is the fleet's counters at a rotation's start.
type staticSnapshot struct {
	reads    int64
	rejected []uint64 // per process
}

func takeStatic(srv *vaulttest.Server, f fleet) staticSnapshot {
	s := staticSnapshot{reads: srv.Calls(vaulttest.OpStaticCreds)}
	for _, p := range f {
		s.rejected = append(s.rejected, p.conn.Stats().AuthFailures)
	}
	return s
}

func benchStaticFleet(b *testing.B, pg *pgserver.Server, n int) {
	srv := startVault(b, pg)
	rot, err := srv.Client("")
	if err != nil {
		b.Fatal(err)
	}
	type perKind struct{ reads, rejected, rotations, maxRejected float64 }
	kinds := map[string]*perKind{"scheduled": {}, "rotate-role": {}}
	var token, failed float64
	b.ResetTimer()
	for op := range b.N {
		b.StopTimer()
		user, _ := pgtest.NewRole(b, pg)
		name := fmt.Sprintf("static%d", op)
		if err := srv.SetStaticRole(context.Background(), name, vaulttest.StaticRole{Username: user, RotationPeriod: fleetPeriod}); err != nil {
			b.Fatal(err)
		}
		srv.ResetCalls()
		var f fleet
		for range n {
			c, accessor := newClient(b, srv)
			src, err := vault.StaticRole(c, "", name)
			if err != nil {
				b.Fatal(err)
			}
			f = append(f, startProcess(b, pg, src, accessor))
		}
		// The rotations, each measured from its start to the next's: a
		// scheduled one from a moment before the server's timer runs it,
		// one on demand from the call, half a period after the last
		// rotation.
		var (
			snaps []staticSnapshot
			order []string
		)
		during := func() {
			for range fleetOnDemand {
				st, _ := srv.StaticRoleState(name)
				_ = testkit.Sleep(context.Background(), time.Until(st.NextRotation.Add(-250*time.Millisecond)))
				snaps, order = append(snaps, takeStatic(srv, f)), append(order, "scheduled")
				if err := waitRotation(srv, name, st.Rotations); err != nil {
					b.Error(err)
					return
				}
				_ = testkit.Sleep(context.Background(), fleetPeriod/2)
				snaps, order = append(snaps, takeStatic(srv, f)), append(order, "rotate-role")
				if _, err := rot.Logical().WriteWithContext(context.Background(), "database/rotate-role/"+name, nil); err != nil {
					b.Errorf("rotate-role: %v", err)
					return
				}
			}
		}
		b.StartTimer()
		// After the last rotation on demand, a settling time shorter than
		// the period: no scheduled rotation falls in it.
		f.run(0, during, fleetPeriod/2)
		b.StopTimer()
		snaps = append(snaps, takeStatic(srv, f))
		_, bad, _ := f.check(b)
		failed += float64(bad)
		token += float64(srv.Calls(vaulttest.OpLookupSelf)+srv.Calls(vaulttest.OpRenewSelf)) / float64(n)
		for i, kind := range order {
			from, to := snaps[i], snaps[i+1]
			k := kinds[kind]
			k.rotations++
			k.reads += float64(to.reads-from.reads) / float64(n)
			var rej uint64
			for j := range f {
				d := to.rejected[j] - from.rejected[j]
				rej += d
				k.maxRejected = max(k.maxRejected, float64(d))
			}
			k.rejected += float64(rej) / float64(n)
		}
		f.close(b)
	}
	ops := float64(b.N)
	b.ReportMetric(float64(n), "processes")
	for _, kind := range []string{"scheduled", "rotate-role"} {
		k := kinds[kind]
		if k.rotations == 0 {
			continue
		}
		b.ReportMetric(k.reads/k.rotations, "reads/"+kind+"/process")
		b.ReportMetric(k.rejected/k.rotations, "rejected/"+kind+"/process")
		b.ReportMetric(k.maxRejected, "rejected/"+kind+"/process-max")
	}
	all := kinds["scheduled"].rotations + kinds["rotate-role"].rotations
	b.ReportMetric((kinds["scheduled"].reads+kinds["rotate-role"].reads)/all, "reads/rotation/process")
	b.ReportMetric(all/ops, "rotations")
	b.ReportMetric(token/ops, "token-calls/process")
	b.ReportMetric(failed/ops, "failed-queries")
	b.ReportMetric(0, "ns/op")
}

// waitRotation waits for the static role name's scheduled rotation after
// the before-th.
func waitRotation(srv *vaulttest.Server, name string, before int) error {
	st, _ := srv.StaticRoleState(name)
	deadline := st.NextRotation.Add(15 * time.Second)
	for {
		st, _ := srv.StaticRoleState(name)
		if st.Rotations > before {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("the scheduled rotation did not happen within 15s of its time: " + st.LastError)
		}
		_ = testkit.Sleep(context.Background(), 10*time.Millisecond)
	}
}
