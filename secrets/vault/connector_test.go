package vault_test

import (
	"context"
	"database/sql"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets/vault"
)

// TestConnectorFollowsLeases runs the real connector over a dynamic role
// with a 3 s TTL and a 10 s max_ttl for 30 s of fake time, with a fake
// database that accepts a lease's user until the lease ends: no login may
// fail, no connection may be used once its lease has ended, and the Vault
// calls per lease are counted (reads and renewals for the whole process).
func TestConnectorFollowsLeases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fakeWithRoot()
		f.dynamic["app"] = &fakeDynamic{ttl: 3 * time.Second, maxTTL: 10 * time.Second, renewable: true}
		fdb := testkit.NewFakeDB("nobody", "x")
		f.onCreate = func(user, password string) { fdb.SetPassword(user, password) }
		src, err := vault.DynamicRole(newClient(t, f, rootToken), "", "app")
		if err != nil {
			t.Fatal(err)
		}
		connector, err := rotating.NewConnector("host=db.internal dbname=app", src,
			rotating.WithNewConnector(fdb.Connector),
			rotating.WithSessionMargin(time.Second), rotating.WithRefreshBeforeExpiry(500*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		db := sql.OpenDB(connector)
		defer db.Close()
		db.SetMaxIdleConns(3)

		// sweep ends the leases whose time is up, as Vault's revocation
		// does (the user can no longer log in), and returns when each
		// lease's user's lease ends (or ended).
		ends := map[string]time.Time{}
		sweep := func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			now := time.Now()
			for id, l := range f.leases {
				ends[l.username] = l.expires
				if !now.Before(l.expires) {
					delete(f.leases, id)
					fdb.SetPassword(l.username, "revoked")
				}
			}
		}

		ctx := context.Background()
		start := time.Now()
		var uses, failures int
		users := map[string]bool{}
		for time.Since(start) < 30*time.Second {
			sweep()
			var conns []*sql.Conn
			for range 3 {
				conn, err := db.Conn(ctx)
				if err != nil {
					failures++
					t.Errorf("at %v: %v", time.Since(start), err)
					continue
				}
				conns = append(conns, conn)
			}
			sweep() // the ends of leases read meanwhile
			for _, conn := range conns {
				conn.Raw(func(dc any) error {
					user := rotating.DriverConn(dc).(*testkit.FakeConn).User
					users[user] = true
					if end := ends[user]; !time.Now().Before(end) {
						t.Errorf("at %v: a connection of %s used after its lease ended at %v", time.Since(start), user, end.Sub(start))
					}
					return nil
				})
				conn.Close()
				uses++
			}
			sleep(50 * time.Millisecond)
		}
		db.Close()
		connector.Close()
		synctest.Wait()

		reads, renewals := f.count("GET database/creds/app"), f.count("PUT sys/leases/renew")
		t.Logf("30 s: %d uses, %d failures, %d leases (users %d), %d renewals (%.1f per lease), %d logins to the database",
			uses, failures, reads, len(users), renewals, float64(renewals)/float64(reads), fdb.Dials())
		// Each lease lives about 8.4 s (renewed every 1.25..1.5 s until a
		// renewal is capped 1.6 s before max_ttl): 4 leases in 30 s.
		if reads < 3 || reads > 5 {
			t.Errorf("%d leases read in 30 s, want 3..5", reads)
		}
		if per := float64(renewals) / float64(reads); per < 4 || per > 8 {
			t.Errorf("%.1f renewals per lease, want 4..8", per)
		}
		if got := f.total() - reads - renewals; got != 1 {
			t.Errorf("%d other Vault calls, want 1 (the token's lookup-self)", got)
		}
		if fdb.Rejections() != 0 {
			t.Errorf("%d logins rejected, want 0", fdb.Rejections())
		}
		if len(users) < reads-1 {
			t.Errorf("%d users seen, %d leases: every lease's user but the last one read should have served", len(users), reads)
		}
	})
}
