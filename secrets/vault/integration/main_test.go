package vaultintegration

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"
	"go.uber.org/goleak"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/internal/testkit/apptest"
	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/vault"
	"github.com/pgrotate/rotating/secrets/vault/vaulttest"
)

func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	if code == 0 {
		// Every pool, connector and Vault server the tests made is closed,
		// and pgtest.Main has closed the PostgreSQL admin pools.
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines left after the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// env is one test's world: a PostgreSQL server (shared by the package), a
// Vault server of its own backed by it, and the log buffers and secrets
// the test checks at its end.
type env struct {
	pg  *pgserver.Server
	srv *vaulttest.Server

	// serverLogs is the Vault server's log (JSON, Debug level); appLogs
	// the connector's and the Vault client's, which share appLog.
	serverLogs *testkit.LogBuffer
	appLogs    *testkit.LogBuffer
	appLog     *slog.Logger

	// known holds the secrets the test made or met, and the shape of
	// those Vault generates (vaultSecretShape).
	known *testkit.Secrets
	watch *sessionWatch

	mu     sync.Mutex // guards errors
	errors []string   // texts (%v and %+v) of errors the test met, for the secrecy check
}

// vaultSecretShape matches what vaulttest generates and the test cannot
// know one by one: passwords ("A1a-" and 16 letters and digits) and tokens
// ("hvs." and 24).
var vaultSecretShape = regexp.MustCompile(`A1a-[A-Za-z0-9]{16}|hvs\.[A-Za-z0-9]{24}`)

// newEnv starts a Vault server on pg for the test, closed (revoking the
// leases left) when the test ends, after the cleanups registered later:
// the pools, tables and roles the test makes. Then the logs and errors
// are checked for secrets.
func newEnv(t *testing.T, pg *pgserver.Server, opts ...vaulttest.Option) *env {
	t.Helper()
	e := &env{pg: pg, known: new(testkit.Secrets)}
	e.known.AddShape(vaultSecretShape)
	e.appLog, e.appLogs = testkit.NewJSONLogger()
	serverLog, serverLogs := testkit.NewJSONLogger()
	e.serverLogs = serverLogs
	e.watch = &sessionWatch{pg: pg, afterEnd: make(map[string]int), seen: make(map[int64]bool)}
	opts = append([]vaulttest.Option{vaulttest.WithLogger(serverLog), vaulttest.WithOnLeaseEnd(e.watch.leaseEnded)}, opts...)
	srv, err := vaulttest.NewServer(pg.Admin(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.watch.srv = srv
	e.known.Add(srv.RootToken())
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("closing the Vault server: %v", err)
		}
		e.checkNoSecrets(t)
	})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	e.appLogs.LogSecretsOnFailure(t, "the application's log", e.known)
	e.serverLogs.LogSecretsOnFailure(t, "the Vault server's log", e.known)
	return e
}

// token makes a token for the application, remembered as a secret.
func (e *env) token(t *testing.T, o vaulttest.TokenOptions) string {
	t.Helper()
	tok, err := e.srv.CreateToken(o)
	if err != nil {
		t.Fatal(err)
	}
	e.known.Add(tok)
	return tok
}

