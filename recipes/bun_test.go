package recipes_test

import (
	"context"
	"database/sql"
	"log"
	"testing"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/pgxv5"
	"github.com/pgrotate/rotating/secrets"
)

// bunOrder is the bun recipe's model: table orders.
type bunOrder struct {
	bun.BaseModel `bun:"table:orders"`

	ID     int64 `bun:",pk,autoincrement"`
	Worker int   `bun:",notnull"`
	Seq    int   `bun:",notnull"`
}

// bun over lib/pq: bun.NewDB with the *sql.DB and pgdialect. The Connector
// takes the place of bun's own pgdriver.NewConnector, whose password is
// fixed; the dialect is pgdialect whichever driver logs in, since a
// *sql.DB does not tell bun what it talks to. (No output: it needs a
// server.)
func Example_bun() {
	ctx := context.Background()
	connector, err := rotating.NewConnector("host=db.internal dbname=app sslmode=verify-full",
		secrets.File("/run/secrets/db.json"))
	if err != nil {
		log.Fatal(err)
	}
	db := bun.NewDB(sql.OpenDB(connector), pgdialect.New())
	defer db.Close() // closes the connector too

	if _, err := db.NewCreateTable().Model((*bunOrder)(nil)).IfNotExists().Exec(ctx); err != nil {
		log.Fatal(err)
	}
	order := &bunOrder{Worker: 1, Seq: 1}
	if _, err := db.NewInsert().Model(order).Exec(ctx); err != nil { // sets order.ID
		log.Fatal(err)
	}
}

// bun over pgx: the same, with pgx as the Connector's driver; the dialect
// is still pgdialect. (No output: it needs a server.)
func Example_bunPGX() {
	ctx := context.Background()
	connector, err := rotating.NewConnector("host=db.internal dbname=app sslmode=verify-full",
		secrets.File("/run/secrets/db.json"), rotating.WithDriver(pgxv5.Driver()))
	if err != nil {
		log.Fatal(err)
	}
	db := bun.NewDB(sql.OpenDB(connector), pgdialect.New())
	defer db.Close()

	if _, err := db.NewCreateTable().Model((*bunOrder)(nil)).IfNotExists().Exec(ctx); err != nil {
		log.Fatal(err)
	}
	order := &bunOrder{Worker: 1, Seq: 1}
	if _, err := db.NewInsert().Model(order).Exec(ctx); err != nil {
		log.Fatal(err)
	}
}

// TestBun is the bun recipe with two rotations while four workers insert
// through NewInsert (which returns the id), then counts and selects the
// rows through bun.
func TestBun(t *testing.T) {
	forEachDriver(t, func(t *testing.T, r *rig) {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		sdb, c := r.openDB()

		db := bun.NewDB(sdb, pgdialect.New())
		_, err := db.NewCreateTable().Model((*bunOrder)(nil)).IfNotExists().Exec(ctx)
		r.do("NewCreateTable", err)

		load := r.startInserts(ctx, "orders", 4, func(ctx context.Context, worker, seq int) (int64, error) {
			o := &bunOrder{Worker: worker, Seq: seq}
			_, err := db.NewInsert().Model(o).Exec(ctx)
			return o.ID, err
		})
		r.rotateUnderLoad(ctx, c, load, 2)

		n, err := db.NewSelect().Model((*bunOrder)(nil)).Count(ctx)
		r.do("Count", err)
		var first []bunOrder
		r.do("Select", db.NewSelect().Model(&first).Where("worker = ?", 0).Order("seq").Limit(3).Scan(ctx))
		if found := r.checkInserts(ctx, load); int64(n) != found {
			t.Errorf("bun counts %d orders, the table holds %d", n, found)
		}
		if len(first) != 3 || first[0].Seq != 0 || first[2].Seq != 2 {
			t.Errorf("worker 0's first orders: %+v, want seq 0, 1, 2", first)
		}
	})
}
