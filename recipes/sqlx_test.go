package recipes_test

import (
	"context"
	"database/sql"
	"log"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/pgxv5"
	"github.com/pgrotate/rotating/secrets"
)

// sqlxOrder is a row of the sqlx recipe's table orders.
type sqlxOrder struct {
	ID     int64 `db:"id"`
	Worker int   `db:"worker"`
	Seq    int   `db:"seq"`
}

const sqlxSchema = `CREATE TABLE orders (id bigserial PRIMARY KEY, worker integer NOT NULL, seq integer NOT NULL)`

// sqlx over lib/pq: sqlx.NewDb wraps the *sql.DB, and the driver name
// given with it picks the bind style of Rebind and of named queries:
// "postgres" gives $1. A name sqlx does not know ("pgx/v5", "rotating")
// leaves ? in the SQL, which PostgreSQL rejects. (No output: it needs a
// server.)
func Example_sqlx() {
	ctx := context.Background()
	connector, err := rotating.NewConnector("host=db.internal dbname=app sslmode=verify-full",
		secrets.File("/run/secrets/db.json"))
	if err != nil {
		log.Fatal(err)
	}
	db := sqlx.NewDb(sql.OpenDB(connector), "postgres")
	defer db.Close() // closes the connector too

	var id int64
	if err := db.QueryRowxContext(ctx, db.Rebind("INSERT INTO orders (worker, seq) VALUES (?, ?) RETURNING id"), 1, 1).Scan(&id); err != nil {
		log.Fatal(err)
	}
	if _, err := db.NamedExecContext(ctx, "INSERT INTO orders (worker, seq) VALUES (:worker, :seq)", sqlxOrder{Worker: 1, Seq: 2}); err != nil {
		log.Fatal(err)
	}
	var orders []sqlxOrder
	if err := db.SelectContext(ctx, &orders, db.Rebind("SELECT * FROM orders WHERE worker = ?"), 1); err != nil {
		log.Fatal(err)
	}
}

// sqlx over pgx: the same, with pgx as the Connector's driver and the
// driver name "pgx" (sqlx v1.4.0 knows "pgx", not "pgx/v5"). (No output:
// it needs a server.)
func Example_sqlxPGX() {
	ctx := context.Background()
	connector, err := rotating.NewConnector("host=db.internal dbname=app sslmode=verify-full",
		secrets.File("/run/secrets/db.json"), rotating.WithDriver(pgxv5.Driver()))
	if err != nil {
		log.Fatal(err)
	}
	db := sqlx.NewDb(sql.OpenDB(connector), "pgx")
	defer db.Close()

	var id int64
	if err := db.QueryRowxContext(ctx, db.Rebind("INSERT INTO orders (worker, seq) VALUES (?, ?) RETURNING id"), 1, 1).Scan(&id); err != nil {
		log.Fatal(err)
	}
	if _, err := db.NamedExecContext(ctx, "INSERT INTO orders (worker, seq) VALUES (:worker, :seq)", sqlxOrder{Worker: 1, Seq: 2}); err != nil {
		log.Fatal(err)
	}
	var orders []sqlxOrder
	if err := db.SelectContext(ctx, &orders, db.Rebind("SELECT * FROM orders WHERE worker = ?"), 1); err != nil {
		log.Fatal(err)
	}
}

// TestSQLx is the sqlx recipe with two rotations while four workers insert,
// alternating a rebound ? query and a named query (RETURNING id), then
// reads every row back with Select. It also shows the trap: under a driver
// name sqlx does not know, a named query reaches PostgreSQL with ? in it.
func TestSQLx(t *testing.T) {
	forEachDriver(t, func(t *testing.T, r *rig) {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		sdb, c := r.openDB()

		db := sqlx.NewDb(sdb, r.pick("postgres", "pgx"))
		_, err := db.ExecContext(ctx, sqlxSchema)
		r.do("CREATE TABLE", err)

		rebound := db.Rebind("INSERT INTO orders (worker, seq) VALUES (?, ?) RETURNING id")
		load := r.startInserts(ctx, "orders", 4, func(ctx context.Context, worker, seq int) (int64, error) {
			var id int64
			if seq%2 == 0 {
				err := db.QueryRowxContext(ctx, rebound, worker, seq).Scan(&id)
				return id, err
			}
			rows, err := db.NamedQueryContext(ctx, "INSERT INTO orders (worker, seq) VALUES (:worker, :seq) RETURNING id",
				sqlxOrder{Worker: worker, Seq: seq})
			if err != nil {
				return 0, err
			}
			defer rows.Close()
			if rows.Next() {
				err = rows.Scan(&id)
			}
			if err == nil {
				err = rows.Err()
			}
			return id, err
		})
		r.rotateUnderLoad(ctx, c, load, 2)

		var orders []sqlxOrder
		r.do("Select", db.SelectContext(ctx, &orders, db.Rebind("SELECT * FROM orders WHERE id > ?"), 0))
		if found := r.checkInserts(ctx, load); int64(len(orders)) != found {
			t.Errorf("Select read %d orders, the table holds %d", len(orders), found)
		}

		// The trap: sqlx does not know the name, so the named query goes
		// to PostgreSQL with ? in it.
		wrong := sqlx.NewDb(sdb, "pgx/v5")
		if _, err := wrong.NamedExecContext(ctx, "INSERT INTO orders (worker, seq) VALUES (:worker, :seq)", sqlxOrder{Worker: -1}); err == nil {
			t.Error(`sqlx.NewDb(db, "pgx/v5"): a named query succeeded; the trap the recipe warns of is gone`)
		} else {
			t.Logf(`the trap: sqlx.NewDb(db, "pgx/v5"), a named query: %v`, err)
		}
	})
}