// client returns a vault.Client for the server that sends token (none for
// a login mode, which gets its own), logging to appLog.
func (e *env) client(t *testing.T, token string, opts ...vault.ClientOption) *vault.Client {
	t.Helper()
	api, err := e.srv.Client(token)
	if err != nil {
		t.Fatal(err)
	}
	if token == "" {
		api.ClearToken()
	}
	c, err := vault.NewClient(api, append([]vault.ClientOption{vault.WithLogger(e.appLog)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// dsn is the application's DSN for the PostgreSQL server: the endpoint,
// and for the TLS server sslmode=verify-full with the test CA; the user
// and password come from the source.
func (e *env) dsn() string {
	return fmt.Sprintf("host=%s port=%d dbname=postgres %s", e.pg.Host, e.pg.Port, e.pg.SSLParams())
}

// open is the application: apptest.Open on the server's DSN, logging to
// appLog.
func (e *env) open(t *testing.T, src secrets.Source, opts ...rotating.Option) (*rotating.Connector, *sql.DB) {
	t.Helper()
	return apptest.Open(t, e.dsn(), src, e.appLog, opts...)
}

// noteError remembers err's texts for the secrecy check.
func (e *env) noteError(err error) {
	if err == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.errors = append(e.errors, fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err))
}

// checkNoSecrets fails t if a log line or an error the test met holds a
// token, a password or a secret id.
func (e *env) checkNoSecrets(t *testing.T) {
	t.Helper()
	e.known.AssertNone(t, "the application's log (connector and Vault client)", e.appLogs.String())
	e.known.AssertNone(t, "the Vault server's log", e.serverLogs.String())
	e.mu.Lock()
	texts := append([]string(nil), e.errors...)
	e.mu.Unlock()
	for _, text := range texts {
		e.known.AssertNone(t, "an error", text)
	}
}

// newTable creates the load's table (what testkit.StartInserts writes, and
// the role that inserted each row) and the table the dynamic roles'
// creation statements record each role's oid in, so that the sessions of
// a lease's role can be found after DROP ROLE, when pg_stat_activity's
// usename is NULL. Both belong to the superuser, as an application's
// tables belong to its owner role, and are dropped when the test ends.
func (e *env) newTable(t *testing.T) string {
	t.Helper()
	table := pgtest.UniqueName(t, "t")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.pg.Exec(ctx, "CREATE TABLE "+table+" (id bigserial PRIMARY KEY, worker int NOT NULL, seq int NOT NULL, "+
		"role text NOT NULL DEFAULT current_user)"); err != nil {
		t.Fatalf("create table: %v", err)
	}
	if err := e.pg.Exec(ctx, "CREATE TABLE "+table+"_roles (username text PRIMARY KEY, oid bigint NOT NULL)"); err != nil {
		t.Fatalf("create table: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.pg.Exec(ctx, "DROP TABLE IF EXISTS "+table+", "+table+"_roles"); err != nil {
			t.Errorf("drop table: %v", err)
		}
	})
	e.watch.setTable(table)
	return table
}

// grant lets role insert into table.
func (e *env) grant(t *testing.T, table, role string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := pq.QuoteIdentifier(role)
	if err := e.pg.ExecSerialized(ctx, "GRANT SELECT, INSERT ON "+table+" TO "+id, "GRANT USAGE ON SEQUENCE "+table+"_id_seq TO "+id); err != nil {
		t.Fatalf("grant: %v", err)
	}
}

// dynamicRole is a Vault dynamic role whose users may insert into table.
// Its creation statements record each user's oid in table_roles.
// keepSessions leaves a revoked role's sessions running, as Vault's own
// revocation does (they fail with 42501 from then on); otherwise the
// server ends them, as operators' revocation statements often do.
func dynamicRole(table string, ttl, maxTTL time.Duration, keepSessions bool) vaulttest.DynamicRole {
	return vaulttest.DynamicRole{
		DefaultTTL: ttl, MaxTTL: maxTTL, KeepSessions: keepSessions,
		CreationStatements: []string{
			`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`,
			`GRANT SELECT, INSERT ON ` + table + ` TO "{{name}}";`,
			`GRANT USAGE ON SEQUENCE ` + table + `_id_seq TO "{{name}}";`,
			`INSERT INTO ` + table + `_roles (username, oid) SELECT rolname, oid::bigint FROM pg_roles WHERE rolname = '{{name}}';`,
		},
	}
}

// rowsByRole returns how many rows of table each role inserted.
func rowsByRole(ctx context.Context, t *testing.T, pg *pgserver.Server, table string) map[string]int64 {
	t.Helper()
	rows, err := pg.Admin().QueryContext(ctx, "SELECT role, count(*) FROM "+table+" GROUP BY role")
	if err != nil {
		t.Fatalf("count rows by role: %v", err)
	}
	defer rows.Close()
	n := make(map[string]int64)
	for rows.Next() {
		var role string
		var count int64
		if err := rows.Scan(&role, &count); err != nil {
			t.Fatalf("count rows by role: %v", err)
		}
		n[role] = count
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("count rows by role: %v", err)
	}
	return n
}

// sessionsOf counts the sessions logged in as user.
func sessionsOf(ctx context.Context, t *testing.T, pg *pgserver.Server, user string) int {
	t.Helper()
	var n int
	if err := pg.Admin().QueryRowContext(ctx, "SELECT count(*) FROM pg_stat_activity WHERE usename = $1", user).Scan(&n); err != nil {
		t.Fatalf("count sessions: %v", err)
	}
	return n
}

// check is load.Check through the superuser's pool (not the connector's),
// with the statements' errors kept for the secrecy check. Call it after
// load.Finish.
func (e *env) check(ctx context.Context, t *testing.T, load *testkit.InsertLoad) testkit.LoadResult {
	t.Helper()
	res := load.Check(ctx, t, e.pg.Admin())
	for _, err := range res.FirstErrors {
		e.noteError(err)
	}
	return res
}

// sessionWatch checks, after each lease's revocation and every 50 ms while
// it runs, that no session of a revoked lease's role is left in
// pg_stat_activity. It finds a role's sessions by the oid its creation
// statements recorded, since DROP ROLE leaves usename NULL.
type sessionWatch struct {
	pg  *pgserver.Server
	srv *vaulttest.Server

	mu       sync.Mutex
	table    string         // "": no dynamic role in this test
	afterEnd map[string]int // lease id → sessions found just after its revocation finished
	found    []string       // sessions of revoked leases seen by run, and its errors
	seen     map[int64]bool // pids in found
}

func (w *sessionWatch) setTable(table string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.table = table
}

// leaseEnded is the server's WithOnLeaseEnd hook: it counts the sessions
// of l's role right after the revocation finished.
func (w *sessionWatch) leaseEnded(l vaulttest.Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sessions, err := w.sessions(ctx, []string{l.Username})
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.found = append(w.found, fmt.Sprintf("lease %s: %v", l.ID, err))
		return
	}
	w.afterEnd[l.ID] = len(sessions)
}

// sessionsAfterEnd returns what leaseEnded found for the lease id, and
// whether it ran.
func (w *sessionWatch) sessionsAfterEnd(id string) (int, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, ok := w.afterEnd[id]
	return n, ok
}

// run looks for sessions of revoked leases every interval until ctx ends.
func (w *sessionWatch) run(ctx context.Context, every time.Duration) {
	for {
		var revoked []string
		ended := map[string]vaulttest.Lease{}
		for _, l := range w.srv.Leases() {
			if !l.RevokedAt.IsZero() {
				revoked = append(revoked, l.Username)
				ended[l.Username] = l
			}
		}
		if len(revoked) > 0 {
			sessions, err := w.sessions(ctx, revoked)
			w.mu.Lock()
			if err != nil && ctx.Err() == nil {
				w.found = append(w.found, err.Error())
			}
			for _, s := range sessions {
				if !w.seen[s.pid] {
					w.seen[s.pid] = true
					l := ended[s.user]
					w.found = append(w.found, fmt.Sprintf("session %d of lease %s (%s), state %q, %v after the lease ended (%s)",
						s.pid, l.ID, l.Username, s.state, time.Since(l.EndedAt).Round(time.Millisecond), l.EndReason))
				}
			}
			w.mu.Unlock()
		}
		if testkit.Sleep(ctx, every) != nil {
			return
		}
	}
}

// violations returns what run and leaseEnded found wrong.
func (w *sessionWatch) violations() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.found...)
}

