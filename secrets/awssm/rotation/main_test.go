package rotation_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"

	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
	"github.com/pgrotate/rotating/secrets/awssm/rotation"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// env is one test's Secrets Manager endpoint and the shared PostgreSQL.
type env struct {
	pg     *pgserver.Server // nil for tests that need no database
	srv    *awssmtest.Server
	client *secretsmanager.Client
	logs   *testkit.LogBuffer
	logger *slog.Logger
}

// newEnv starts an awssmtest server for t; withDB adds the shared
// PostgreSQL server.
func newEnv(t *testing.T, withDB bool, opts ...awssmtest.Option) *env {
	t.Helper()
	e := &env{srv: awssmtest.NewServer(opts...).Start(), logs: new(testkit.LogBuffer)}
	t.Cleanup(e.srv.Close)
	e.client = e.srv.Client(context.Background())
	e.logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if withDB {
		e.pg = pgtest.Shared(t)
	}
	return e
}

// options returns Options for tests: no TLS on the local server, debug
// logs into e.logs.
func (e *env) options(strategy rotation.Strategy) rotation.Options {
	return rotation.Options{Strategy: strategy, SSLMode: pq.SSLModeDisable, Logger: e.logger}
}

// secretJSON returns an RDS-format secret for the shared server, with
// extra fields added.
func (e *env) secretJSON(t *testing.T, user, password string, extra map[string]any) string {
	t.Helper()
	m := map[string]any{"engine": "postgres", "username": user, "password": password, "dbname": "postgres"}
	if e.pg != nil {
		m["host"], m["port"] = e.pg.Host, e.pg.Port
	} else {
		m["host"], m["port"] = "db.invalid", 5432
	}
	for k, v := range extra {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// createUser creates a login role that is dropped when the test ends, with
// any _clone role a rotation made for it.
func (e *env) createUser(t *testing.T, name, password string) {
	t.Helper()
	ctx := context.Background()
	if err := e.pg.CreateRole(ctx, name, password); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, role := range []string{name + "_clone", name} {
			e.dropRole(t, role)
		}
	})
}

// createMaster creates a role that can create and alter roles, as RDS's
// master user can (it is not a superuser).
func (e *env) createMaster(t *testing.T, name, password string) {
	t.Helper()
	ctx := context.Background()
	if err := e.pg.Exec(ctx, "CREATE ROLE "+pq.QuoteIdentifier(name)+" LOGIN CREATEROLE PASSWORD "+pq.QuoteLiteral(password)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.dropRole(t, name) })
}

func (e *env) dropRole(t *testing.T, role string) { pgtest.DropRoleIfExists(t, e.pg, role) }

// login is a database login as the test sees it, independent of the
// package under test.
type login struct {
	Version  string `json:"-"`
	Username string `json:"username"`
	Password string `json:"password"`
	Host     string `json:"host"`
	Port     any    `json:"port"`
	DBName   string `json:"dbname"`
}

// value reads the version of secret name that carries stage.
func (e *env) value(t *testing.T, name, stage string) login {
	t.Helper()
	out, err := e.client.GetSecretValue(context.Background(), &secretsmanager.GetSecretValueInput{
		SecretId: aws.String(name), VersionStage: aws.String(stage),
	})
	if err != nil {
		t.Fatalf("GetSecretValue %s: %v", stage, err)
	}
	var l login
	if err := json.Unmarshal([]byte(aws.ToString(out.SecretString)), &l); err != nil {
		t.Fatalf("%s is not JSON: %v", stage, err)
	}
	l.Version = aws.ToString(out.VersionId)
	return l
}

// open logs in as l and returns the pool; the caller closes it.
func (e *env) open(t *testing.T, l login) (*sql.DB, error) {
	t.Helper()
	db, err := sql.Open("postgres", e.pg.DSN(l.Username, l.Password, l.DBName))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// mustLogIn fails t unless l logs in.
func (e *env) mustLogIn(t *testing.T, l login, what string) {
	t.Helper()
	db, err := e.open(t, l)
	if err != nil {
		t.Fatalf("%s (user %s) cannot log in: %v", what, l.Username, err)
	}
	db.Close()
}

// mustBeRefused fails t unless the server refuses l with SQLSTATE 28P01.
func (e *env) mustBeRefused(t *testing.T, l login, what string) {
	t.Helper()
	db, err := e.open(t, l)
	if err == nil {
		db.Close()
		t.Fatalf("%s (user %s) still logs in, want 28P01", what, l.Username)
	}
	if pq.As(err, pqerror.InvalidPassword) == nil {
		t.Fatalf("%s (user %s): %v, want SQLSTATE 28P01", what, l.Username, err)
	}
}

// stagesOf returns the labels of version id of secret name.
func (e *env) stagesOf(name, id string) []string { return e.srv.Versions(name)[id] }

// noSecretIn fails t if any of the values appears in s.
func noSecretIn(t *testing.T, what, s string, values ...string) {
	t.Helper()
	for _, v := range values {
		if v != "" && bytes.Contains([]byte(s), []byte(v)) {
			t.Errorf("%s contains a password", what)
		}
	}
}

// testCtx returns a context for one test, bounded well under go test's
// default timeout.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
