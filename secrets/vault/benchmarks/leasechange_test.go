package benchmarks

import (
	"context"
	"database/sql/driver"
	"fmt"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets/vault"
	"github.com/pgrotate/rotating/secrets/vault/vaulttest"
)

// BenchmarkVaultLeaseChange times, against a real PostgreSQL server through
// vault.DynamicRole and vaulttest, a login that meets a lease change beside
// a plain cached login, one Connect per op (the setup of each op is not
// timed), side by side in one run:
//
//   - login=cached: the lease in use, logged in with before: one dial.
//   - login=new-lease: the first Connect after the connector's background
//     refresh read the next lease (its predecessor capped at max_ttl): the
//     new lease's user is dialed once by this caller for everyone (a
//     probe), while the old lease's connections retire. This is the lease
//     change as it normally happens.
//   - login=lease-read: a Connect that has to read a lease itself (the
//     connector's first use; the same path as a Connect that finds the
//     lease's connections retired with no successor read ahead): one Vault
//     read, which creates the PostgreSQL user, then the dial.
//   - login=revoked-early: the lease was revoked before its end (its user
//     dropped): the cached login is rejected (28P01), the source's renewal
//     is refused (400) and it reads a new lease, which is dialed.
//   - ref=vault-read: Fetch of a new lease alone (GET database/creds: the
//     server's CREATE ROLE and GRANTs in one transaction).
//   - ref=plain-login: a lib/pq login with a lease's credential, without
//     the connector.
//
// ns/op is the mean; p50-ms the median. B/op and allocs/op (-benchmem)
// count the whole process, so for the logins that call Vault they include
// the in-process Vault server's work. Each login checks, from the
// connector's Stats, that it took the path it names.
func BenchmarkVaultLeaseChange(b *testing.B) {
	pg := pgtest.Shared(b)
	srv := startVault(b, pg)
	if err := srv.SetRole("long", vaulttest.DynamicRole{DefaultTTL: time.Hour, MaxTTL: 2 * time.Hour}); err != nil {
		b.Fatal(err)
	}
	// Leases of 2 s that cannot be renewed beyond: the connector reads the
	// next one about 0.75 s after each read.
	if err := srv.SetRole("rolling", vaulttest.DynamicRole{DefaultTTL: 2 * time.Second, MaxTTL: 2 * time.Second}); err != nil {
		b.Fatal(err)
	}
	c, _ := newClient(b, srv)
	for _, bc := range []struct {
		name string
		run  func(b *testing.B, pg *pgserver.Server, srv *vaulttest.Server, c *vault.Client) []time.Duration
	}{
		{"login=cached", benchCachedLogin},
		{"login=new-lease", benchNewLeaseLogin},
		{"login=lease-read", benchLeaseReadLogin},
		{"login=revoked-early", benchRevokedLogin},
		{"ref=vault-read", benchVaultRead},
		{"ref=plain-login", benchPlainLogin},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ds := bc.run(b, pg, srv, c)
			b.ReportMetric(ms(percentile(ds, 0.5)), "p50-ms")
		})
	}
}

// timedConnect runs one timed Connect of c and closes the connection
// untimed; the timer must be stopped when it is called.
func timedConnect(b *testing.B, c driver.Connector) time.Duration {
	b.Helper()
	b.StartTimer()
	start := time.Now()
	conn, err := c.Connect(context.Background())
	d := time.Since(start)
	b.StopTimer()
	if err != nil {
		b.Fatalf("Connect: %v", err)
	}
	if err := conn.Close(); err != nil {
		b.Fatal(err)
	}
	return d
}

