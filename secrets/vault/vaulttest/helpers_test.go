package vaulttest_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/lib/pq"
	"go.uber.org/goleak"

	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/secrets/vault/vaulttest"
)

func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	if err := stopExamplePG(); err != nil {
		fmt.Fprintf(os.Stderr, "stopping the examples' PostgreSQL server: %v\n", err)
		code = 1
	}
	if code == 0 {
		// Every server the tests started is closed, and pgtest.Main has
		// closed the PostgreSQL pools: no goroutine may be left.
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines left after the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// start returns a started server on the shared PostgreSQL server, closed
// (with its error checked) when the test ends.
func start(t *testing.T, opts ...vaulttest.Option) (*vaulttest.Server, *pgserver.Server) {
	t.Helper()
	pg := pgtest.Shared(t)
	srv, err := vaulttest.NewServer(pg.Admin(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	return srv, pg
}

// client returns a vault/api client for srv with token (root if empty).
func client(t *testing.T, srv *vaulttest.Server, token string) *api.Client {
	t.Helper()
	c, err := srv.Client(token)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// appToken makes a token for the application under test.
func appToken(t *testing.T, srv *vaulttest.Server, o vaulttest.TokenOptions) string {
	t.Helper()
	tok, err := srv.CreateToken(o)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// newTable creates a table the dynamic roles are granted on, dropped at
// the end of the test.
func newTable(t *testing.T, pg *pgserver.Server) string {
	t.Helper()
	table := pgtest.UniqueName(t, "t")
	if err := pg.ExecSerialized(t.Context(), "CREATE TABLE "+table+" (id serial PRIMARY KEY, v text)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := pg.ExecSerialized(ctx, "DROP TABLE IF EXISTS "+table); err != nil {
			t.Errorf("drop table: %v", err)
		}
	})
	return table
}

// grantRole is a dynamic role that may read and write table.
func grantRole(table string, ttl, maxTTL time.Duration) vaulttest.DynamicRole {
	return vaulttest.DynamicRole{
		DefaultTTL: ttl, MaxTTL: maxTTL,
		CreationStatements: []string{
			`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';` +
				` GRANT SELECT, INSERT ON ` + table + ` TO "{{name}}";`,
			`GRANT USAGE ON SEQUENCE ` + table + `_id_seq TO "{{name}}"`,
		},
	}
}

// creds are a username and password read from the server.
type creds struct{ user, password string }

func credsOf(t *testing.T, s *api.Secret) creds {
	t.Helper()
	if s == nil || s.Data == nil {
		t.Fatalf("no data in %+v", s)
	}
	u, _ := s.Data["username"].(string)
	p, _ := s.Data["password"].(string)
	if u == "" || p == "" {
		t.Fatalf("username or password missing: keys %v", keys(s.Data))
	}
	return creds{u, p}
}

func keys(m map[string]any) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	return k
}

// login opens a connection as c on pg and runs a query, returning its
// error.
func login(ctx context.Context, pg *pgserver.Server, c creds) error {
	db, err := sql.Open("postgres", pg.DSN(c.user, c.password, ""))
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var one int
	return db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// sqlState returns err's SQLSTATE, or "".
func sqlState(err error) string {
	var pe *pq.Error
	if errors.As(err, &pe) {
		return string(pe.Code)
	}
	return ""
}

// wantRefused fails t unless logging in as c is refused as a bad password
// (or an absent role, which PostgreSQL reports the same way).
func wantRefused(t *testing.T, pg *pgserver.Server, c creds, what string) {
	t.Helper()
	err := login(t.Context(), pg, c)
	if st := sqlState(err); st != "28P01" && st != "28000" {
		t.Errorf("%s: login got %v (SQLSTATE %q), want it refused (28P01)", what, err, st)
	}
}

// roleRow is a role's row in pg_roles.
type roleRow struct {
	exists     bool
	canLogin   bool
	validUntil time.Time
}

func pgRole(t *testing.T, pg *pgserver.Server, name string) roleRow {
	t.Helper()
	var r roleRow
	var vu sql.NullTime
	err := pg.Admin().QueryRowContext(t.Context(), "SELECT rolcanlogin, rolvaliduntil FROM pg_roles WHERE rolname = $1", name).Scan(&r.canLogin, &vu)
	if errors.Is(err, sql.ErrNoRows) {
		return r
	}
	if err != nil {
		t.Fatal(err)
	}
	r.exists, r.validUntil = true, vu.Time
	return r
}

// sessionsOf counts the backends logged in as user.
func sessionsOf(t *testing.T, pg *pgserver.Server, user string) int {
	t.Helper()
	var n int
	if err := pg.Admin().QueryRowContext(t.Context(), "SELECT count(*) FROM pg_stat_activity WHERE usename = $1", user).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// responseError returns err's *api.ResponseError, failing t if there is
// none.
func responseError(t *testing.T, err error) *api.ResponseError {
	t.Helper()
	var re *api.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("error %v: want an *api.ResponseError", err)
	}
	return re
}

// wantStatus fails t unless err is Vault's answer status with an error
// containing msg.
func wantStatus(t *testing.T, err error, status int, msg string) {
	t.Helper()
	re := responseError(t, err)
	if re.StatusCode != status || !strings.Contains(strings.Join(re.Errors, "\n"), msg) {
		t.Errorf("got %d %q, want %d with %q", re.StatusCode, re.Errors, status, msg)
	}
}

// assertNoSecret fails t if text contains any of the secrets.
func assertNoSecret(t testing.TB, what, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("%s contains a secret (%d characters): %s", what, len(s), strings.ReplaceAll(text, s, "[SECRET REMOVED BY THE TEST]"))
		}
	}
}

// generatedPassword matches the passwords the server generates.
var generatedPassword = regexp.MustCompile(`A1a-[A-Za-z0-9]{16}`)

// raw sends a request with the client's raw-response methods (GET, PUT
// for POST and PUT, DELETE) and returns the status and the decoded JSON
// body, for checks of the wire shape.
func raw(t *testing.T, c *api.Client, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var resp *api.Response
	var err error
	switch method {
	case "GET":
		resp, err = c.Logical().ReadRawWithContext(t.Context(), path)
	case "PUT", "POST":
		var b []byte
		if body != nil {
			if b, err = json.Marshal(body); err != nil {
				t.Fatal(err)
			}
		}
		resp, err = c.Logical().WriteRawWithContext(t.Context(), path, b)
	case "DELETE":
		resp, err = c.Logical().DeleteRawWithContext(t.Context(), path)
	default:
		t.Fatalf("raw: method %s", method)
	}
	if resp == nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if resp.StatusCode != 204 {
		if err := resp.DecodeJSON(&out); err != nil {
			t.Fatalf("%s %s: decoding: %v", method, path, err)
		}
	}
	return resp.StatusCode, out
}
