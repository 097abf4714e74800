package benchmarks

import (
	"context"
	"database/sql/driver"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/vault"
	"github.com/pgrotate/rotating/secrets/vault/vaulttest"
)

// leaseCases are BenchmarkVaultLeaseChange's cases, in the order of its
// first op; each op starts one case later.
var leaseCases = []string{"cached", "new-lease", "lease-read", "revoked-early", "vault-read", "plain-login"}

// BenchmarkVaultLeaseChange times, against a real PostgreSQL server through
// vault.DynamicRole and vaulttest, a login that meets a lease change beside
// a plain cached login. Each op is one round of every case below, each a
// single timed call (its setup untimed), in an order that shifts by one
// case from op to op, so that the machine's load falls on all cases alike
// and each can be compared with the cached login of the same op:
//
//   - cached: the lease in use, logged in with before: one dial.
//   - new-lease: the first Connect after the connector's background refresh
//     read the next lease (its predecessor capped at max_ttl): the new
//     lease's user is dialed once by this caller for everyone (a probe),
//     while the old lease's connections retire. This is the lease change as
//     it normally happens.
//   - lease-read: a Connect that has to read a lease itself (the
//     connector's first use; the same path as a Connect that finds the
//     lease's connections retired with no successor read ahead): one Vault
//     read, which creates the PostgreSQL user, then the dial.
//   - revoked-early: the lease was revoked before its end (its user
//     dropped): the cached login is rejected (28P01), the source's renewal
//     is refused (400) and it reads a new lease, which is dialed.
//   - vault-read: Fetch of a new lease alone (GET database/creds: the
//     server's CREATE ROLE and GRANTs in one transaction).
//   - plain-login: a lib/pq login with a lease's credential, without the
//     connector.
//
// Metrics per case: <case>-p50-ms and <case>-mean-ms; <case>/cached, the
// median over ops of the case's time over the cached login's in the same
// op; <case>-B/call and <case>-allocs/call, from runtime.MemStats around
// the call, which count the whole process (for the cases that call Vault,
// the in-process server's work too). Each login checks, from the
// connector's Stats, that it took the path it names. rounds is b.N; ns/op,
// B/op and allocs/op are the whole round's, waits included.
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
	vc, _ := newClient(b, srv)
	ctx := context.Background()

	cached := newLeaseConnector(b, pg, vc, "long")
	rolling := newLeaseConnector(b, pg, vc, "rolling",
		rotating.WithSessionMargin(500*time.Millisecond), rotating.WithRefreshBeforeExpiry(250*time.Millisecond))
	revoked := newLeaseConnector(b, pg, vc, "long")
	for _, c := range []*rotating.Connector{cached, rolling, revoked} {
		if err := connectOnce(c); err != nil { // the first use: the lease is read
			b.Fatal(err)
		}
	}
	plain := plainConnector(b, pg, srv, vc)

	run := map[string]func() sample{
		"cached": func() sample {
			before := cached.Stats()
			s := timedConnect(b, cached)
			wantPath(b, "cached", before, cached.Stats(), 1, 0, 0, 0)
			return s
		},
		"new-lease": func() sample {
			before := rolling.Stats()
			s := timedConnect(b, rolling)
			wantPath(b, "new-lease", before, rolling.Stats(), 1, 1, 0, 0)
			return s
		},
		"lease-read": func() sample {
			c := newLeaseConnector(b, pg, vc, "long")
			s := timedConnect(b, c)
			wantPath(b, "lease-read", rotating.Stats{}, c.Stats(), 1, 1, 0, 1)
			revokeCurrent(b, srv, c)
			c.Close()
			return s
		},
		"revoked-early": func() sample {
			revokeCurrent(b, srv, revoked)
			before := revoked.Stats()
			s := timedConnect(b, revoked)
			// The rejected dial, the store call that renews (refused) and
			// reads, the probe of the new lease.
			wantPath(b, "revoked-early", before, revoked.Stats(), 2, 1, 1, 1)
			return s
		},
		"vault-read": func() sample {
			src, err := vault.DynamicRole(vc, "", "long")
			if err != nil {
				b.Fatal(err)
			}
			var cred secrets.Credential
			s := timed(b, func() error {
				var err error
				cred, err = src.Fetch(ctx)
				return err
			})
			if err := srv.RevokeLease(ctx, cred.Version); err != nil {
				b.Fatal(err)
			}
			return s
		},
		"plain-login": func() sample { return timedConnect(b, plain) },
	}

	samples := map[string][]sample{}
	ratios := map[string][]float64{}
	b.ResetTimer()
	for op := range b.N {
		// Untimed: wait for the background refresh to bring the next
		// rolling lease, which new-lease logs in with first.
		b.StopTimer()
		changes := rolling.Stats().CredentialChanges
		deadline := time.Now().Add(30 * time.Second)
		for rolling.Stats().CredentialChanges == changes {
			if time.Now().After(deadline) {
				b.Fatal("the connector read no new lease in 30s")
			}
			_ = testkit.Sleep(ctx, time.Millisecond)
		}
		b.StartTimer()
		round := map[string]sample{}
		for i := range leaseCases {
			name := leaseCases[(op+i)%len(leaseCases)]
			round[name] = run[name]()
		}
		for name, s := range round {
			samples[name] = append(samples[name], s)
			ratios[name] = append(ratios[name], float64(s.d)/float64(round["cached"].d))
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N), "rounds")
	for _, name := range leaseCases {
		ss := samples[name]
		var ds []time.Duration
		var total time.Duration
		var bytes, allocs uint64
		for _, s := range ss {
			ds = append(ds, s.d)
			total += s.d
			bytes += s.bytes
			allocs += s.allocs
		}
		n := float64(len(ss))
		b.ReportMetric(ms(percentile(ds, 0.5)), name+"-p50-ms")
		b.ReportMetric(ms(total)/n, name+"-mean-ms")
		b.ReportMetric(float64(bytes)/n, name+"-B/call")
		b.ReportMetric(float64(allocs)/n, name+"-allocs/call")
		if name != "cached" {
			r := ratios[name]
			slices.Sort(r)
			b.ReportMetric(r[len(r)/2], name+"/cached")
		}
	}
}

