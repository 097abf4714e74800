package rotating

import (
	"context"
	"database/sql/driver"
	"testing"

	"github.com/lib/pq"

	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets"
)

// BenchmarkConnectCached measures the connector's own cost per Connect with
// a cached credential: the dial is a no-op that returns a prebuilt
// connection, so what remains is the connector. "direct" calls the same
// no-op dial without the connector, for the side-by-side figure.
func BenchmarkConnectCached(b *testing.B) {
	conn := &testkit.FakeConn{}
	noop := ConnectorFunc(func(context.Context) (driver.Conn, error) { return conn, nil })
	ctx := context.Background()

	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		var dc driver.Connector = noop
		for b.Loop() {
			if _, err := dc.Connect(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("rotating", func(b *testing.B) {
		c, err := NewConnector("host=h dbname=d", secrets.Static(secrets.Credential{Username: "u", Password: "p"}),
			WithNewConnector(func(pq.Config) (driver.Connector, error) { return noop, nil }))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Connect(ctx); err != nil { // first use: the one fetch
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Connect(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("rotating-parallel", func(b *testing.B) {
		c, err := NewConnector("host=h dbname=d", secrets.Static(secrets.Credential{Username: "u", Password: "p"}),
			WithNewConnector(func(pq.Config) (driver.Connector, error) { return noop, nil }))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Connect(ctx); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.Connect(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
