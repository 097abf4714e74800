package pgxv5_test

import (
	"context"
	"log"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/pgxv5"
	"github.com/pgrotate/rotating/secrets"
)

// A pgxpool that follows credential rotation: the pool's own config, the
// store, then pgxpool.NewWithConfig as usual. Statements that must not
// fail during a rotation acquire through pgxv5.Acquire. (No output: it
// needs a server.)
func ExampleConfigurePool() {
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig("postgres://db.internal/app?sslmode=verify-full&pool_max_conns=32")
	if err != nil {
		log.Fatal(err)
	}
	cfg.MaxConnLifetime = 30 * time.Minute
	src := secrets.File("/run/secrets/db.json") // or awssm.NewFromConfig, any secrets.Source
	connector, err := pgxv5.ConfigurePool(cfg, src, rotating.WithLogger(slog.Default()))
	if err != nil {
		log.Fatal(err)
	}
	defer connector.Close() // after the pool
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	// pool.Exec and the like work, but may fail once per login that was in
	// flight when the password changed; Acquire retries those.
	conn, err := pgxv5.Acquire(ctx, pool)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "INSERT INTO events (kind) VALUES ($1)", "started"); err != nil {
		log.Fatal(err)
	}
}