// sample is one timed call: its duration, and the bytes and objects the
// process allocated meanwhile.
type sample struct {
	d             time.Duration
	bytes, allocs uint64
}

// timed runs f once, timed, and fails b if it fails.
func timed(b *testing.B, f func() error) sample {
	b.Helper()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	err := f()
	d := time.Since(start)
	runtime.ReadMemStats(&m1)
	if err != nil {
		b.Fatal(err)
	}
	return sample{d: d, bytes: m1.TotalAlloc - m0.TotalAlloc, allocs: m1.Mallocs - m0.Mallocs}
}

// timedConnect times one Connect of c, and closes the connection untimed.
func timedConnect(b *testing.B, c driver.Connector) sample {
	b.Helper()
	var conn driver.Conn
	s := timed(b, func() error {
		var err error
		conn, err = c.Connect(context.Background())
		return err
	})
	if err := conn.Close(); err != nil {
		b.Fatal(err)
	}
	return s
}

// closeConn closes the connection a Connect returned, or returns its
// error.
func closeConn(conn driver.Conn, err error) error {
	if err != nil {
		return err
	}
	return conn.Close()
}

// connectOnce opens and closes one connection.
func connectOnce(c driver.Connector) error { return closeConn(c.Connect(context.Background())) }

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

// plainConnector is lib/pq's connector for the credential of a lease read
// for it (revoked when the benchmark ends).
func plainConnector(b *testing.B, pg *pgserver.Server, srv *vaulttest.Server, c *vault.Client) driver.Connector {
	b.Helper()
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
	return plain
}

// wantPath fails b unless the connector's counters moved by exactly the
// dials, probes, rejected logins and store calls (Fetch + FetchPending) of
// the path the case measures.
func wantPath(b *testing.B, name string, before, after rotating.Stats, dials, probes, rejected, calls uint64) {
	b.Helper()
	got := [4]uint64{after.Dials - before.Dials, after.Probes - before.Probes, after.AuthFailures - before.AuthFailures,
		after.Fetches + after.PendingFetches - before.Fetches - before.PendingFetches}
	if want := [4]uint64{dials, probes, rejected, calls}; got != want {
		b.Fatalf("%s: dials, probes, rejected logins, store calls = %v, want %v", name, got, want)
	}
}

// revokeCurrent revokes, untimed, the lease of the connector's credential in
// use.
func revokeCurrent(b *testing.B, srv *vaulttest.Server, conn *rotating.Connector) {
	b.Helper()
	if err := srv.RevokeLease(context.Background(), conn.Stats().CredentialVersion); err != nil {
		b.Fatal(err)
	}
}
