package awsintegration

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

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/lib/pq"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/internal/testkit/apptest"
	"github.com/pgrotate/rotating/secrets/awssm"
	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
	"github.com/pgrotate/rotating/secrets/awssm/rotation"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// env is one test's world: the shared PostgreSQL server, a Secrets Manager
// endpoint of its own, and three SDK clients for it.
//
// The server is pgtest.SharedMD5: the application's roles log in with md5,
// not SCRAM. These tests log in for every statement with up to 64 workers,
// and under -race SCRAM's client-side key derivation took most of the
// machine's CPU: the rotation function's own calls queued behind it, and
// TestAlternatingUsersRotation's ten lib/pq rotations took 42 s, against
// 12 s with md5. What the tests measure (store calls per rotation, no
// failed statement, the errors once a credential dies: 28P01 either way)
// does not depend on the method; the SCRAM path under load stays covered
// by the integration and integration/faults packages.
type env struct {
	pg *pgserver.Server
	sm *awssmtest.Server

	// client is the application's client: the SDK's defaults, retryer
	// included, as awssm.New would get it in production.
	client *secretsmanager.Client
	// rot is the rotation function's client. It does not retry, so that
	// each of its GetSecretValue calls is exactly one request, which the
	// tests subtract from the server's counts to get the application's.
	rot *countingAPI
	// admin is the test's own client. It reads versions by VersionId only,
	// which the server counts under no stage.
	admin *secretsmanager.Client

	// logs receives the connector's and the awssm source's log lines,
	// rotLogs the rotation function's, all at Debug level, as JSON.
	logs, rotLogs *logBuffer
	logger        *slog.Logger
	rotLogger     *slog.Logger

	known testkit.Secrets // every password the test knows of, for the secrecy checks
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{pg: pgtest.SharedMD5(t), sm: awssmtest.NewServer().Start()}
	t.Cleanup(e.sm.Close)
	ctx := context.Background()
	e.client = e.sm.Client(ctx)
	e.rot = &countingAPI{Client: e.sm.Client(ctx, func(o *secretsmanager.Options) { o.Retryer = aws.NopRetryer{} })}
	e.admin = e.sm.Client(ctx)
	e.logger, e.logs = newLogger()
	e.rotLogger, e.rotLogs = newLogger()
	return e
}

// logOnFailure logs the application's log lines at Info level and above if
// t failed, with every password of the secret's versions removed (the
// tests fail if the logs hold one, but the log must not spread it).
func (e *env) logOnFailure(t testing.TB, secretID string) {
	e.logs.LogOnFailure(t, "the application's log", func() []string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		e.rememberAllVersions(ctx, t, secretID)
		return e.knownPasswords()
	})
}

// remember records a password for assertNoPassword.
func (e *env) remember(pw ...string) { e.known.Add(pw...) }

func (e *env) knownPasswords() []string { return e.known.List() }

// assertNoPassword fails t if text holds any password the test knows of.
func (e *env) assertNoPassword(t testing.TB, what, text string) {
	t.Helper()
	e.known.AssertNone(t, what, text)
}

// rememberAllVersions reads every version of the secret that has a value
// (by VersionId, so that no stage count moves) and remembers its password,
// so that the rotation's generated passwords are covered by the secrecy
// checks too.
func (e *env) rememberAllVersions(ctx context.Context, t testing.TB, secretID string) {
	t.Helper()
	for id := range e.sm.Versions(secretID) {
		if l, err := e.version(ctx, secretID, id); err == nil {
			e.remember(l.Password)
		}
	}
}

// newRole creates a login role with a random password, dropped (with
// anything it owns, and with the _clone role an alternating rotation may
// have made for it) when the test ends. Call it before opening pools, so
// that the role is dropped after they are closed.
func (e *env) newRole(t testing.TB, prefix string) (role, password string) {
	t.Helper()
	role, password = pgtest.UniqueName(t, prefix), pgtest.RandomPassword(t)
	e.remember(password)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.pg.CreateRole(ctx, role, password); err != nil {
		t.Fatalf("create role: %v", err)
	}
	t.Cleanup(func() {
		for _, r := range []string{role + "_clone", role} {
			e.dropRole(t, r)
		}
	})
	return role, password
}

// newMaster creates a role that can create and alter roles, as RDS's master
// user can (it is not a superuser).
func (e *env) newMaster(t testing.TB) (role, password string) {
	t.Helper()
	role, password = pgtest.UniqueName(t, "master"), pgtest.RandomPassword(t)
	e.remember(password)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.pg.Exec(ctx, "CREATE ROLE "+pq.QuoteIdentifier(role)+" LOGIN CREATEROLE PASSWORD "+pq.QuoteLiteral(password)); err != nil {
		t.Fatalf("create master role: %v", err)
	}
	t.Cleanup(func() { e.dropRole(t, role) })
	return role, password
}

func (e *env) dropRole(t testing.TB, role string) { pgtest.DropRoleIfExists(t, e.pg, role) }

// secretJSON is an RDS-format secret for the shared server, with extra
// fields added.
func (e *env) secretJSON(t testing.TB, user, password string, extra map[string]any) string {
	t.Helper()
	return pgtest.SecretJSON(t, e.pg, user, password, extra)
}

// appDSN is the application's DSN: the endpoint only, no user, no password.
func (e *env) appDSN() string { return pgtest.EndpointDSN(e.pg) }

