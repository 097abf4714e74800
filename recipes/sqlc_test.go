package recipes_test

import (
	"context"
	"database/sql"
	"log"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/testkit/drivers"
	"github.com/pgrotate/rotating/pgxv5"
	"github.com/pgrotate/rotating/recipes/sqlc/orders"
	"github.com/pgrotate/rotating/recipes/sqlc/orderspgx"
	"github.com/pgrotate/rotating/secrets"
)

// sqlc-generated code over lib/pq: with sql_package database/sql, the
// generated New takes a DBTX, and the *sql.DB is one. (No output: it
// needs a server.)
func Example_sqlc() {
	ctx := context.Background()
	connector, err := rotating.NewConnector("host=db.internal dbname=app sslmode=verify-full",
		secrets.File("/run/secrets/db.json"))
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()

	queries := orders.New(db)
	if _, err := queries.CreateOrder(ctx, orders.CreateOrderParams{Worker: 1, Seq: 1}); err != nil {
		log.Fatal(err)
	}
}

// sqlc-generated code over pgx through database/sql: the same package,
// with pgx as the Connector's driver. (No output: it needs a server.)
func Example_sqlcPGX() {
	ctx := context.Background()
	connector, err := rotating.NewConnector("host=db.internal dbname=app sslmode=verify-full",
		secrets.File("/run/secrets/db.json"), rotating.WithDriver(pgxv5.Driver()))
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()

	queries := orders.New(db)
	if _, err := queries.CreateOrder(ctx, orders.CreateOrderParams{Worker: 1, Seq: 1}); err != nil {
		log.Fatal(err)
	}
}

// sqlc-generated code in pgx mode (sql_package pgx/v5): its DBTX is pgx's
// Exec/Query/QueryRow, which a *pgxpool.Pool has, so there is no *sql.DB;
// pgxv5.ConfigurePool puts the pool on the Connector. orderspgx.New(pool)
// works, but pgxpool cannot retry a login: a statement may fail once per
// login that was in flight when the password changed. Where a rotation
// must cost no failed statement, take a connection with pgxv5.Acquire,
// which retries that login, and hand it to New. (No output: it needs a
// server.)
func Example_sqlcPgxPool() {
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig("host=db.internal dbname=app sslmode=verify-full")
	if err != nil {
		log.Fatal(err)
	}
	connector, err := pgxv5.ConfigurePool(cfg, secrets.File("/run/secrets/db.json"))
	if err != nil {
		log.Fatal(err)
	}
	defer connector.Close() // after the pool
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	conn, err := pgxv5.Acquire(ctx, pool)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Release()
	if _, err := orderspgx.New(conn).CreateOrder(ctx, orderspgx.CreateOrderParams{Worker: 1, Seq: 1}); err != nil {
		log.Fatal(err)
	}
	n, err := orderspgx.New(pool).CountOrders(ctx) // may fail during a rotation
	if err != nil {
		log.Fatal(err)
	}
	_ = n
}

// sqlcSchema is sqlc/schema.sql, the table sqlc generated the code for.
func sqlcSchema(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("sqlc/schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSQLC is the sqlc recipe (database/sql mode, package sqlc/orders)
// with two rotations while four workers insert through the generated
// CreateOrder, then CountOrders and ListWorkerOrders.
func TestSQLC(t *testing.T) {
	forEachDriver(t, func(t *testing.T, r *rig) {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		db, c := r.openDB()
		_, err := db.ExecContext(ctx, sqlcSchema(t))
		r.do("CREATE TABLE", err)

		queries := orders.New(db)
		load := r.startInserts(ctx, "orders", 4, func(ctx context.Context, worker, seq int) (int64, error) {
			o, err := queries.CreateOrder(ctx, orders.CreateOrderParams{Worker: int32(worker), Seq: int32(seq)})
			return o.ID, err
		})
		r.rotateUnderLoad(ctx, c, load, 2)

		n, err := queries.CountOrders(ctx)
		r.do("CountOrders", err)
		list, err := queries.ListWorkerOrders(ctx, 0)
		r.do("ListWorkerOrders", err)
		if found := r.checkInserts(ctx, load); n != found {
			t.Errorf("CountOrders = %d, the table holds %d", n, found)
		}
		if len(list) == 0 || list[0].Seq != 0 || list[len(list)-1].Seq != int32(len(list)-1) {
			t.Errorf("worker 0's orders: %d, from seq %v; want seq 0 up to one less than their number", len(list), list)
		}
	})
}

// TestSQLCPgxPool is the sqlc recipe in pgx mode (package sqlc/orderspgx)
// over a pgxpool set up by pgxv5.ConfigurePool, every connection
// destroyed on release so that every insert logs in: two rotations while
// four workers insert through orderspgx.New on a connection from
// pgxv5.Acquire, then CountOrders on orderspgx.New(pool).
func TestSQLCPgxPool(t *testing.T) {
	r := newRig(t, drivers.PGX)
	r.pgxpool = true
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cfg, err := pgxpool.ParseConfig(r.dsn())
	if err != nil {
		t.Fatal(err)
	}
	cfg.AfterRelease = func(*pgx.Conn) bool { return false } // every acquire logs in
	c, err := pgxv5.ConfigurePool(cfg, r.store)
	if err != nil {
		t.Fatal(err)
	}
	r.track(c)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close) // before the Connector: cleanups run last-in first-out

	_, err = pool.Exec(ctx, sqlcSchema(t))
	r.do("CREATE TABLE", err)
	load := r.startInserts(ctx, "orders", 4, func(ctx context.Context, worker, seq int) (int64, error) {
		conn, err := pgxv5.Acquire(ctx, pool)
		if err != nil {
			return 0, err
		}
		defer conn.Release()
		o, err := orderspgx.New(conn).CreateOrder(ctx, orderspgx.CreateOrderParams{Worker: int32(worker), Seq: int32(seq)})
		return o.ID, err
	})
	r.rotateUnderLoad(ctx, c, load, 2)

	n, err := orderspgx.New(pool).CountOrders(ctx)
	r.do("CountOrders", err)
	if found := r.checkInserts(ctx, load); n != found {
		t.Errorf("CountOrders = %d, the table holds %d", n, found)
	}
}
