package benchmarks

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets"
)

// TestMain stops the PostgreSQL server that pgtest.Shared starts for the
// benchmarks that need one.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// ---- a fake database -------------------------------------------------------

// fakeDB stands in for PostgreSQL's password check, for the benchmarks that
// need many logins or many connectors but not a real server: it accepts one
// password and answers any other with 28P01, as PostgreSQL does. Each login
// takes latency, so that concurrent dialers really overlap. It counts
// logins and the logins it rejected, as the server's log would: the
// database's own count, whatever the connector thinks it did.
type fakeDB struct {
	latency  time.Duration
	logins   atomic.Int64
	rejected atomic.Int64

	mu       sync.RWMutex
	password string
}

func newFakeDB(password string, latency time.Duration) *fakeDB {
	return &fakeDB{password: password, latency: latency}
}

// setPassword is ALTER ROLE ... PASSWORD.
func (db *fakeDB) setPassword(pw string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.password = pw
}

// login checks a password after the login latency.
func (db *fakeDB) login(ctx context.Context, user, pw string) (driver.Conn, error) {
	db.logins.Add(1)
	if db.latency > 0 {
		if err := testkit.Sleep(ctx, db.latency); err != nil {
			return nil, err
		}
	}
	db.mu.RLock()
	ok := pw == db.password
	db.mu.RUnlock()
	if !ok {
		db.rejected.Add(1)
		return nil, &pq.Error{Severity: "FATAL", Code: "28P01",
			Message: fmt.Sprintf("password authentication failed for user %q", user)}
	}
	return fakeConn{}, nil
}

// newConnector is a rotating.NewConnectorFunc whose connections log in to db.
func (db *fakeDB) newConnector(cfg pq.Config) (driver.Connector, error) {
	return rotating.ConnectorFunc(func(ctx context.Context) (driver.Conn, error) {
		return db.login(ctx, cfg.User, cfg.Password)
	}), nil
}

// dial is a naive.Dial for the naive connectors.
func (db *fakeDB) dial(ctx context.Context, cred secrets.Credential) (driver.Conn, error) {
	return db.login(ctx, cred.Username, cred.Password)
}

type fakeConn struct{}

func (fakeConn) Prepare(string) (driver.Stmt, error) {
	return nil, errors.New("fakeConn: no statements")
}
func (fakeConn) Close() error              { return nil }
func (fakeConn) Begin() (driver.Tx, error) { return nil, errors.New("fakeConn: no transactions") }

// ---- an in-memory store that counts calls --------------------------------

// memStore is a secrets.Source held in memory that counts its calls: the
// vault, updated at will by the benchmark.
type memStore struct {
	calls atomic.Int64

	mu   sync.Mutex
	cred secrets.Credential
}

var (
	_ secrets.Source    = (*memStore)(nil)
	_ secrets.Describer = (*memStore)(nil)
)

func newMemStore(user, pw string) *memStore {
	return &memStore{cred: secrets.Credential{Username: user, Password: pw}}
}

func (s *memStore) Fetch(ctx context.Context) (secrets.Credential, error) {
	s.calls.Add(1)
	if err := ctx.Err(); err != nil {
		return secrets.Credential{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cred, nil
}

func (s *memStore) Describe() string { return "in-memory store" }

func (s *memStore) setPassword(pw string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cred.Password = pw
}

// ---- helpers -------------------------------------------------------------

// endpointDSN is srv's endpoint without a login: the DSN an application
// gives the rotating Connector.
func endpointDSN(srv *pgserver.Server) string {
	return fmt.Sprintf("host=%s port=%d dbname=postgres sslmode=disable", srv.Host, srv.Port)
}

// plainConnector is lib/pq's own connector for one fixed login: what an
// application uses without rotation.
func plainConnector(tb testing.TB, srv *pgserver.Server, role, pw string) *pq.Connector {
	tb.Helper()
	cfg, err := pq.NewConfig(srv.DSN(role, pw, "postgres"))
	if err != nil {
		tb.Fatal(err)
	}
	c, err := pq.NewConnectorConfig(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// plainPgxConnector is pgx's own database/sql connector for one fixed
// login (stdlib.GetConnector on the parsed DSN): what a pgx application
// uses without rotation.
func plainPgxConnector(tb testing.TB, srv *pgserver.Server, role, pw string) driver.Connector {
	tb.Helper()
	cfg, err := pgx.ParseConfig(srv.DSN(role, pw, "postgres"))
	if err != nil {
		tb.Fatal(err)
	}
	return stdlib.GetConnector(*cfg)
}

func newRotating(tb testing.TB, dsn string, src secrets.Source, opts ...rotating.Option) *rotating.Connector {
	tb.Helper()
	c, err := rotating.NewConnector(dsn, src, opts...)
	if err != nil {
		tb.Fatalf("NewConnector: %v", err)
	}
	return c
}

// login opens and closes one connection.
func login(ctx context.Context, c driver.Connector) error {
	conn, err := c.Connect(ctx)
	if err != nil {
		return err
	}
	return conn.Close()
}

// timedLogin is login with its duration.
func timedLogin(ctx context.Context, c driver.Connector) (time.Duration, error) {
	start := time.Now()
	err := login(ctx, c)
	return time.Since(start), err
}

// herd runs fn in n goroutines released at the same moment and returns the
// errors they returned.
func herd(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var ready, done sync.WaitGroup
	ready.Add(n)
	for i := range n {
		done.Go(func() {
			ready.Done()
			<-start
			errs[i] = fn(i)
		})
	}
	ready.Wait()
	close(start)
	done.Wait()
	return errs
}

// ---- statistics ------------------------------------------------------------

// percentile returns the q-quantile (0 < q <= 1) of ds by the nearest-rank
// method. ds is not modified.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	i := int(math.Ceil(q*float64(len(ds)))) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// peakInWindow returns the largest number of times that fall within any
// window of length w. ts is sorted in place.
func peakInWindow(ts []time.Time, w time.Duration) int {
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	peak, i := 0, 0
	for j := range ts {
		for ts[j].Sub(ts[i]) >= w {
			i++
		}
		peak = max(peak, j-i+1)
	}
	return peak
}
