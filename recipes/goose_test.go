package recipes_test

import (
	"context"
	"database/sql"
	"log"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/pgxv5"
	"github.com/pgrotate/rotating/secrets"
)

// goose over lib/pq: goose.NewProvider with the *sql.DB and the dialect.
// goose.OpenDBWithDriver cannot take the Connector: it calls sql.Open
// with a driver name from a fixed list ("postgres" even opens pgx) and a
// DSN whose password is fixed. Provider.Close closes the *sql.DB; leave it
// to the application if the pool is shared. (No output: it needs a
// server.)
func Example_goose() {
	ctx := context.Background()
	connector, err := rotating.NewConnector("host=db.internal dbname=app sslmode=verify-full",
		secrets.File("/run/secrets/db.json"))
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()

	provider, err := goose.NewProvider(goose.DialectPostgres, db, os.DirFS("migrations/goose"))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := provider.Up(ctx); err != nil {
		log.Fatal(err)
	}
}

// goose over pgx: the same, with pgx as the Connector's driver; the
// dialect is still goose.DialectPostgres. (No output: it needs a server.)
func Example_goosePGX() {
	ctx := context.Background()
	connector, err := rotating.NewConnector("host=db.internal dbname=app sslmode=verify-full",
		secrets.File("/run/secrets/db.json"), rotating.WithDriver(pgxv5.Driver()))
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()

	provider, err := goose.NewProvider(goose.DialectPostgres, db, os.DirFS("migrations/goose"))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := provider.Up(ctx); err != nil {
		log.Fatal(err)
	}
}

// TestGoose is the goose recipe applying four migrations one at a time
// (UpByOne, each on a new login) with a rotation before each of the last
// three: the database has the new password while the store still has the
// old, so the step's login is rejected until the store is updated. The
// version, the pending state and the schema are checked after. It also
// shows the trap: OpenDBWithDriver refuses pgx's name, and for "postgres"
// opens pgx, with the DSN's password.
func TestGoose(t *testing.T) {
	forEachDriver(t, func(t *testing.T, r *rig) {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		db, c := r.openDB()

		provider, err := goose.NewProvider(goose.DialectPostgres, db, os.DirFS("migrations/goose"))
		r.do("goose.NewProvider", err)
		for step := 1; step <= migrationSteps; step++ {
			var rot *rotation
			if step > 1 {
				rot = r.beginRotation(ctx)
			}
			res, err := provider.UpByOne(ctx)
			r.do("UpByOne", err)
			if res.Source.Version != int64(step) {
				t.Errorf("UpByOne applied version %d, want %d", res.Source.Version, step)
			}
			if rot != nil {
				rot.finish(ctx, c)
			}
		}
		version, err := provider.GetDBVersion(ctx)
		r.do("GetDBVersion", err)
		pending, err := provider.HasPending(ctx)
		r.do("HasPending", err)
		if version != migrationSteps || pending {
			t.Errorf("after the migrations: version %d, pending %v; want %d, false", version, pending, migrationSteps)
		}
		r.checkAccounts(ctx)

		if _, err := goose.OpenDBWithDriver("pgx/v5", r.dsn()); err == nil {
			t.Error(`goose.OpenDBWithDriver("pgx/v5", dsn) succeeded; the trap the recipe warns of is gone`)
		}
		other, err := goose.OpenDBWithDriver("postgres", r.dsn())
		if err != nil {
			t.Fatalf(`goose.OpenDBWithDriver("postgres", dsn): %v`, err)
		}
		defer other.Close()
		if got := reflect.TypeOf(other.Driver()).String(); got != "*stdlib.Driver" {
			t.Errorf(`goose.OpenDBWithDriver("postgres", dsn) opened a %s; the recipe says it opens pgx's *stdlib.Driver`, got)
		}
	})
}
