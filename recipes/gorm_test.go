package recipes_test

import (
	"context"
	"database/sql"
	"log"
	"testing"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/pgxv5"
	"github.com/pgrotate/rotating/secrets"
)

// gormOrder is the gorm recipe's model: table orders.
type gormOrder struct {
	ID     int64
	Worker int
	Seq    int
}

// TableName names the model's table.
func (gormOrder) TableName() string { return "orders" }

// gorm over lib/pq: the *sql.DB goes in postgres.Config.Conn, and
// DriverName must say "postgres". Left empty, gorm assumes pgx and its
// AutoMigrate of an existing table passes lib/pq an argument it cannot
// take. (No output: it needs a server.)
func Example_gorm() {
	connector, err := rotating.NewConnector("host=db.internal dbname=app sslmode=verify-full",
		secrets.File("/run/secrets/db.json")) // or any secrets.Source
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(connector) // db.Close closes the connector
	defer db.Close()

	gdb, err := gorm.Open(postgres.New(postgres.Config{Conn: db, DriverName: "postgres"}), &gorm.Config{})
	if err != nil {
		log.Fatal(err)
	}
	if err := gdb.AutoMigrate(&gormOrder{}); err != nil {
		log.Fatal(err)
	}
	if err := gdb.Create(&gormOrder{Worker: 1, Seq: 1}).Error; err != nil {
		log.Fatal(err)
	}
}

// gorm over pgx: the same, with pgx as the Connector's driver and
// DriverName "pgx". (No output: it needs a server.)
func Example_gormPGX() {
	connector, err := rotating.NewConnector("host=db.internal dbname=app sslmode=verify-full",
		secrets.File("/run/secrets/db.json"), rotating.WithDriver(pgxv5.Driver()))
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()

	gdb, err := gorm.Open(postgres.New(postgres.Config{Conn: db, DriverName: "pgx"}), &gorm.Config{})
	if err != nil {
		log.Fatal(err)
	}
	if err := gdb.AutoMigrate(&gormOrder{}); err != nil {
		log.Fatal(err)
	}
	if err := gdb.Create(&gormOrder{Worker: 1, Seq: 1}).Error; err != nil {
		log.Fatal(err)
	}
}

// TestGorm is the gorm recipe with two rotations while four workers insert
// through gdb.Create, AutoMigrate run before and again after (on the
// existing table, where a wrong DriverName fails), and the rows counted
// through gorm and through the superuser. With lib/pq it also shows the
// trap: DriverName left empty, the second AutoMigrate fails.
func TestGorm(t *testing.T) {
	forEachDriver(t, func(t *testing.T, r *rig) {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		db, c := r.openDB()

		// The recipe, with gorm's log off: it reports every statement that
		// waited out the rotation as slow SQL.
		quiet := &gorm.Config{Logger: logger.Discard}
		gdb, err := gorm.Open(postgres.New(postgres.Config{Conn: db, DriverName: r.pick("postgres", "pgx")}), quiet)
		r.do("gorm.Open", err)
		gdb = gdb.WithContext(ctx)
		r.do("AutoMigrate", gdb.AutoMigrate(&gormOrder{}))

		load := r.startInserts(ctx, "orders", 4, func(ctx context.Context, worker, seq int) (int64, error) {
			o := gormOrder{Worker: worker, Seq: seq}
			err := gdb.WithContext(ctx).Create(&o).Error
			return o.ID, err
		})
		r.rotateUnderLoad(ctx, c, load, 2)
		r.do("AutoMigrate on the existing table", gdb.AutoMigrate(&gormOrder{}))
		var n int64
		r.do("Count", gdb.Model(&gormOrder{}).Count(&n).Error)
		if found := r.checkInserts(ctx, load); n != found {
			t.Errorf("gorm counts %d orders, the table holds %d", n, found)
		}

		if !r.isPGX() {
			bad, err := gorm.Open(postgres.New(postgres.Config{Conn: db}), quiet)
			if err != nil {
				t.Fatalf("gorm.Open without DriverName: %v", err)
			}
			if err := bad.WithContext(ctx).AutoMigrate(&gormOrder{}); err == nil {
				t.Error("with lib/pq and DriverName left empty, AutoMigrate of an existing table succeeded; the trap the recipe warns of is gone")
			} else {
				t.Logf("the trap: lib/pq, DriverName left empty, AutoMigrate of an existing table: %v", err)
			}
		}
	})
}