type session struct {
	user  string
	pid   int64
	state string
}

// sessions returns the sessions of the dynamic roles users.
func (w *sessionWatch) sessions(ctx context.Context, users []string) ([]session, error) {
	w.mu.Lock()
	table := w.table
	w.mu.Unlock()
	if table == "" {
		return nil, nil
	}
	rows, err := w.pg.Admin().QueryContext(ctx, "SELECT r.username, a.pid, coalesce(a.state, '') FROM pg_stat_activity a JOIN "+
		table+"_roles r ON a.usesysid = r.oid::oid WHERE r.username = ANY($1)", pq.Array(users))
	if err != nil {
		return nil, fmt.Errorf("look for sessions of revoked leases: %w", err)
	}
	defer rows.Close()
	var out []session
	for rows.Next() {
		var s session
		if err := rows.Scan(&s.user, &s.pid, &s.state); err != nil {
			return nil, fmt.Errorf("look for sessions of revoked leases: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("look for sessions of revoked leases: %w", err)
	}
	return out, nil
}

// grant is one lease period Vault granted: a lease's creation or a
// renewal, ending ttl after it was granted.
type grant struct {
	leaseID string
	at      time.Time
	ttl     time.Duration
}

func (g grant) end() time.Time { return g.at.Add(g.ttl) }

// grants reads the lease periods granted from the Vault server's log
// ("lease created" and "lease renewed" lines, with the time and the TTL).
func (e *env) grants(t *testing.T) []grant {
	t.Helper()
	var out []grant
	for line := range strings.Lines(e.serverLogs.String()) {
		var rec struct {
			Time    time.Time `json:"time"`
			Msg     string    `json:"msg"`
			LeaseID string    `json:"lease_id"`
			TTL     int64     `json:"ttl"` // slog's JSON handler writes durations in nanoseconds
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("the Vault server's log: %v", err)
		}
		if rec.Msg == "lease created" || rec.Msg == "lease renewed" {
			out = append(out, grant{leaseID: rec.LeaseID, at: rec.Time, ttl: time.Duration(rec.TTL)})
		}
	}
	return out
}

// since formats at relative to start, for the reports.
func since(start, at time.Time) string {
	if at.IsZero() {
		return "-"
	}
	return fmt.Sprintf("+%.2fs", at.Sub(start).Seconds())
}

// fetchTimes returns how long each of the connector's successful calls to
// the Vault source took, from the connector's "fetching credential" line
// to the source's line about Vault's answer, in the application's log.
func fetchTimes(t *testing.T, e *env) []time.Duration {
	t.Helper()
	var out []time.Duration
	var began time.Time
	for line := range strings.Lines(e.appLogs.String()) {
		var rec struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("the application's log: %v", err)
		}
		switch rec.Msg {
		case "rotating: fetching credential":
			began = rec.Time
		case "vault: renewed lease", "vault: read a new lease", "vault: read static role":
			if !began.IsZero() {
				out = append(out, rec.Time.Sub(began))
				began = time.Time{}
			}
		}
	}
	slices.Sort(out)
	return out
}

// spread formats sorted durations as "median m, slowest s".
func spread(d []time.Duration) string {
	if len(d) == 0 {
		return "none"
	}
	return fmt.Sprintf("median %v, slowest %v", d[len(d)/2].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
}
