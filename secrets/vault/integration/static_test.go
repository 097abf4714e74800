package vaultintegration

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets/vault"
	"github.com/pgrotate/rotating/secrets/vault/vaulttest"
)

// staticEnv is a static role "app" on a login role of the test's own,
// whose password Vault has just rotated, a table it may insert into, and a
// connector over a vault.StaticRole source with a token that outlives the
// test.
type staticEnv struct {
	*env
	role, table string
	src         *vault.StaticRoleSource
}

func newStaticEnv(t *testing.T, period time.Duration) *staticEnv {
	t.Helper()
	pg := pgtest.Shared(t)
	e := newEnv(t, pg)
	role, pw := pgtest.NewRole(t, pg)
	e.known.Add(pw)
	table := e.newTable(t)
	e.grant(t, table, role)
	if err := e.srv.SetStaticRole(t.Context(), "app", vaulttest.StaticRole{Username: role, RotationPeriod: period}); err != nil {
		t.Fatal(err)
	}
	src, err := vault.StaticRole(e.client(t, e.token(t, vaulttest.TokenOptions{TTL: time.Hour})), "", "app")
	if err != nil {
		t.Fatal(err)
	}
	return &staticEnv{env: e, role: role, table: table, src: src}
}

// TestStaticRoleRotateRole rotates a static role on demand
// (database/rotate-role, as an operator or a pipeline does) every 2 s for
// 20 s while 64 workers insert, each worker's connections living 1 s so
// that new logins meet every rotation. The connector learns of each
// rotation from the first login PostgreSQL rejects and reads the static
// role once for the whole process; no statement fails: a Connect whose
// login is rejected waits for the new password.
//
// A read can come too early: rotate-role changes the password in
// PostgreSQL, then makes it the one static-creds answers (as Vault stores
// it after the database accepted it), and a login rejected in between
// makes the connector read the old password again. It reads once more
// after its backoff (100 ms). The test tells those reads apart by the
// version they returned (last_vault_rotation, in the client's log).
func TestStaticRoleRotateRole(t *testing.T) {
	t.Parallel()
	const workers, rotations, every = 64, 10, 2 * time.Second
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	e := newStaticEnv(t, time.Hour) // no scheduled rotation during the test
	c, db := e.open(t, e.src)
	db.SetMaxIdleConns(workers)
	db.SetConnMaxLifetime(time.Second)
	operator, err := e.srv.Client("")
	if err != nil {
		t.Fatal(err)
	}

	load := testkit.StartInserts(ctx, db, e.table, workers, 1<<30, 0)
	load.WaitAcks(ctx, t, workers, "the first inserts")
	// One window per rotation, from just before its rotate-role call to
	// just before the next one: the rotation's rejected logins and reads
	// all fall in it.
	type window struct {
		at                        time.Time
		stats                     rotating.Stats
		reads, failed             int64
		rejected, readsIn, failIn int64
	}
	snapshot := func() window {
		return window{at: time.Now(), stats: c.Stats(), reads: e.srv.Calls(vaulttest.OpStaticCreds), failed: load.Failed.Load()}
	}
	var wins []window
	start := time.Now()
	for i := range rotations {
		// On a fixed schedule: rotation i+1 at (i+1)·every.
		if err := testkit.Sleep(ctx, time.Until(start.Add(time.Duration(i+1)*every))); err != nil {
			t.Fatal(err)
		}
		wins = append(wins, snapshot())
		if _, err := operator.Logical().WriteWithContext(ctx, "database/rotate-role/app", nil); err != nil {
			e.noteError(err)
			t.Fatalf("rotate-role: %v", err)
		}
	}
	if err := testkit.Sleep(ctx, time.Until(start.Add((rotations+1)*every))); err != nil { // the last rotation met
		t.Fatal(err)
	}
	load.Finish()
	last := snapshot()
	st := last.stats
	reads := last.reads
	for i := range wins {
		next := last
		if i+1 < len(wins) {
			next = wins[i+1]
		}
		w := &wins[i]
		w.rejected = int64(next.stats.AuthFailures - w.stats.AuthFailures)
		w.readsIn, w.failIn = next.reads-w.reads, next.failed-w.failed
	}
	res := e.check(ctx, t, load)
	state, _ := e.srv.StaticRoleState("app")
	versions := staticReads(t, e.env)
	early := 0 // reads that returned the version read before
	for i := 1; i < len(versions); i++ {
		if versions[i] == versions[i-1] {
			early++
		}
	}

	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "rotation	at	static-creds reads	rejected logins	failed statements	")
	var maxRejected int64
	for i, w := range wins {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t\n", i+1, since(start, w.at), w.readsIn, w.rejected, w.failIn)
		maxRejected = max(maxRejected, w.rejected)
	}
	tw.Flush()
	t.Logf("%d workers for %v, %d rotate-role calls every %v: %d statements, %d failed; %d rows acknowledged, %d found, %d lost\n"+
		"static-creds reads: %d = 1 at start + %d rotations + %d early (the old password again, read during Vault's rotation); "+
		"rejected logins: %d in all, at most %d for one rotation; logins %d, recoveries %d, recovery failures %d; Vault rotations %d\n%s",
		workers, last.at.Sub(start).Round(time.Millisecond), len(wins), every, res.Acknowledged+res.Failures, res.Failures,
		res.Acknowledged, res.Found, res.Lost, reads, len(versions)-1-early, early, st.AuthFailures, maxRejected,
		st.Dials, st.Recoveries, st.RecoveryFailures, state.Rotations, b.String())
	if state.Rotations != rotations+1 {
		t.Errorf("Vault counts %d rotations (the first at SetStaticRole), want %d", state.Rotations, rotations+1)
	}
	// Per rotation, one read for the whole process that got the new
	// password, plus the early ones.
	if int64(len(versions)) != reads || len(versions)-early != rotations+1 || early > rotations/2 {
		t.Errorf("%d static-creds reads (%d in the client's log), %d of them early, for %d rotations: want 1 + 1 per rotation, and few early",
			reads, len(versions), early, rotations)
	}
	// Each rotation is learnt from a rejected login (nothing tells the
	// connector before). Those rejected are the logins in flight with the
	// old password when the connector learnt of it: at most one per
	// worker's request, and one per connection database/sql opens ahead
	// for a queued request, plus the connector's probe.
	if lo, hi := uint64(rotations), uint64(rotations*(2*workers+1)); st.AuthFailures < lo || st.AuthFailures > hi {
		t.Errorf("%d rejected logins for %d rotations, want %d to %d", st.AuthFailures, rotations, lo, hi)
	}
	if st.RecoveryFailures != 0 || st.FetchErrors != 0 {
		t.Errorf("Stats: %d recovery failures, %d fetch errors; want 0 and 0", st.RecoveryFailures, st.FetchErrors)
	}
}

