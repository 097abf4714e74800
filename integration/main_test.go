package integration

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// countingSource is a secrets.Source whose credential the test changes at
// will (the vault being updated), counting every Fetch.
type countingSource struct {
	name    string
	fetches atomic.Int64

	mu   sync.Mutex // guards cred
	cred secrets.Credential
}

var (
	_ secrets.Source    = (*countingSource)(nil)
	_ secrets.Describer = (*countingSource)(nil)
)

func newCountingSource(name string, cred secrets.Credential) *countingSource {
	return &countingSource{name: name, cred: cred}
}

func (s *countingSource) Fetch(ctx context.Context) (secrets.Credential, error) {
	s.fetches.Add(1)
	if err := ctx.Err(); err != nil {
		return secrets.Credential{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cred, nil
}

func (s *countingSource) Describe() string { return "counting-source " + s.name }

// setPassword is the store being updated with a new password.
func (s *countingSource) setPassword(pw string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cred.Password = pw
}

func (s *countingSource) count() int64 { return s.fetches.Load() }

// baseDSN returns a key=value DSN for srv with the endpoint only: no user
// and no password, which come from the source.
func baseDSN(srv *pgserver.Server) string {
	return fmt.Sprintf("host=%s port=%d dbname=postgres sslmode=disable", srv.Host, srv.Port)
}

// urlDSN is baseDSN as a postgres:// URL.
func urlDSN(srv *pgserver.Server) string {
	return fmt.Sprintf("postgres://%s:%d/postgres?sslmode=disable", srv.Host, srv.Port)
}

// setPassword is the DBA's ALTER ROLE.
func setPassword(ctx context.Context, t testing.TB, srv *pgserver.Server, role, pw string) {
	t.Helper()
	if err := srv.SetPassword(ctx, role, pw); err != nil {
		t.Fatalf("ALTER ROLE: %v", err)
	}
}

func newConnector(t testing.TB, dsn string, src secrets.Source, opts ...rotating.Option) *rotating.Connector {
	t.Helper()
	c, err := rotating.NewConnector(dsn, src, opts...)
	if err != nil {
		t.Fatalf("NewConnector: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// openDB returns sql.OpenDB(c), closed (and c with it) when the test ends.
func openDB(t testing.TB, c *rotating.Connector) *sql.DB {
	t.Helper()
	db := sql.OpenDB(c)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func mustExec(ctx context.Context, t testing.TB, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(ctx, query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// logBuffer collects a JSON slog handler's output.
type logBuffer = testkit.LogBuffer

// newLogger returns a logger that records everything, Debug included, as
// JSON lines in the returned buffer.
func newLogger() (*slog.Logger, *logBuffer) { return testkit.NewJSONLogger() }

// logOnFailure logs the connector's log lines at Info level and above if t
// failed (the last 60), with every password passwords returns removed: the
// tests fail if a log holds one, but the failure report must not spread it.
func logOnFailure(t testing.TB, logs *logBuffer, passwords func() []string) {
	logs.LogOnFailure(t, "the connector's log", passwords)
}

// assertNoSecret fails t if text contains any of the secrets.
func assertNoSecret(t testing.TB, what, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("%s contains a password: %s", what, text)
		}
	}
}

// createLoadTable creates a table of the test's own through db, so that it
// is owned by the test's role and dropped with it.
func createLoadTable(ctx context.Context, t testing.TB, db *sql.DB) string {
	return pgtest.CreateLoadTable(ctx, t, db)
}

// insertLoad inserts rows through the application's pool and remembers
// every acknowledged id.
type insertLoad struct {
	*testkit.InsertLoad
	db *sql.DB
}

// startInserts starts workers that insert until finish is called, ctx ends
// or each has made maxPerWorker attempts.
func startInserts(ctx context.Context, db *sql.DB, table string, workers, maxPerWorker int) *insertLoad {
	return &insertLoad{testkit.StartInserts(ctx, db, table, workers, maxPerWorker, 0), db}
}

// finish stops the workers and waits for them.
func (l *insertLoad) finish() { l.Finish() }

// check asserts that no statement failed and that the table holds exactly
// the acknowledged rows. Call it after finish.
func (l *insertLoad) check(ctx context.Context, t testing.TB) {
	t.Helper()
	l.Check(ctx, t, l.db)
}
