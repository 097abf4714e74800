package recipes_test

import (
	"context"
	"database/sql"
	"log"
	"strings"
	"testing"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/pgxv5"
	"github.com/pgrotate/rotating/recipes/ent"
	"github.com/pgrotate/rotating/recipes/ent/order"
	"github.com/pgrotate/rotating/secrets"
)

// ent over lib/pq: entsql.OpenDB wraps the *sql.DB as an ent driver of
// the given dialect, and ent.Driver hands it to the generated client.
// ent.Open, which takes a driver name and a DSN, cannot take the
// Connector. (No output: it needs a server.)
func Example_ent() {
	ctx := context.Background()
	connector, err := rotating.NewConnector("host=db.internal dbname=app sslmode=verify-full",
		secrets.File("/run/secrets/db.json"))
	if err != nil {
		log.Fatal(err)
	}
	client := ent.NewClient(ent.Driver(entsql.OpenDB(dialect.Postgres, sql.OpenDB(connector))))
	defer client.Close() // closes the *sql.DB and the connector

	if err := client.Schema.Create(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := client.Order.Create().SetWorker(1).SetSeq(1).Save(ctx); err != nil {
		log.Fatal(err)
	}
}

// ent over pgx: the same, with pgx as the Connector's driver. The first
// argument of entsql.OpenDB is ent's dialect, dialect.Postgres, not the
// driver's name. (No output: it needs a server.)
func Example_entPGX() {
	ctx := context.Background()
	connector, err := rotating.NewConnector("host=db.internal dbname=app sslmode=verify-full",
		secrets.File("/run/secrets/db.json"), rotating.WithDriver(pgxv5.Driver()))
	if err != nil {
		log.Fatal(err)
	}
	client := ent.NewClient(ent.Driver(entsql.OpenDB(dialect.Postgres, sql.OpenDB(connector))))
	defer client.Close()

	if err := client.Schema.Create(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := client.Order.Create().SetWorker(1).SetSeq(1).Save(ctx); err != nil {
		log.Fatal(err)
	}
}

// TestEnt is the ent recipe (its code generated from ent/schema) with two
// rotations while four workers insert through the generated client, then
// Schema.Create again (ent inspects the existing table) and the rows
// counted and queried through the client. It also shows the trap: ent.Open
// with pgx's driver name is refused, since the name is also the dialect.
func TestEnt(t *testing.T) {
	forEachDriver(t, func(t *testing.T, r *rig) {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		db, c := r.openDB()

		client := ent.NewClient(ent.Driver(entsql.OpenDB(dialect.Postgres, db)))
		r.do("Schema.Create", client.Schema.Create(ctx))

		load := r.startInserts(ctx, "orders", 4, func(ctx context.Context, worker, seq int) (int64, error) {
			o, err := client.Order.Create().SetWorker(worker).SetSeq(seq).Save(ctx)
			if err != nil {
				return 0, err
			}
			return int64(o.ID), nil
		})
		r.rotateUnderLoad(ctx, c, load, 2)

		r.do("Schema.Create on the existing table", client.Schema.Create(ctx))
		n, err := client.Order.Query().Count(ctx)
		r.do("Count", err)
		first, err := client.Order.Query().Where(order.Worker(0)).Order(order.BySeq()).Limit(3).All(ctx)
		r.do("Query", err)
		if found := r.checkInserts(ctx, load); int64(n) != found {
			t.Errorf("ent counts %d orders, the table holds %d", n, found)
		}
		if len(first) != 3 || first[0].Seq != 0 || first[2].Seq != 2 {
			t.Errorf("worker 0's first orders: %v, want seq 0, 1, 2", first)
		}

		if _, err := ent.Open("pgx", r.dsn()); err == nil || !strings.Contains(err.Error(), "unsupported driver") {
			t.Errorf(`ent.Open("pgx", dsn) = %v; want "unsupported driver", the trap the recipe warns of`, err)
		}
	})
}