// staticReads returns the version (last_vault_rotation) each read of the
// static role returned, in order, from the Vault client's log.
func staticReads(t *testing.T, e *env) []string {
	t.Helper()
	var out []string
	for line := range strings.Lines(e.appLogs.String()) {
		var rec struct {
			Msg     string `json:"msg"`
			Version string `json:"last_vault_rotation"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("the application's log: %v", err)
		}
		if rec.Msg == "vault: read static role" {
			out = append(out, rec.Version)
		}
	}
	return out
}

// TestStaticRoleScheduledRotation lets Vault rotate a static role on its
// own schedule, every 4 s (three rotations), while 16 workers insert
// through a normal pool. The static-creds answer's ttl is the credential's
// NextRotation, so the connector reads the role again just after each
// rotation (within the second of jitter it adds, plus the rounding of ttl
// to whole seconds), before any login has been rejected; a login made then
// uses the new password at once. No statement fails and no login is
// rejected. (The pool's connections live on across the rotations, as
// sessions opened with the old password do; the logins the test makes
// after each rotation show that new ones are not rejected.)
func TestStaticRoleScheduledRotation(t *testing.T) {
	t.Parallel()
	const workers, rotations, period = 16, 3, 4 * time.Second
	// A read less than half a second before a rotation answers ttl 0
	// (Vault rounds it): the source then says the rotation is due, and
	// the connector asks again after its longest backoff.
	const maxBackoff = time.Second
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	e := newStaticEnv(t, period)
	c, db := e.open(t, e.src, rotating.WithBackoff(50*time.Millisecond, maxBackoff))
	db.SetMaxIdleConns(workers)

	load := testkit.StartInserts(ctx, db, e.table, workers, 1<<30, 10*time.Millisecond)
	load.WaitAcks(ctx, t, workers, "the first inserts")
	first, _ := e.srv.StaticRoleState("app")
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "rotation\tVault rotated\tconnector read it\tafter\treads\trejected logins\t")
	readsBefore, rejectedBefore := e.srv.Calls(vaulttest.OpStaticCreds), c.Stats().AuthFailures
	var worst time.Duration
	for i := range rotations {
		n := first.Rotations + i + 1
		var rotated time.Time
		testkit.WaitFor(ctx, t, 2*period, fmt.Sprintf("Vault's rotation %d", i+1), func() bool {
			s, _ := e.srv.StaticRoleState("app")
			rotated = s.LastRotation
			return s.Rotations >= n
		})
		// The connector has the new password once its credential's
		// version is the new last_vault_rotation; the time it read it is
		// CredentialFetchedAt.
		var picked time.Time
		testkit.WaitFor(ctx, t, 2*period, fmt.Sprintf("the connector to read rotation %d", i+1), func() bool {
			s := c.Stats()
			picked = s.CredentialFetchedAt
			return s.CredentialFetchedAt.After(rotated)
		})
		// A new login now uses the new password, without a rejection.
		conn, err := c.Connect(ctx)
		if err != nil {
			e.noteError(err)
			t.Fatalf("a login after rotation %d: %v", i+1, err)
		}
		conn.Close()
		reads, rejected := e.srv.Calls(vaulttest.OpStaticCreds), c.Stats().AuthFailures
		after := picked.Sub(rotated)
		worst = max(worst, after)
		fmt.Fprintf(tw, "%d\t%s\t%s\t%v\t%d\t%d\t\n", i+1, rotated.Format("15:04:05.000"), picked.Format("15:04:05.000"),
			after.Round(time.Millisecond), reads-readsBefore, rejected-rejectedBefore)
		// ttl is rounded to a second, and the connector adds up to a
		// second of jitter; a read just before the rotation (ttl 0) is
		// followed by another after maxBackoff. 1 s more for a loaded
		// machine.
		if limit := 500*time.Millisecond + time.Second + maxBackoff; after > limit {
			t.Errorf("rotation %d was read %v after Vault made it, want at most %v", i+1, after.Round(time.Millisecond), limit)
		}
		// One read per rotation, or two when the first came just before it.
		if r := reads - readsBefore; r < 1 || r > 2 {
			t.Errorf("rotation %d: %d static-creds reads, want 1 or 2", i+1, r)
		}
		readsBefore, rejectedBefore = reads, rejected
	}
	load.Finish()
	tw.Flush()
	st := c.Stats()
	res := e.check(ctx, t, load)
	t.Logf("%d workers, %d scheduled rotations every %v: %d statements, %d failed; %d rows acknowledged, %d lost; "+
		"static-creds reads %d; rejected logins %d; slowest read of a rotation %v after it\n%s",
		workers, rotations, period, res.Acknowledged+res.Failures, res.Failures, res.Acknowledged, res.Lost,
		e.srv.Calls(vaulttest.OpStaticCreds), st.AuthFailures, worst.Round(time.Millisecond), b.String())
	if st.AuthFailures != 0 {
		t.Errorf("%d logins rejected: the connector should have read each rotation before a login met it", st.AuthFailures)
	}
}
