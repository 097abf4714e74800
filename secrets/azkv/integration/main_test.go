package azkvintegration

import (
	"context"
	"database/sql"
	"log/slog"
	"os"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/internal/testkit/apptest"
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

	known testkit.Secrets // every password the test made, and the vault's token
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{pg: pgtest.SharedMD5(t), kv: azkvtest.NewServer().Start()}
	t.Cleanup(e.kv.Close)
	o := e.kv.ClientOptions()
	o.Retry = policy.RetryOptions{MaxRetries: -1}
	admin, err := azsecrets.NewClient(e.kv.URL(), e.kv.Credential(), o)
	if err != nil {
		t.Fatal(err)
	}
	e.admin = admin
	e.known.Add(e.kv.Token())
	e.logger, e.logs = testkit.NewJSONLogger()
	e.logs.LogOnFailure(t, "the application's log", e.known.List)
	return e
}

// newRole creates the application's role, dropped when the test ends.
// Call it before opening pools, so that the role is dropped after they
// are closed.
func (e *env) newRole(t *testing.T) (role, password string) {
	t.Helper()
	role, password = pgtest.NewRole(t, e.pg)
	return role, e.known.Keep(password)
}

// newPassword returns a fresh password, remembered for the secrecy checks.
func (e *env) newPassword(t *testing.T) string { return e.known.Keep(pgtest.RandomPassword(t)) }

// assertNoSecret fails t if text holds a password or the bearer token.
func (e *env) assertNoSecret(t *testing.T, what, text string) {
	t.Helper()
	e.known.AssertNone(t, what, text)
}

// secretJSON is an RDS-format secret for the shared server.
func (e *env) secretJSON(t *testing.T, user, password string) string {
	t.Helper()
	return pgtest.SecretJSON(t, e.pg, user, password, nil)
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
func (e *env) appDSN() string { return pgtest.EndpointDSN(e.pg) }

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
	return apptest.Open(t, e.appDSN(), src, e.logger, d.With(opts...)...)
}

// createTable creates a table through db, so that it is owned by the
// application's role and dropped with it.
func createTable(ctx context.Context, t *testing.T, db *sql.DB) string {
	return pgtest.CreateLoadTable(ctx, t, db)
}

// waitAcks waits until n more inserts than now have been acknowledged.
func waitAcks(ctx context.Context, t *testing.T, l *testkit.InsertLoad, n int64, what string) {
	t.Helper()
	l.WaitAcks(ctx, t, n, what)
}

// verify compares the acknowledged ids with the table's rows, read as the
// superuser, and fails t for a failed statement, a lost row or a row
// nobody acknowledged. Call it after Finish.
func verify(ctx context.Context, t *testing.T, l *testkit.InsertLoad, pg *pgserver.Server) testkit.LoadResult {
	t.Helper()
	return l.Check(ctx, t, pg.Admin())
}
