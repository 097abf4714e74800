package vaulttest_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets/vault/vaulttest"
)

var usernameRE = regexp.MustCompile(`^v-token-app-[A-Za-z0-9]{20}-\d{10}$`)

func TestDynamicCreds(t *testing.T) {
	t.Parallel()
	srv, pg := start(t)
	table := newTable(t, pg)
	if err := srv.SetRole("app", grantRole(table, 30*time.Second, time.Minute)); err != nil {
		t.Fatal(err)
	}
	c := client(t, srv, appToken(t, srv, vaulttest.TokenOptions{TTL: time.Hour}))

	before := time.Now()
	s, err := c.Logical().ReadWithContext(t.Context(), "database/creds/app")
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	if !strings.HasPrefix(s.LeaseID, "database/creds/app/") || len(s.LeaseID) != len("database/creds/app/")+24 {
		t.Errorf("lease_id %q, want database/creds/app/ and 24 random characters", s.LeaseID)
	}
	if !s.Renewable || s.LeaseDuration != 30 {
		t.Errorf("renewable %v, lease_duration %d; want true, 30", s.Renewable, s.LeaseDuration)
	}
	cr := credsOf(t, s)
	if !usernameRE.MatchString(cr.user) {
		t.Errorf("username %q, want v-token-app-<20 random>-<unix time>", cr.user)
	}
	l, found := srv.Lease(s.LeaseID)
	if !found || l.Username != cr.user || l.Role != "app" || l.Ended {
		t.Fatalf("Lease(%q) = %+v, %v", s.LeaseID, l, found)
	}
	if l.ExpireTime.Before(before.Add(30*time.Second)) || l.ExpireTime.After(after.Add(30*time.Second)) {
		t.Errorf("lease ends %v, want 30 s after the read (%v .. %v)", l.ExpireTime, before, after)
	}
	if want := l.IssueTime.Add(time.Minute); !l.MaxExpireTime.Equal(want) {
		t.Errorf("max expire %v, want %v", l.MaxExpireTime, want)
	}

	// The role exists, may log in, and has VALID UNTIL the lease's end
	// plus Vault's 5 s, to the second.
	row := pgRole(t, pg, cr.user)
	if !row.exists || !row.canLogin {
		t.Fatalf("pg_roles row for %s: %+v", cr.user, row)
	}
	if want := l.ExpireTime.Add(5 * time.Second).Truncate(time.Second); !row.validUntil.Equal(want) {
		t.Errorf("rolvaliduntil %v, want %v", row.validUntil, want)
	}

	// The credentials log in and have the granted privileges.
	db, err := sql.Open("postgres", pg.DSN(cr.user, cr.password, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(t.Context(), "INSERT INTO "+table+" (v) VALUES ('a')"); err != nil {
		t.Fatalf("insert as the dynamic role: %v", err)
	}
	db.Close()

	// Every read makes a new role.
	s2, err := c.Logical().ReadWithContext(t.Context(), "database/creds/app")
	if err != nil {
		t.Fatal(err)
	}
	cr2 := credsOf(t, s2)
	if cr2.user == cr.user || cr2.password == cr.password || s2.LeaseID == s.LeaseID {
		t.Errorf("a second read answered the same user, password or lease")
	}
	if n := srv.Calls(vaulttest.OpCreds); n != 2 {
		t.Errorf("Calls(OpCreds) = %d, want 2", n)
	}

	_, err = c.Logical().ReadWithContext(t.Context(), "database/creds/nope")
	wantStatus(t, err, 400, "unknown role: nope")
	_, err = c.Logical().WriteWithContext(t.Context(), "database/creds/app", nil)
	wantStatus(t, err, 405, "unsupported operation")
}

func TestLeaseRenewal(t *testing.T) {
	t.Parallel()
	srv, pg := start(t)
	if err := srv.SetRole("app", vaulttest.DynamicRole{DefaultTTL: 4 * time.Second, MaxTTL: 8 * time.Second}); err != nil {
		t.Fatal(err)
	}
	c := client(t, srv, appToken(t, srv, vaulttest.TokenOptions{}))
	s, err := c.Logical().ReadWithContext(t.Context(), "database/creds/app")
	if err != nil {
		t.Fatal(err)
	}
	cr, id := credsOf(t, s), s.LeaseID
	first, _ := srv.Lease(id)

	// Without an increment, a renewal extends by the role's default TTL
	// and moves VALID UNTIL with it.
	testkit.Sleep(t.Context(), 1100*time.Millisecond)
	r1, err := c.Sys().RenewWithContext(t.Context(), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r1.LeaseID != id || !r1.Renewable || r1.LeaseDuration != 4 {
		t.Errorf("renewal answered lease %q renewable %v duration %d; want %q true 4", r1.LeaseID, r1.Renewable, r1.LeaseDuration, id)
	}
	l1, _ := srv.Lease(id)
	if d := l1.ExpireTime.Sub(first.ExpireTime); d < time.Second || d > 3*time.Second {
		t.Errorf("renewal moved the end by %v, want about 1.1 s", d)
	}
	if row := pgRole(t, pg, cr.user); !row.validUntil.Equal(l1.ValidUntil.Truncate(time.Second)) || !l1.ValidUntil.Equal(l1.ExpireTime.Add(5*time.Second)) {
		t.Errorf("rolvaliduntil %v, lease valid until %v (end %v)", row.validUntil, l1.ValidUntil, l1.ExpireTime)
	}

	// A larger increment is capped at max_ttl from the lease's creation.
	r2, err := c.Sys().RenewWithContext(t.Context(), id, 60)
	if err != nil {
		t.Fatal(err)
	}
	l2, _ := srv.Lease(id)
	if !l2.ExpireTime.Equal(l2.MaxExpireTime) {
		t.Errorf("capped renewal ends %v, want the max %v", l2.ExpireTime, l2.MaxExpireTime)
	}
	if r2.LeaseDuration < 5 || r2.LeaseDuration > 7 {
		t.Errorf("capped lease_duration %d, want 8 s less the time since creation, rounded down (5..7)", r2.LeaseDuration)
	}
	if len(r2.Warnings) != 1 || !strings.Contains(r2.Warnings[0], "capped") {
		t.Errorf("warnings %q, want Vault's capped-TTL warning", r2.Warnings)
	}
	if row := pgRole(t, pg, cr.user); !row.validUntil.Equal(l2.MaxExpireTime.Add(5 * time.Second).Truncate(time.Second)) {
		t.Errorf("rolvaliduntil %v after the capped renewal, want max + 5 s = %v", row.validUntil, l2.MaxExpireTime.Add(5*time.Second))
	}
	if l2.Renewals != 2 || srv.Calls(vaulttest.OpLeaseRenew) != 2 {
		t.Errorf("renewals %d, calls %d; want 2, 2", l2.Renewals, srv.Calls(vaulttest.OpLeaseRenew))
	}

	look, err := c.Sys().LookupWithContext(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if ttl, _ := look.Data["ttl"].(json.Number).Int64(); ttl < 5 || ttl > 7 {
		t.Errorf("lookup ttl %d, want 5..7", ttl)
	}
	if look.Data["id"] != id || look.Data["renewable"] != true {
		t.Errorf("lookup data %v", look.Data)
	}

	_, err = c.Sys().RenewWithContext(t.Context(), "database/creds/app/unknown", 0)
	wantStatus(t, err, 400, "lease not found")
	_, err = c.Sys().LookupWithContext(t.Context(), "database/creds/app/unknown")
	wantStatus(t, err, 400, "invalid lease")

	// The lease ends at its max, not later, and can no longer be renewed.
	testkit.WaitFor(t.Context(), t, 20*time.Second, "the lease's revocation", func() bool {
		l, _ := srv.Lease(id)
		return !l.RevokedAt.IsZero()
	})
	end, _ := srv.Lease(id)
	if late := end.EndedAt.Sub(end.MaxExpireTime); late < 0 || late > 2*time.Second {
		t.Errorf("the lease ended %v after its max_ttl, want 0..2s", late)
	}
	_, err = c.Sys().RenewWithContext(t.Context(), id, 0)
	wantStatus(t, err, 400, "lease not found")
}

func TestLeaseEndRevokes(t *testing.T) {
	t.Parallel()
	srv, pg := start(t)
	table := newTable(t, pg)
	if err := srv.SetRole("app", grantRole(table, 2*time.Second, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	c := client(t, srv, appToken(t, srv, vaulttest.TokenOptions{}))
	s, err := c.Logical().ReadWithContext(t.Context(), "database/creds/app")
	if err != nil {
		t.Fatal(err)
	}
	cr := credsOf(t, s)

	// A session the application did not retire before the lease's end.
	db, err := sql.Open("postgres", pg.DSN(cr.user, cr.password, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(t.Context(), "INSERT INTO "+table+" (v) VALUES ('before')"); err != nil {
		t.Fatal(err)
	}
	if n := sessionsOf(t, pg, cr.user); n != 1 {
		t.Fatalf("%d sessions of the role before the end, want 1", n)
	}

	testkit.WaitFor(t.Context(), t, 15*time.Second, "the lease's revocation", func() bool {
		l, _ := srv.Lease(s.LeaseID)
		return !l.RevokedAt.IsZero()
	})
	l, _ := srv.Lease(s.LeaseID)
	if !l.Ended || l.EndReason != vaulttest.EndExpired || l.RevokeError != "" {
		t.Errorf("lease after its end: %+v", l)
	}
	late, took := l.EndedAt.Sub(l.ExpireTime), l.RevokedAt.Sub(l.ExpireTime)
	t.Logf("revocation began %v after the lease's end and finished %v after it", late, took)
	if late < 0 || late > time.Second || took > 5*time.Second {
		t.Errorf("revocation began %v and finished %v after the end; want 0..1s and at most 5s", late, took)
	}
	if l.SessionsAtEnd != 1 || l.SessionsAfterEnd != 0 {
		t.Errorf("sessions at end %d, after %d; want 1, 0", l.SessionsAtEnd, l.SessionsAfterEnd)
	}
	if row := pgRole(t, pg, cr.user); row.exists {
		t.Errorf("role %s still exists after its lease's end", cr.user)
	}
	if n := sessionsOf(t, pg, cr.user); n != 0 {
		t.Errorf("%d sessions of the role after the end", n)
	}
	if _, err := conn.ExecContext(t.Context(), "INSERT INTO "+table+" (v) VALUES ('after')"); err == nil {
		t.Error("the open session of a revoked role still works")
	}
	wantRefused(t, pg, cr, "a new login after the lease's end")
}

// A pool that logs in again as soon as its sessions are ended must not get
// a session of the revoked role in before the DROP ROLE (it would outlive
// the role, without privileges): the revocation makes the role NOLOGIN
// before it ends the sessions.
func TestRevocationOutrunsReconnects(t *testing.T) {
	t.Parallel()
	srv, pg := start(t)
	table := newTable(t, pg)
	if err := srv.SetRole("app", grantRole(table, time.Minute, 2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	c := client(t, srv, appToken(t, srv, vaulttest.TokenOptions{}))
	s, err := c.Logical().ReadWithContext(t.Context(), "database/creds/app")
	if err != nil {
		t.Fatal(err)
	}
	cr := credsOf(t, s)
	var oid int64
	if err := pg.Admin().QueryRowContext(t.Context(), "SELECT oid::int8 FROM pg_roles WHERE rolname = $1", cr.user).Scan(&oid); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("postgres", pg.DSN(cr.user, cr.password, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const workers = 8
	db.SetMaxIdleConns(workers)
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				db.ExecContext(ctx, "SELECT 1") // errors expected once revoked
			}
		})
	}
	testkit.WaitFor(t.Context(), t, 30*time.Second, "the workers' sessions", func() bool { return sessionsOf(t, pg, cr.user) >= workers/2 })
	if err := srv.RevokeLease(t.Context(), s.LeaseID); err != nil {
		t.Fatal(err)
	}
	// The workers keep trying to log in for a while after the DROP.
	if err := testkit.Sleep(t.Context(), 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	stop()
	wg.Wait()
	var left int
	if err := pg.Admin().QueryRowContext(t.Context(), "SELECT count(*) FROM pg_stat_activity WHERE usesysid = $1::oid", oid).Scan(&left); err != nil {
		t.Fatal(err)
	}
	l, _ := srv.Lease(s.LeaseID)
	t.Logf("sessions at the revocation %d, after it %d; sessions of the dropped role afterwards: %d", l.SessionsAtEnd, l.SessionsAfterEnd, left)
	if left != 0 || l.SessionsAfterEnd != 0 {
		t.Errorf("%d sessions of the dropped role are left (%d after the termination): a login got in before the DROP ROLE", left, l.SessionsAfterEnd)
	}
}

func TestKeepSessions(t *testing.T) {
	t.Parallel()
	srv, pg := start(t)
	table := newTable(t, pg)
	role := grantRole(table, 2*time.Second, 10*time.Second)
	role.KeepSessions = true
	if err := srv.SetRole("app", role); err != nil {
		t.Fatal(err)
	}
	c := client(t, srv, appToken(t, srv, vaulttest.TokenOptions{}))
	s, err := c.Logical().ReadWithContext(t.Context(), "database/creds/app")
	if err != nil {
		t.Fatal(err)
	}
	cr := credsOf(t, s)
	db, err := sql.Open("postgres", pg.DSN(cr.user, cr.password, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(t.Context(), "INSERT INTO "+table+" (v) VALUES ('before')"); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t.Context(), t, 15*time.Second, "the lease's revocation", func() bool {
		l, _ := srv.Lease(s.LeaseID)
		return !l.RevokedAt.IsZero()
	})
	l, _ := srv.Lease(s.LeaseID)
	if l.SessionsAtEnd != 1 || l.SessionsAfterEnd != 1 {
		t.Errorf("sessions at end %d, after %d; want 1, 1", l.SessionsAtEnd, l.SessionsAfterEnd)
	}
	// As with Vault: the session lives on, and fails with permission
	// errors.
	var one int
	if err := conn.QueryRowContext(t.Context(), "SELECT 1").Scan(&one); err != nil {
		t.Errorf("the kept session is gone: %v", err)
	}
	_, err = conn.ExecContext(t.Context(), "INSERT INTO "+table+" (v) VALUES ('after')")
	if st := sqlState(err); st != "42501" {
		t.Errorf("insert on the kept session after the end: %v (SQLSTATE %q), want 42501", err, st)
	}
	wantRefused(t, pg, cr, "a new login after the lease's end")
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	srv, pg := start(t)
	if err := srv.SetRole("app", vaulttest.DynamicRole{DefaultTTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	c := client(t, srv, "")
	read := func() (string, creds) {
		s, err := c.Logical().ReadWithContext(t.Context(), "database/creds/app")
		if err != nil {
			t.Fatal(err)
		}
		return s.LeaseID, credsOf(t, s)
	}

	// sys/leases/revoke revokes before answering.
	id, cr := read()
	if err := c.Sys().RevokeWithContext(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	l, _ := srv.Lease(id)
	if l.EndReason != vaulttest.EndRevoked || l.RevokedAt.IsZero() || pgRole(t, pg, cr.user).exists {
		t.Errorf("after sys/leases/revoke: %+v, role exists %v", l, pgRole(t, pg, cr.user).exists)
	}
	// Vault answers success for a lease it does not have.
	if err := c.Sys().RevokeWithContext(t.Context(), id); err != nil {
		t.Errorf("revoking a revoked lease: %v", err)
	}

	// A lease revoked early from Go.
	id, cr = read()
	if err := srv.RevokeLease(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	l, _ = srv.Lease(id)
	if l.EndReason != vaulttest.EndRevokedEarly || !l.EndedAt.Before(l.ExpireTime) || pgRole(t, pg, cr.user).exists {
		t.Errorf("after RevokeLease: %+v", l)
	}
	wantRefused(t, pg, cr, "a login after RevokeLease")
	if err := srv.RevokeLease(t.Context(), id); !errors.Is(err, vaulttest.ErrNoLease) {
		t.Errorf("RevokeLease twice: %v, want ErrNoLease", err)
	}
	_, err := c.Sys().RenewWithContext(t.Context(), id, 0)
	wantStatus(t, err, 400, "lease not found")
	if n := srv.Calls(vaulttest.OpLeaseRevoke); n != 2 {
		t.Errorf("Calls(OpLeaseRevoke) = %d, want 2", n)
	}
}

func TestLeasesDieWithToken(t *testing.T) {
	t.Parallel()
	srv, pg := start(t)
	if err := srv.SetRole("app", vaulttest.DynamicRole{DefaultTTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	read := func(token string) (string, creds) {
		s, err := client(t, srv, token).Logical().ReadWithContext(t.Context(), "database/creds/app")
		if err != nil {
			t.Fatal(err)
		}
		return s.LeaseID, credsOf(t, s)
	}

	// Revoked from Go.
	tokA := appToken(t, srv, vaulttest.TokenOptions{})
	idA, crA := read(tokA)
	if l, _ := srv.Lease(idA); l.TokenAccessor != srv.TokenAccessor(tokA) || l.TokenAccessor == "" {
		t.Errorf("lease's token accessor %q, want %q", l.TokenAccessor, srv.TokenAccessor(tokA))
	}
	if err := srv.RevokeToken(tokA); err != nil {
		t.Fatal(err)
	}
	if l, _ := srv.Lease(idA); l.EndReason != vaulttest.EndTokenRevoked || l.RevokedAt.IsZero() || pgRole(t, pg, crA.user).exists {
		t.Errorf("after RevokeToken: %+v", l)
	}
	_, err := client(t, srv, tokA).Auth().Token().LookupSelfWithContext(t.Context())
	wantStatus(t, err, 403, "permission denied")

	// A child token made through the API dies with its parent.
	parent := appToken(t, srv, vaulttest.TokenOptions{})
	child, err := client(t, srv, parent).Auth().Token().CreateWithContext(t.Context(), &api.TokenCreateRequest{TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	idC, crC := read(child.Auth.ClientToken)
	if err := client(t, srv, parent).Auth().Token().RevokeSelfWithContext(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	if l, _ := srv.Lease(idC); l.EndReason != vaulttest.EndTokenRevoked || pgRole(t, pg, crC.user).exists {
		t.Errorf("lease of a child token after its parent's revoke-self: %+v", l)
	}

	// Expired: the lease ends with the token, not an hour later.
	tokB := appToken(t, srv, vaulttest.TokenOptions{TTL: 2 * time.Second})
	look, err := client(t, srv, tokB).Auth().Token().LookupSelfWithContext(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	tokenEnd, err := time.Parse(time.RFC3339Nano, look.Data["expire_time"].(string))
	if err != nil {
		t.Fatal(err)
	}
	idB, crB := read(tokB)
	testkit.WaitFor(t.Context(), t, 15*time.Second, "the expired token's lease to be revoked", func() bool {
		l, _ := srv.Lease(idB)
		return !l.RevokedAt.IsZero()
	})
	l, _ := srv.Lease(idB)
	late := l.EndedAt.Sub(tokenEnd)
	t.Logf("the lease ended %v after its token", late)
	if l.EndReason != vaulttest.EndTokenExpired || late < 0 || late > time.Second || pgRole(t, pg, crB.user).exists {
		t.Errorf("lease of an expired token: %+v (%v after the token's end)", l, late)
	}
}

func TestStaticRole(t *testing.T) {
	t.Parallel()
	pg := pgtest.Shared(t)
	user, original := pgtest.NewRole(t, pg) // before start: dropped after Close
	srv, _ := start(t)
	before := time.Now()
	if err := srv.SetStaticRole(t.Context(), "static-app", vaulttest.StaticRole{Username: user, RotationPeriod: 3 * time.Second}); err != nil {
		t.Fatal(err)
	}
	// Creating the static role rotated the password at once.
	wantRefused(t, pg, creds{user, original}, "the password from before the static role")
	c := client(t, srv, appToken(t, srv, vaulttest.TokenOptions{}))
	read := func() (creds, map[string]any) {
		s, err := c.Logical().ReadWithContext(t.Context(), "database/static-creds/static-app")
		if err != nil {
			t.Fatal(err)
		}
		if s.LeaseID != "" || s.Renewable || s.LeaseDuration != 0 {
			t.Errorf("static creds with a lease: %q %v %d", s.LeaseID, s.Renewable, s.LeaseDuration)
		}
		return credsOf(t, s), s.Data
	}
	p1, data := read()
	if p1.user != user {
		t.Errorf("username %q, want %q", p1.user, user)
	}
	if n, _ := data["rotation_period"].(json.Number).Int64(); n != 3 {
		t.Errorf("rotation_period %v, want 3", data["rotation_period"])
	}
	if n, _ := data["ttl"].(json.Number).Int64(); n < 2 || n > 3 {
		t.Errorf("ttl %v, want 2..3", data["ttl"])
	}
	last, err := time.Parse(time.RFC3339Nano, data["last_vault_rotation"].(string))
	if err != nil || last.Before(before) || last.After(time.Now()) {
		t.Errorf("last_vault_rotation %v (%v), want between %v and now", data["last_vault_rotation"], err, before)
	}
	if err := login(t.Context(), pg, p1); err != nil {
		t.Fatalf("login with the static password: %v", err)
	}
	first, _ := srv.StaticRoleState("static-app")

	// On schedule: a new password one period later; the old one is
	// refused.
	testkit.WaitFor(t.Context(), t, 15*time.Second, "the scheduled rotation", func() bool {
		st, _ := srv.StaticRoleState("static-app")
		return st.Rotations >= 2
	})
	second, _ := srv.StaticRoleState("static-app")
	if d := second.LastRotation.Sub(first.LastRotation); d < 3*time.Second || d > 4*time.Second {
		t.Errorf("the scheduled rotation came %v after the first, want 3s..4s", d)
	}
	wantRefused(t, pg, p1, "the password before the scheduled rotation")
	p2, _ := read()
	if p2.password == p1.password {
		t.Fatal("static-creds answers the old password after a rotation")
	}
	if err := login(t.Context(), pg, p2); err != nil {
		t.Fatalf("login with the rotated password: %v", err)
	}

	// On demand: rotate-role answers 204 once the old password is dead.
	if _, err := c.Logical().WriteWithContext(t.Context(), "database/rotate-role/static-app", nil); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, pg, p2, "the password before rotate-role")
	p3, _ := read()
	if err := login(t.Context(), pg, p3); err != nil || p3.password == p2.password {
		t.Fatalf("after rotate-role: login %v, same password %v", err, p3.password == p2.password)
	}
	third, _ := srv.StaticRoleState("static-app")
	if third.Rotations < 3 || !third.NextRotation.Equal(third.LastRotation.Add(3*time.Second)) {
		t.Errorf("after rotate-role: %+v", third)
	}
	if n := srv.Calls(vaulttest.OpRotateRole); n != 1 {
		t.Errorf("Calls(OpRotateRole) = %d, want 1", n)
	}
	if n := srv.Calls(vaulttest.OpStaticCreds); n != 3 {
		t.Errorf("Calls(OpStaticCreds) = %d, want 3", n)
	}

	_, err = c.Logical().ReadWithContext(t.Context(), "database/static-creds/nope")
	wantStatus(t, err, 400, "unknown role: nope")
	_, err = c.Logical().WriteWithContext(t.Context(), "database/rotate-role/nope", nil)
	wantStatus(t, err, 400, "no static role found for role name")
	if err := srv.SetStaticRole(t.Context(), "missing", vaulttest.StaticRole{Username: "no_such_user_here", RotationPeriod: time.Hour}); err == nil {
		t.Error("SetStaticRole for a user that does not exist succeeded")
	}
}
