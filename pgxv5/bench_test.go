package pgxv5

import (
	"context"
	"database/sql/driver"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets"
)

// noopConnector is a dial that costs nothing: it returns a prebuilt
// connection, so that what a benchmark measures around it is the wrapping.
type noopConnector struct{ conn driver.Conn }

func (n noopConnector) Connect(context.Context) (driver.Conn, error) { return n.conn, nil }
func (noopConnector) Driver() driver.Driver                          { return stdlib.GetDefaultDriver() }

// noopDriver is a rotating.Driver whose per-credential connector is
// connector(inner): inner is the no-op dial, and connector what the pgx
// path puts around the dial (boundConnector), or nothing.
type noopDriver struct {
	inner     driver.Connector
	connector func(inner driver.Connector, loginTimeout time.Duration) driver.Connector
}

func (d noopDriver) ParseDSN(string) (rotating.DriverConfig, error) { return d, nil }

func (d noopDriver) Connector(cred secrets.Credential, loginTimeout time.Duration) (driver.Connector, string, error) {
	return d.connector(d.inner, loginTimeout), cred.Username, nil
}

func (noopDriver) Driver() driver.Driver { return stdlib.GetDefaultDriver() }

// BenchmarkConnectCachedPgx is the root package's BenchmarkConnectCached
// for the pgx path: the cost per Connect with a cached credential when the
// dial itself is a no-op, so that what remains is ours.
//
//   - direct: the no-op dial alone.
//   - boundConnector: pgxv5's wrapper around the dial alone (the bound of
//     every login by the rotation wait).
//   - rotating-driver: the rotating Connector through the Driver seam
//     (WithDriver) with the no-op dial as the credential's connector: the
//     Connector's own cost, as for lib/pq.
//   - rotating-pgx: the same with the no-op dial inside what
//     config.Connector puts around a one-host login (redacting; the login's
//     bound is pgx's own ConnectTimeout, inside pgx's login): everything the
//     pgx path adds to pgx's own login.
//   - rotating-pgx-multihost: the same for several hosts, where
//     boundConnector bounds the whole login.
//
// ctx=background is how database/sql calls Connect for a pool refill
// without a caller's context; ctx=deadline is a caller's context with a
// deadline (an hour: later than the rotation wait).
func BenchmarkConnectCachedPgx(b *testing.B) {
	noop := noopConnector{conn: &testkit.FakeConn{}}
	bare := func(inner driver.Connector, _ time.Duration) driver.Connector { return inner }
	bound := func(inner driver.Connector, loginTimeout time.Duration) driver.Connector {
		return boundConnector{inner: inner, loginTimeout: loginTimeout}
	}
	oneHost := func(inner driver.Connector, _ time.Duration) driver.Connector { return redacting{inner} }
	multiHost := func(inner driver.Connector, loginTimeout time.Duration) driver.Connector {
		return boundConnector{inner: redacting{inner}, loginTimeout: loginTimeout}
	}
	newRotating := func(b *testing.B, wrap func(driver.Connector, time.Duration) driver.Connector) *rotating.Connector {
		c, err := rotating.NewConnector("host=h dbname=d",
			secrets.Static(secrets.Credential{Username: "u", Password: "p"}),
			rotating.WithDriver(noopDriver{inner: noop, connector: wrap}))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = c.Close() })
		if _, err := c.Connect(context.Background()); err != nil { // first use: the one fetch
			b.Fatal(err)
		}
		return c
	}

	for _, withDeadline := range []bool{false, true} {
		name := "ctx=background"
		if withDeadline {
			name = "ctx=deadline"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			if withDeadline {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, time.Hour)
				defer cancel()
			}
			for _, c := range []struct {
				name string
				conn func(b *testing.B) driver.Connector
			}{
				{"direct", func(*testing.B) driver.Connector { return noop }},
				{"boundConnector", func(*testing.B) driver.Connector { return bound(noop, rotating.DefaultRotationWait) }},
				{"rotating-driver", func(b *testing.B) driver.Connector { return newRotating(b, bare) }},
				{"rotating-pgx", func(b *testing.B) driver.Connector { return newRotating(b, oneHost) }},
				{"rotating-pgx-multihost", func(b *testing.B) driver.Connector { return newRotating(b, multiHost) }},
			} {
				b.Run(c.name, func(b *testing.B) {
					conn := c.conn(b)
					b.ReportAllocs()
					for b.Loop() {
						if _, err := conn.Connect(ctx); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}
