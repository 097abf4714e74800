package recipes_test

// The scaffolding every recipe's test shares: a real PostgreSQL server, a
// role of the test's own with a schema of its own, a store whose password
// the test changes, the rotation (ALTER ROLE, then the store a little
// later, as integration/rotation_test.go's runbook does), and the counts
// the recipes report. The per-tool files hold the recipes.

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/internal/testkit/drivers"
	"github.com/pgrotate/rotating/secrets"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// Timing of a rotation: the store is updated this long after the ALTER
// ROLE (logins in between are rejected, and the Connector keeps
// re-checking the store), and traffic runs this long under each
// credential.
const (
	rotationGap = 300 * time.Millisecond
	trafficTime = 200 * time.Millisecond
)

// store is the secrets store of a recipe's test: the credential the test
// sets, and a count of every Fetch.
type store struct {
	fetches atomic.Int64

	mu   sync.Mutex // guards cred
	cred secrets.Credential
}

var (
	_ secrets.Source    = (*store)(nil)
	_ secrets.Describer = (*store)(nil)
)

// Fetch returns the credential the test set last.
func (s *store) Fetch(ctx context.Context) (secrets.Credential, error) {
	s.fetches.Add(1)
	if err := ctx.Err(); err != nil {
		return secrets.Credential{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cred, nil
}

// Describe names the store for the Connector's errors and logs.
func (*store) Describe() string { return "recipes test store" }

// setPassword is the store being updated with a new password.
func (s *store) setPassword(pw string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cred.Password = pw
}

// rig is one recipe's run over one driver: the server, the role (whose
// own schema, named as the role, is first on its search_path, so that each
// run's tables, migration tables included, are its own and are dropped
// with it), the store, and the counts.
type rig struct {
	t      *testing.T
	driver drivers.Driver
	srv    *pgserver.Server
	role   string
	store  *store
	begin  time.Time

	connectors []*rotating.Connector
	// pgxpool is set when the recipe's logins are a pgxpool's
	// (pgxv5.ConfigurePool): they report rejections to the Connector but
	// do not go through its Connect, so Stats().Recoveries does not count
	// their recoveries.
	pgxpool bool

	// The recipe's operations: each call of the tool the recipe makes
	// (a statement, a migration step, a query), and those that failed.
	ops, failed atomic.Int64
	rotations   int // rotations the recipe's work crossed
}

// forEachDriver runs recipe as a subtest for lib/pq (the Connector's
// default) and for pgx (rotating.WithDriver(pgxv5.Driver())), each with a
// rig of its own.
func forEachDriver(t *testing.T, recipe func(t *testing.T, r *rig)) {
	for _, d := range drivers.All {
		t.Run(d.Name, func(t *testing.T) { recipe(t, newRig(t, d)) })
	}
}

func newRig(t *testing.T, d drivers.Driver) *rig {
	t.Helper()
	srv := pgtest.Shared(t)
	role, pw := pgtest.NewRole(t, srv)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := srv.Exec(ctx, "CREATE SCHEMA "+role+" AUTHORIZATION "+role); err != nil {
		t.Fatalf("create the role's schema: %v", err)
	}
	r := &rig{
		t: t, driver: d, srv: srv, role: role, begin: time.Now(),
		store: &store{cred: secrets.Credential{Username: role, Password: pw}},
	}
	t.Cleanup(r.report)
	return r
}

// isPGX reports whether the rig's driver is pgx rather than lib/pq.
func (r *rig) isPGX() bool { return r.driver.Name == drivers.PGX.Name }

// pick returns libpq or pgx, whichever names the rig's driver: the value a
// tool must be told (gorm's DriverName, sqlx's driver name).
func (r *rig) pick(libpq, pgx string) string {
	if r.isPGX() {
		return pgx
	}
	return libpq
}

// dsn is the application's DSN: the endpoint only; the login comes from
// the store.
func (r *rig) dsn() string {
	return fmt.Sprintf("host=%s port=%d dbname=postgres sslmode=disable", r.srv.Host, r.srv.Port)
}

// connector returns a Connector over the rig's store and driver, tracked.
func (r *rig) connector() *rotating.Connector {
	r.t.Helper()
	c, err := rotating.NewConnector(r.dsn(), r.store, r.driver.With()...)
	if err != nil {
		r.t.Fatalf("NewConnector: %v", err)
	}
	r.track(c)
	return c
}

// track makes c one of the rig's Connectors, closed when the test ends
// (closing it twice is harmless), counted in its report and in its
// rotations' figures.
func (r *rig) track(c *rotating.Connector) {
	r.t.Cleanup(func() { _ = c.Close() })
	r.connectors = append(r.connectors, c)
}

// openDB returns sql.OpenDB(connector), closed when the test ends. It
// keeps no idle connection, so that every statement logs in anew and
// every rotation meets logins with the old password.
func (r *rig) openDB() (*sql.DB, *rotating.Connector) {
	r.t.Helper()
	c := r.connector()
	db := sql.OpenDB(c)
	db.SetMaxIdleConns(0)
	r.t.Cleanup(func() { _ = db.Close() })
	return db, c
}

// qualified returns the name of the role's table as the superuser, whose
// search_path does not hold the role's schema, must write it.
func (r *rig) qualified(table string) string { return r.role + "." + table }

// do counts one operation of the recipe, and fails the test if it failed.
func (r *rig) do(what string, err error) {
	r.t.Helper()
	r.ops.Add(1)
	if err != nil {
		r.failed.Add(1)
		r.t.Fatalf("%s: %v", what, err)
	}
}

// rotation is one rotation under way: the database has the new password,
// the store gets it rotationGap later.
type rotation struct {
	r      *rig
	stored chan struct{} // closed once the store has the new password
	// before is the Stats of each of the rig's Connectors when the
	// rotation began (a Connector made later started from zero).
	before map[*rotating.Connector]rotating.Stats
}

// beginRotation is the DBA's ALTER ROLE: from its return on, a login with
// the old password is rejected. The store is updated rotationGap later.
func (r *rig) beginRotation(ctx context.Context) *rotation {
	r.t.Helper()
	rot := &rotation{r: r, stored: make(chan struct{}), before: make(map[*rotating.Connector]rotating.Stats)}
	for _, c := range r.connectors {
		rot.before[c] = c.Stats()
	}
	next := pgtest.RandomPassword(r.t)
	if err := r.srv.SetPassword(ctx, r.role, next); err != nil {
		r.t.Fatalf("ALTER ROLE: %v", err)
	}
	go func() {
		defer close(rot.stored)
		_ = testkit.Sleep(ctx, rotationGap)
		r.store.setPassword(next)
	}()
	r.t.Cleanup(func() { <-rot.stored })
	return rot
}

// storeUpdated waits until the store has the new password, and counts the
// rotation as crossed.
func (rot *rotation) storeUpdated(ctx context.Context) {
	r := rot.r
	r.t.Helper()
	select {
	case <-rot.stored:
	case <-ctx.Done():
		r.t.Fatalf("rotation: %v", ctx.Err())
	}
	r.rotations++
}

// finish is storeUpdated, then checks that the rotation was exercised
// and bridged: c (the Connector whose logins crossed the rotation) saw a
// rejected login, moved to the new password, and (unless its logins are a
// pgxpool's, which do not go through Connect) a Connect recovered.
func (rot *rotation) finish(ctx context.Context, c *rotating.Connector) {
	r := rot.r
	r.t.Helper()
	rot.storeUpdated(ctx)
	before := rot.before[c]
	what := "the connector to pick up the new password and a Connect to recover"
	if r.pgxpool {
		what = "the connector to pick up the new password"
	}
	testkit.WaitFor(ctx, r.t, 20*time.Second, what, func() bool {
		st := c.Stats()
		return st.CredentialChanges > before.CredentialChanges && (r.pgxpool || st.Recoveries > before.Recoveries)
	})
	after := c.Stats()
	r.t.Logf("rotation %d: %d rejected logins bridged, %d recoveries, %d store fetches",
		r.rotations, after.AuthFailures-before.AuthFailures, after.Recoveries-before.Recoveries,
		after.Fetches-before.Fetches)
	if after.AuthFailures == before.AuthFailures {
		r.t.Errorf("rotation %d: no login was rejected, so the rotation was not exercised", r.rotations)
	}
}

// rotateUnderLoad runs n rotations while load (started on c's pool) runs,
// with traffic under each credential, then stops the load.
func (r *rig) rotateUnderLoad(ctx context.Context, c *rotating.Connector, load *testkit.InsertLoad, n int) {
	r.t.Helper()
	_ = testkit.Sleep(ctx, trafficTime)
	for range n {
		rot := r.beginRotation(ctx)
		rot.finish(ctx, c)
		_ = testkit.Sleep(ctx, trafficTime)
	}
	load.Finish()
	if ctx.Err() != nil {
		r.t.Fatalf("the recipe ran out of time: %v", ctx.Err())
	}
}

// startInserts starts workers that insert rows into the role's table
// through the tool (insert returns the new row's id) until
// rotateUnderLoad stops them.
func (r *rig) startInserts(ctx context.Context, table string, workers int,
	insert func(ctx context.Context, worker, seq int) (int64, error)) *testkit.InsertLoad {
	return testkit.StartInsertFunc(ctx, r.qualified(table), workers, 1<<30, 0, insert)
}

// checkInserts counts the load's inserts as operations and checks, through
// the superuser's pool (not the Connector), that none failed and that the
// table holds exactly the acknowledged rows. It returns how many there are.
func (r *rig) checkInserts(ctx context.Context, load *testkit.InsertLoad) int64 {
	r.t.Helper()
	r.ops.Add(load.OK.Load() + load.Failed.Load())
	r.failed.Add(load.Failed.Load())
	res, err := load.Verify(ctx, r.srv.Admin())
	if err != nil {
		r.t.Fatal(err)
	}
	for _, p := range res.Problems() {
		r.t.Error(p)
	}
	return res.Found
}

// report logs the figures of the recipe's run, and fails it if it crossed
// no rotation.
func (r *rig) report() {
	var st rotating.Stats
	for _, c := range r.connectors {
		s := c.Stats()
		st.AuthFailures += s.AuthFailures
		st.Recoveries += s.Recoveries
	}
	r.t.Logf("%s: %d operations, %d failed; %d rotations crossed; %d rejected logins, %d Connect recoveries; %d store fetches; %v",
		r.t.Name(), r.ops.Load(), r.failed.Load(), r.rotations, st.AuthFailures, st.Recoveries,
		r.store.fetches.Load(), time.Since(r.begin).Round(time.Millisecond))
	if r.rotations == 0 && !r.t.Failed() {
		r.t.Error("the recipe crossed no rotation")
	}
}
