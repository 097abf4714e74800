package azkvintegration

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/internal/testkit/drivers"
	"github.com/pgrotate/rotating/secrets/azkv"
	"github.com/pgrotate/rotating/secrets/azkv/azkvtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// secretName is the Key Vault secret every test reads; each test has a
// vault of its own.
const secretName = "db-app"

// env is one test's world: the shared PostgreSQL server, a Key Vault of
// its own, and the operator's azsecrets client for it.
//
// The server is pgtest.SharedMD5: the roles log in with md5, not SCRAM,
// whose client-side key derivation under -race made the loads (a login
// per statement) CPU-bound; what is measured here, store calls and failed
// statements, and the 28P01 of a dead password, do not depend on the
// method (see integration/aws).
type env struct {
	pg *pgserver.Server
	kv *azkvtest.Server
	// admin is the operator's (or the rotation job's) client, which adds
	// versions with SetSecret. It makes no GetSecret request, so the
	// vault's GetSecret count is the application's alone.
	admin *azsecrets.Client

	// logs receives the connector's and the azkv source's log lines, at
	// Debug level, as JSON.
	logs   *testkit.LogBuffer
	logger *slog.Logger

	mu        sync.Mutex
	passwords []string // every password the test made, for the secrecy checks
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{pg: pgtest.SharedMD5(t), kv: azkvtest.NewServer().Start(), logs: new(testkit.LogBuffer)}
	t.Cleanup(e.kv.Close)
	o := e.kv.ClientOptions()
	o.Retry = policy.RetryOptions{MaxRetries: -1}
	admin, err := azsecrets.NewClient(e.kv.URL(), e.kv.Credential(), o)
	if err != nil {
		t.Fatal(err)
	}
	e.admin = admin
	e.logger = slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the application's log (Info and above, secrets removed):\n%s", e.scrubbedLog())
		}
	})
	return e
}

// newRole creates the application's role, dropped when the test ends.
// Call it before opening pools, so that the role is dropped after they
// are closed.
func (e *env) newRole(t *testing.T) (role, password string) {
	t.Helper()
	role, password = pgtest.NewRole(t, e.pg)
	e.remember(password)
	return role, password
}

// newPassword returns a fresh password, remembered for the secrecy checks.
func (e *env) newPassword(t *testing.T) string {
	pw := pgtest.RandomPassword(t)
	e.remember(pw)
	return pw
}

func (e *env) remember(pw string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.passwords = append(e.passwords, pw)
}

// secrets returns every password the test made and the vault's token.
func (e *env) secrets() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string{e.kv.Token()}, e.passwords...)
}

// assertNoSecret fails t if text holds a password or the bearer token.
func (e *env) assertNoSecret(t *testing.T, what, text string) {
	t.Helper()
	for _, s := range e.secrets() {
		if strings.Contains(text, s) {
			t.Errorf("%s contains a password or the bearer token (%d bytes of text)", what, len(text))
			return
		}
	}
}

// scrubbedLog returns the application's log lines at Info and above, the
// last 60, with every secret removed.
func (e *env) scrubbedLog() string {
	var lines []string
	for line := range strings.Lines(e.logs.String()) {
		if !strings.Contains(line, `"level":"DEBUG"`) {
			lines = append(lines, line)
		}
	}
	if len(lines) > 60 {
		lines = append([]string{"...\n"}, lines[len(lines)-60:]...)
	}
	text := strings.Join(lines, "")
	for _, s := range e.secrets() {
		text = strings.ReplaceAll(text, s, "[SECRET REMOVED BY THE TEST]")
	}
	return text
}

// secretJSON is an RDS-format secret for the shared server.
func (e *env) secretJSON(t *testing.T, user, password string) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"host": e.pg.Host, "port": e.pg.Port,
		"username": user, "password": password, "dbname": "postgres"})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// setSecret adds a version through the operator's client, as `az keyvault
// secret set` would, and returns its id.
func (e *env) setSecret(ctx context.Context, t *testing.T, value string) string {
	t.Helper()
	resp, err := e.admin.SetSecret(ctx, secretName, azsecrets.SetSecretParameters{
		Value: to.Ptr(value), ContentType: to.Ptr("application/json"),
	}, nil)
	if err != nil {
		t.Fatalf("SetSecret: %v", err)
	}
	return resp.ID.Version()
}

// appDSN is the application's DSN: the endpoint only, no user, no password.
func (e *env) appDSN() string {
	return fmt.Sprintf("host=%s port=%d dbname=postgres sslmode=disable", e.pg.Host, e.pg.Port)
}

// newApp is the application: an azkv source built as in production (New
// with the vault URL), with the vault's credential and transport, a
// rotating Connector over it through driver d, and sql.OpenDB on it, all
// closed when the test ends.
func (e *env) newApp(t *testing.T, d drivers.Driver, opts ...rotating.Option) (*rotating.Connector, *sql.DB) {
	t.Helper()
	src, err := azkv.New(e.kv.URL(), secretName,
		azkv.WithCredential(e.kv.Credential()),
		azkv.WithClientOptions(e.kv.ClientOptions()),
		azkv.WithLogger(e.logger))
	if err != nil {
		t.Fatalf("azkv.New: %v", err)
	}
	c, err := rotating.NewConnector(e.appDSN(), src, d.With(append([]rotating.Option{rotating.WithLogger(e.logger)}, opts...)...)...)
	if err != nil {
		t.Fatalf("NewConnector: %v", err)
	}
	db := sql.OpenDB(c)
	t.Cleanup(func() { _ = db.Close() }) // closes c too
	return c, db
}

// createTable creates a table through db, so that it is owned by the
// application's role and dropped with it.
func createTable(ctx context.Context, t *testing.T, db *sql.DB) string {
	t.Helper()
	table := pgtest.UniqueName(t, "t")
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+table+" (id bigserial PRIMARY KEY, worker int NOT NULL, seq int NOT NULL)"); err != nil {
		t.Fatalf("create table: %v", err)
	}
	return table
}

// waitAcks waits until n more inserts than now have been acknowledged.
func waitAcks(ctx context.Context, t *testing.T, l *testkit.InsertLoad, n int64, what string) {
	t.Helper()
	target := l.OK.Load() + n
	testkit.WaitFor(ctx, t, 30*time.Second, what, func() bool { return l.OK.Load() >= target })
}

// verify compares the acknowledged ids with the table's rows, read as the
// superuser, and fails t for a failed statement, a lost row or a row
// nobody acknowledged. Call it after Finish.
func verify(ctx context.Context, t *testing.T, l *testkit.InsertLoad, pg *pgserver.Server) testkit.LoadResult {
	t.Helper()
	r, err := l.Verify(ctx, pg.Admin())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range r.Problems() {
		t.Error(p)
	}
	return r
}