// newApp is the application: a rotating Connector over the awssm source
// with the application's (unwrapped) SDK client, and sql.OpenDB on it. Both
// are closed when the test ends.
func (e *env) newApp(t testing.TB, secretID string, opts ...rotating.Option) (*rotating.Connector, *sql.DB) {
	t.Helper()
	src, err := awssm.New(e.client, secretID, awssm.WithLogger(e.logger))
	if err != nil {
		t.Fatalf("awssm.New: %v", err)
	}
	return apptest.Open(t, e.appDSN(), src, e.logger, opts...)
}

// rotator returns AWS's rotation function for the local server, over the
// counting client, without TLS, with hook called after each step.
func (e *env) rotator(strategy rotation.Strategy, hook rotation.Hook) *rotation.Rotator {
	return rotation.New(e.rot, rotation.Options{
		Strategy: strategy,
		Hook:     hook,
		SSLMode:  pq.SSLModeDisable,
		Logger:   e.rotLogger,
	})
}

// holdAfter returns a rotation hook that sleeps for d after step (or until
// ctx ends), holding the window that follows it open.
func holdAfter(step rotation.Step, d time.Duration) rotation.Hook {
	return func(ctx context.Context, s rotation.Step, _, _ string) error {
		if s == step {
			testkit.Sleep(ctx, d)
		}
		return ctx.Err()
	}
}

// login is one version of the secret as the test reads it.
type login struct {
	Version  string `json:"-"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// version reads one version of the secret by its id, with the test's own
// client; the server counts such a read under no stage.
func (e *env) version(ctx context.Context, secretID, versionID string) (login, error) {
	out, err := e.admin.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{
		SecretId: aws.String(secretID), VersionId: aws.String(versionID),
	})
	if err != nil {
		return login{}, err
	}
	var l login
	if err := json.Unmarshal([]byte(aws.ToString(out.SecretString)), &l); err != nil {
		return login{}, fmt.Errorf("version %s is not JSON", versionID)
	}
	l.Version = versionID
	return l, nil
}

// countingAPI is an SDK client that counts its GetSecretValue calls by
// stage, the way awssmtest's CallsByStage does.
type countingAPI struct {
	*secretsmanager.Client

	mu    sync.Mutex
	calls map[string]int64
}

var _ rotation.API = (*countingAPI)(nil)

func (c *countingAPI) GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	stage := aws.ToString(in.VersionStage)
	if stage == "" && aws.ToString(in.VersionId) == "" {
		stage = awssmtest.StageCurrent
	}
	c.mu.Lock()
	if c.calls == nil {
		c.calls = make(map[string]int64)
	}
	c.calls[stage]++
	c.mu.Unlock()
	return c.Client.GetSecretValue(ctx, in, optFns...)
}

func (c *countingAPI) byStage(stage string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[stage]
}

func (c *countingAPI) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.calls)
}

// resetCalls zeroes the server's and the rotation function's counters.
func (e *env) resetCalls() {
	e.sm.ResetCalls()
	e.rot.reset()
}

// appCalls returns the application's GetSecretValue calls (requests, SDK
// retries included) for stage since resetCalls: the server's count minus
// the rotation function's.
func (e *env) appCalls(stage string) int64 {
	return e.sm.CallsByStage(stage) - e.rot.byStage(stage)
}

// countErrs returns how many of errs are not nil.
func countErrs(errs []error) int { return testkit.CountErrors(errs) }

// logBuffer collects the application's logs.
type logBuffer = testkit.LogBuffer

// countAny returns how many log lines contain any of subs.
func countAny(l *logBuffer, subs ...string) int {
	return l.CountLines(func(line string) bool {
		for _, s := range subs {
			if strings.Contains(line, s) {
				return true
			}
		}
		return false
	})
}

// newLogger returns a logger that records everything, Debug included, as
// JSON lines in the returned buffer.
func newLogger() (*slog.Logger, *logBuffer) { return testkit.NewJSONLogger() }

// createTable creates a table through db, so that it is owned by the
// application's role and dropped with it.
func createTable(ctx context.Context, t testing.TB, db *sql.DB) string {
	return pgtest.CreateLoadTable(ctx, t, db)
}

// load inserts rows through the application's pool and remembers every
// acknowledged id.
type load struct{ *testkit.InsertLoad }

// startLoad starts workers that insert until finish, until ctx ends, or
// until each has made maxPerWorker attempts, pausing for pause between two
// statements.
func startLoad(ctx context.Context, db *sql.DB, table string, workers, maxPerWorker int, pause time.Duration) *load {
	return &load{testkit.StartInserts(ctx, db, table, workers, maxPerWorker, pause)}
}

// waitAcks waits until n more inserts than now have been acknowledged.
func (l *load) waitAcks(ctx context.Context, t testing.TB, n int64, what string) {
	t.Helper()
	l.WaitAcks(ctx, t, n, what)
}

// finish stops the workers and waits for them.
func (l *load) finish() { l.Finish() }

// check compares the acknowledged ids with the table's rows, read as the
// superuser (independently of the connector under test), and fails t for
// a failed statement, a lost row or a row nobody acknowledged. Call it
// after finish.
func (l *load) check(ctx context.Context, t testing.TB, pg *pgserver.Server) testkit.LoadResult {
	t.Helper()
	return l.Check(ctx, t, pg.Admin())
}
