package recipes_test

import (
	"context"
	"database/sql"
	"errors"
	"log"
	"testing"
	"time"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database"
	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/database/postgres"
	_ "github.com/golang-migrate/migrate/v4/source/file"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/pgxv5"
	"github.com/pgrotate/rotating/secrets"
)

// golang-migrate over lib/pq: postgres.WithInstance takes the *sql.DB,
// migrate.NewWithDatabaseInstance the driver it returns. Two traps:
// WithInstance holds one session of the pool from then on, and m.Close
// closes the *sql.DB, and with it the Connector. So give migrate a
// Connector and pool of its own, closed with it. (No output: it needs a
// server.)
func Example_migrate() {
	connector, err := rotating.NewConnector("host=db.internal dbname=app sslmode=verify-full",
		secrets.File("/run/secrets/db.json"))
	if err != nil {
		log.Fatal(err)
	}
	driver, err := postgres.WithInstance(sql.OpenDB(connector), &postgres.Config{})
	if err != nil {
		log.Fatal(err)
	}
	m, err := migrate.NewWithDatabaseInstance("file://migrations", "postgres", driver)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close() // closes the *sql.DB and the connector
	if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		log.Fatal(err)
	}
}

// golang-migrate over pgx: the same with pgx as the Connector's driver and
// migrate's pgx/v5 database driver, whose errors are pgx's (the postgres
// one looks for lib/pq's *pq.Error to report a migration's failing line).
// (No output: it needs a server.)
func Example_migratePGX() {
	connector, err := rotating.NewConnector("host=db.internal dbname=app sslmode=verify-full",
		secrets.File("/run/secrets/db.json"), rotating.WithDriver(pgxv5.Driver()))
	if err != nil {
		log.Fatal(err)
	}
	driver, err := migratepgx.WithInstance(sql.OpenDB(connector), &migratepgx.Config{})
	if err != nil {
		log.Fatal(err)
	}
	m, err := migrate.NewWithDatabaseInstance("file://migrations", "pgx5", driver)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		log.Fatal(err)
	}
}

// TestMigrate is the golang-migrate recipe applying four migrations in two
// runs, each with a Connector and pool of its own as the recipe says, and a
// rotation in each. In the first, the rotation lands between two steps,
// which run on the one session WithInstance holds (the test checks that no
// login happened), and m.Close closes the pool. The second run starts
// while the database has the next password and the store the old one:
// WithInstance's login is rejected until the store is updated, then Up
// applies the rest. The version and the schema are checked after.
func TestMigrate(t *testing.T) {
	forEachDriver(t, func(t *testing.T, r *rig) {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		withInstance := func(db *sql.DB) (database.Driver, error) {
			if r.isPGX() {
				return migratepgx.WithInstance(db, &migratepgx.Config{})
			}
			return postgres.WithInstance(db, &postgres.Config{})
		}
		const source = "file://migrations/migrate"
		dbName := r.pick("postgres", "pgx5")

		// The first run: steps 1 and 2, a rotation between them.
		db, c := r.openDB()
		driver, err := withInstance(db)
		r.do("WithInstance", err)
		m, err := migrate.NewWithDatabaseInstance(source, dbName, driver)
		r.do("NewWithDatabaseInstance", err)
		r.do("Steps(1)", m.Steps(1))
		rot := r.beginRotation(ctx)
		dials := c.Stats().Dials
		r.do("Steps(1) after ALTER ROLE", m.Steps(1))
		if d := c.Stats().Dials - dials; d != 0 {
			t.Errorf("the step after ALTER ROLE made %d logins; the recipe says migrate keeps the one session WithInstance took", d)
		}
		rot.storeUpdated(ctx)
		t.Logf("rotation %d: the step after ALTER ROLE ran on migrate's session, with no login", r.rotations)
		srcErr, dbErr := m.Close()
		r.do("Close", errors.Join(srcErr, dbErr))
		if err := db.PingContext(ctx); err == nil || err.Error() != "sql: database is closed" {
			t.Errorf("the pool after m.Close: Ping = %v; the recipe says m.Close closes it", err)
		}

		// The second run, begun in the middle of a rotation.
		rot = r.beginRotation(ctx)
		db, c = r.openDB()
		driver, err = withInstance(db)
		r.do("WithInstance during the rotation", err)
		rot.finish(ctx, c)
		m, err = migrate.NewWithDatabaseInstance(source, dbName, driver)
		r.do("NewWithDatabaseInstance", err)
		r.do("Up", m.Up())
		version, dirty, err := m.Version()
		r.do("Version", err)
		if version != migrationSteps || dirty {
			t.Errorf("after the migrations: version %d, dirty %v; want %d, false", version, dirty, migrationSteps)
		}
		srcErr, dbErr = m.Close()
		r.do("Close", errors.Join(srcErr, dbErr))
		r.checkAccounts(ctx)
	})
}