func newLeaseConnector(b *testing.B, pg *pgserver.Server, c *vault.Client, role string, opts ...rotating.Option) *rotating.Connector {
	b.Helper()
	src, err := vault.DynamicRole(c, "", role)
	if err != nil {
		b.Fatal(err)
	}
	conn, err := rotating.NewConnector(endpointDSN(pg), src, opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return conn
}

// wantPath fails b unless the connector's counters moved by exactly the
// dials, probes, rejected logins and store calls (Fetch + FetchPending) of
// the path the benchmark measures.
func wantPath(b *testing.B, before, after rotating.Stats, dials, probes, rejected, calls uint64) {
	b.Helper()
	got := [4]uint64{after.Dials - before.Dials, after.Probes - before.Probes, after.AuthFailures - before.AuthFailures,
		after.Fetches + after.PendingFetches - before.Fetches - before.PendingFetches}
	if want := [4]uint64{dials, probes, rejected, calls}; got != want {
		b.Fatalf("dials, probes, rejected logins, store calls = %v, want %v", got, want)
	}
}

func benchCachedLogin(b *testing.B, pg *pgserver.Server, _ *vaulttest.Server, c *vault.Client) []time.Duration {
	conn := newLeaseConnector(b, pg, c, "long")
	b.StopTimer()
	timedConnect(b, conn) // the first use: the lease is read
	ds := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	b.StopTimer()
	for range b.N {
		before := conn.Stats()
		ds = append(ds, timedConnect(b, conn))
		wantPath(b, before, conn.Stats(), 1, 0, 0, 0)
	}
	return ds
}

func benchNewLeaseLogin(b *testing.B, pg *pgserver.Server, _ *vaulttest.Server, c *vault.Client) []time.Duration {
	conn := newLeaseConnector(b, pg, c, "rolling",
		rotating.WithSessionMargin(500*time.Millisecond), rotating.WithRefreshBeforeExpiry(250*time.Millisecond))
	b.StopTimer()
	timedConnect(b, conn)
	ds := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	b.StopTimer()
	for range b.N {
		// Wait, untimed, for the background refresh to bring the next
		// lease, then log in: the first login with it.
		changes := conn.Stats().CredentialChanges
		deadline := time.Now().Add(30 * time.Second)
		for conn.Stats().CredentialChanges == changes {
			if time.Now().After(deadline) {
				b.Fatal("the connector read no new lease in 30s")
			}
			_ = testkit.Sleep(context.Background(), time.Millisecond)
		}
		before := conn.Stats()
		ds = append(ds, timedConnect(b, conn))
		wantPath(b, before, conn.Stats(), 1, 1, 0, 0)
	}
	return ds
}

func benchLeaseReadLogin(b *testing.B, pg *pgserver.Server, srv *vaulttest.Server, c *vault.Client) []time.Duration {
	ds := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	b.StopTimer()
	for range b.N {
		conn := newLeaseConnector(b, pg, c, "long")
		ds = append(ds, timedConnect(b, conn))
		wantPath(b, rotating.Stats{}, conn.Stats(), 1, 1, 0, 1)
		revokeCurrent(b, srv, conn)
		conn.Close()
	}
	return ds
}

func benchRevokedLogin(b *testing.B, pg *pgserver.Server, srv *vaulttest.Server, c *vault.Client) []time.Duration {
	conn := newLeaseConnector(b, pg, c, "long")
	b.StopTimer()
	timedConnect(b, conn)
	ds := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	b.StopTimer()
	for range b.N {
		revokeCurrent(b, srv, conn)
		before := conn.Stats()
		ds = append(ds, timedConnect(b, conn))
		// The rejected dial, the store call that renews (refused) and
		// reads, the probe of the new lease.
		wantPath(b, before, conn.Stats(), 2, 1, 1, 1)
	}
	return ds
}

func benchVaultRead(b *testing.B, _ *pgserver.Server, srv *vaulttest.Server, c *vault.Client) []time.Duration {
	ds := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	b.StopTimer()
	for range b.N {
		src, err := vault.DynamicRole(c, "", "long")
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		cred, err := src.Fetch(context.Background())
		d := time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		ds = append(ds, d)
		if err := srv.RevokeLease(context.Background(), cred.Version); err != nil {
			b.Fatal(err)
		}
	}
	return ds
}

func benchPlainLogin(b *testing.B, pg *pgserver.Server, srv *vaulttest.Server, c *vault.Client) []time.Duration {
	src, err := vault.DynamicRole(c, "", "long")
	if err != nil {
		b.Fatal(err)
	}
	cred, err := src.Fetch(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.RevokeLease(context.Background(), cred.Version) })
	cfg, err := pq.NewConfig(fmt.Sprintf("%s user=%s password=%s", endpointDSN(pg), cred.Username, pq.QuoteLiteral(cred.Password)))
	if err != nil {
		b.Fatal("the lease's DSN does not parse") // lib/pq's error would quote the password
	}
	plain, err := pq.NewConnectorConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ds := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	b.StopTimer()
	for range b.N {
		ds = append(ds, timedConnect(b, plain))
	}
	return ds
}

// revokeCurrent revokes, untimed, the lease of the connector's credential in
// use.
func revokeCurrent(b *testing.B, srv *vaulttest.Server, conn *rotating.Connector) {
	b.Helper()
	if err := srv.RevokeLease(context.Background(), conn.Stats().CredentialVersion); err != nil {
		b.Fatal(err)
	}
}
