package integration

import (
	"context"
	"database/sql/driver"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/secrets"
)

// BenchmarkConnect measures one real login (Connect, then Close) to the
// shared server, with lib/pq's own connector and with the rotating
// Connector for the same credential. Serial, for clean per-login figures:
//
//	go test -run XXX -bench Connect -benchmem ./integration/
func BenchmarkConnect(b *testing.B) {
	srv := pgtest.Shared(b)
	role, pw := pgtest.NewRole(b, srv)

	b.Run("plain-pq", func(b *testing.B) {
		cfg, err := pq.NewConfig(srv.DSN(role, pw, "postgres"))
		if err != nil {
			b.Fatal(err)
		}
		c, err := pq.NewConnectorConfig(cfg)
		if err != nil {
			b.Fatal(err)
		}
		benchConnect(b, context.Background(), c)
	})
	b.Run("rotating", func(b *testing.B) {
		src := newCountingSource("bench", secrets.Credential{Username: role, Password: pw})
		benchConnect(b, context.Background(), newConnector(b, baseDSN(srv), src))
	})
	// With a context that can end, the Connector also watches the login's
	// socket so that the context bounds the whole login (database/sql passes
	// the caller's context, which usually has a deadline).
	b.Run("rotating-deadline-ctx", func(b *testing.B) {
		src := newCountingSource("bench", secrets.Credential{Username: role, Password: pw})
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		benchConnect(b, ctx, newConnector(b, baseDSN(srv), src))
	})
}

func benchConnect(b *testing.B, ctx context.Context, c driver.Connector) {
	// One login before the timer starts: the rotating connector's first
	// fetch is not what is measured.
	conn, err := c.Connect(ctx)
	if err != nil {
		b.Fatal(err)
	}
	_ = conn.Close()
	b.ResetTimer()
	for range b.N {
		conn, err := c.Connect(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := conn.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
}
