package gcpsmintegration

import (
	"context"
	"database/sql"
	"hash/crc32"
	"log/slog"
	"os"
	"strings"
	"testing"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/internal/testkit/apptest"
	"github.com/pgrotate/rotating/secrets/gcpsm"
	"github.com/pgrotate/rotating/secrets/gcpsm/gcpsmtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// env is one test's world: the shared PostgreSQL server, a Secret Manager
// of its own, and two clients for it: the application's, and the
// rotator's, which only adds versions (AddSecretVersion), so that the
// server's AccessSecretVersion count is the application's alone.
//
// The server is pgtest.SharedMD5: the roles log in with md5, not SCRAM,
// whose client-side key derivation under -race made the loads (a login
// per statement) CPU-bound; what is measured here, store calls and failed
// statements, and the 28P01 of a dead password, do not depend on the
// method (see integration/aws).
type env struct {
	pg  *pgserver.Server
	sm  *gcpsmtest.Server
	app *secretmanager.Client
	rot *secretmanager.Client

	logs   *testkit.LogBuffer // the connector's and the source's, Debug and up, as JSON
	logger *slog.Logger

	known testkit.Secrets // every password the test made, for the secrecy checks
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{pg: pgtest.SharedMD5(t), sm: gcpsmtest.NewServer().Start()}
	t.Cleanup(e.sm.Close) // closes the clients too
	var err error
	if e.app, err = e.sm.Client(t.Context()); err != nil {
		t.Fatal(err)
	}
	if e.rot, err = e.sm.Client(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.logger, e.logs = testkit.NewJSONLogger()
	e.logs.LogOnFailure(t, "the application's log", e.known.List)
	return e
}

// newRole makes a role of the test's own; its password is remembered.
func (e *env) newRole(t *testing.T) (role, password string) {
	t.Helper()
	role, password = pgtest.NewRole(t, e.pg)
	return role, e.known.Keep(password)
}

func (e *env) newPassword(t *testing.T) string { return e.known.Keep(pgtest.RandomPassword(t)) }

// assertNoPassword fails t if text holds any password the test made,
// without printing it.
func (e *env) assertNoPassword(t *testing.T, what, text string) {
	t.Helper()
	e.known.AssertNone(t, what, text)
}

// payload is an RDS-style secret for role on the shared server.
func (e *env) payload(t *testing.T, role, password string) []byte {
	t.Helper()
	return []byte(pgtest.SecretJSON(t, e.pg, role, password, nil))
}

// newSecret creates a secret named after the test holding one version.
func (e *env) newSecret(t *testing.T, role, password string) string {
	t.Helper()
	name := e.sm.CreateSecret("projects/app-project/secrets/" + pgtest.UniqueName(t, "db"))
	e.sm.AddVersion(name, e.payload(t, role, password))
	return name
}

// addVersion adds a version through the rotator's client, as a rotation
// job would, with the payload's checksum; it returns the version number.
func (e *env) addVersion(ctx context.Context, t *testing.T, secret string, data []byte) string {
	t.Helper()
	crc := int64(crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli)))
	v, err := e.rot.AddSecretVersion(ctx, &secretmanagerpb.AddSecretVersionRequest{
		Parent: secret, Payload: &secretmanagerpb.SecretPayload{Data: data, DataCrc32C: &crc}})
	if err != nil {
		t.Fatalf("AddSecretVersion: %v", err)
	}
	return v.GetName()[strings.LastIndex(v.GetName(), "/")+1:]
}

// appDSN is the application's DSN: the endpoint only, no user, no password.
func (e *env) appDSN() string { return pgtest.EndpointDSN(e.pg) }

// newApp is the application: a connector over a gcpsm source on the
// application's client, and sql.OpenDB on it, closed when the test ends.
func (e *env) newApp(t *testing.T, secret string, opts ...rotating.Option) (*rotating.Connector, *sql.DB) {
	t.Helper()
	src, err := gcpsm.New(e.app, secret, gcpsm.WithLogger(e.logger))
	if err != nil {
		t.Fatalf("gcpsm.New: %v", err)
	}
	return apptest.Open(t, e.appDSN(), src, e.logger, opts...)
}

// accessCalls is the application's AccessSecretVersion requests since the
// last ResetCalls (the rotator never calls it).
func (e *env) accessCalls() int64 { return e.sm.Calls(gcpsmtest.MethodAccessSecretVersion) }

// createTable creates the load's table through db, so that it belongs to
// the application's role and goes with it.
func createTable(ctx context.Context, t *testing.T, db *sql.DB) string {
	return pgtest.CreateLoadTable(ctx, t, db)
}

// waitAcks waits until n more inserts than now have been acknowledged.
func waitAcks(ctx context.Context, t *testing.T, l *testkit.InsertLoad, n int64, what string) {
	t.Helper()
	l.WaitAcks(ctx, t, n, what)
}

// check verifies the load through the superuser's pool, independently of
// the connector, and fails t for a failed statement or a lost row.
func check(ctx context.Context, t *testing.T, e *env, l *testkit.InsertLoad) testkit.LoadResult {
	t.Helper()
	return l.Check(ctx, t, e.pg.Admin())
}
