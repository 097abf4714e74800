package faults

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"go.uber.org/goleak"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/awssm"
	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// Timings of most cases: short, so that the suite stays fast, and each a
// promise the case checks against the clock with slack for a loaded machine
// running -race.
const (
	rotationWait = 2 * time.Second
	minBackoff   = 20 * time.Millisecond
	maxBackoff   = 200 * time.Millisecond
	fetchTimeout = 300 * time.Millisecond
	// slack is how much later than a promised bound a caller may return:
	// scheduling, one login in flight when the bound passed, -race.
	slack = time.Second
)

// fastOptions are the connector options most cases use, with w's logger.
func fastOptions(w *watch) []rotating.Option {
	return []rotating.Option{
		rotating.WithLogger(w.logger),
		rotating.WithRotationWait(rotationWait),
		rotating.WithBackoff(minBackoff, maxBackoff),
		rotating.WithFetchTimeout(fetchTimeout),
	}
}

// sharedServer returns the PostgreSQL server shared by the package's tests,
// its admin pool open, so that the goroutine the pool runs exists before a
// case captures the goroutines it may leave behind.
func sharedServer(t *testing.T) *pgserver.Server {
	t.Helper()
	srv := pgtest.Shared(t)
	if err := srv.Admin().PingContext(t.Context()); err != nil {
		t.Fatalf("shared PostgreSQL server: %v", err)
	}
	return srv
}

// privateServer starts a server of the test's own, which it may restart,
// reconfigure or exhaust, with extra settings; stopped when the test ends.
// It is pgtest.Server with settings, and also works when
// ROTATING_TEST_PG_DSN names an external server (which cannot be
// restarted).
func privateServer(t *testing.T, extra map[string]string) *pgserver.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := pgserver.Start(ctx, pgserver.Options{ExtraConf: extra})
	if err != nil {
		if errors.Is(err, pgserver.ErrNotInstalled) && os.Getenv("CI") != "true" {
			t.Skipf("skipping: %v", err)
		}
		t.Fatalf("start a private PostgreSQL server: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("private PostgreSQL server log (tail):\n%s", srv.ServerLog())
		}
		if err := srv.Stop(); err != nil {
			t.Errorf("stop private PostgreSQL server: %v", err)
		}
	})
	return srv
}

// leakCheck captures the goroutines running now and fails t if any other
// goroutine still runs once every cleanup registered after it (closing the
// pools, the connectors, the awssmtest servers) has run. Call it after the
// servers t uses exist and before anything else.
func leakCheck(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// watch is one case's record of every secret value it used and every log
// line written by the connector, the awssm source and the awssmtest server.
// It fails the case if a secret value shows up in an error or a log line.
type watch struct {
	t      *testing.T
	logs   *logBuffer
	logger *slog.Logger

	mu     sync.Mutex
	values []string
}

// newWatch returns a watch whose log lines are checked when t ends, after
// every cleanup registered later (so the lines Close writes are included).
func newWatch(t *testing.T) *watch {
	t.Helper()
	w := &watch{t: t, logs: new(logBuffer)}
	w.logger = slog.New(slog.NewJSONHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		w.checkText("the captured log lines", w.logs.String())
		if n := strings.Count(w.logs.String(), "\n"); n == 0 {
			t.Errorf("no log line was captured: the logger is not wired")
		}
	})
	return w
}

// secret records values as secrets.
func (w *watch) secret(values ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.values = append(w.values, values...)
}

// password returns a fresh random password, recorded as a secret.
func (w *watch) password() string {
	p := "pw-" + randomHex(16)
	w.secret(p)
	return p
}

// checkErr fails the case if err, formatted in any usual way, contains a
// secret value.
func (w *watch) checkErr(err error) {
	w.t.Helper()
	if err == nil {
		return
	}
	for _, verb := range []string{"%v", "%+v", "%s", "%q", "%#v"} {
		w.checkText("an error formatted with "+verb, fmt.Sprintf(verb, err))
	}
}

func (w *watch) checkText(what, text string) {
	w.t.Helper()
	w.mu.Lock()
	values := slices.Clone(w.values)
	w.mu.Unlock()
	for i, v := range values {
		if v != "" && strings.Contains(text, v) {
			w.t.Errorf("%s contain(s) secret value #%d (%d bytes)", what, i, len(v))
		}
	}
}

// logBuffer collects log output.
type logBuffer = testkit.LogBuffer

// countAll returns how many log lines contain every one of parts.
func countAll(l *logBuffer, parts ...string) int {
	return l.CountLines(func(line string) bool {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				return false
			}
		}
		return true
	})
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// newRole creates a login role named name with password on srv (name and
// password may hold any character: they are quoted), dropped when the test
// ends unless it is gone already. stored is the name PostgreSQL keeps (it
// truncates names to 63 bytes). Call it before opening pools, so that the
// role is dropped after they are closed.
func newRole(t *testing.T, srv *pgserver.Server, name, password string) (stored string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.CreateRole(ctx, name, password); err != nil {
		t.Fatalf("create role: %v", err)
	}
	stored = name
	if len(stored) > 63 {
		stored = stored[:63] // the tests only make ASCII names that long
	}
	t.Cleanup(func() { dropRoleIfExists(t, srv, stored) })
	return stored
}

func dropRoleIfExists(t *testing.T, srv *pgserver.Server, name string) {
	t.Helper()
	pgtest.DropRoleIfExists(t, srv, name)
}

// setPassword is the DBA's ALTER ROLE ... PASSWORD.
func setPassword(t *testing.T, srv *pgserver.Server, role, password string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.SetPassword(ctx, role, password); err != nil {
		t.Fatalf("ALTER ROLE: %v", err)
	}
}

// adminExec runs a statement as the superuser.
func adminExec(t *testing.T, srv *pgserver.Server, query string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Exec(ctx, query); err != nil {
		t.Fatalf("admin statement: %v", err)
	}
}

// baseDSN is a key=value DSN for srv without user or password.
func baseDSN(srv *pgserver.Server) string {
	return fmt.Sprintf("host=%s port=%d dbname=postgres sslmode=disable", srv.Host, srv.Port)
}

// urlDSN is baseDSN as a postgres:// URL.
func urlDSN(srv *pgserver.Server) string {
	return fmt.Sprintf("postgres://%s:%d/postgres?sslmode=disable", srv.Host, srv.Port)
}

// memSource is an in-memory secret store that counts its fetches, for the
// cases that are about the database rather than the store.
type memSource struct {
	name    string
	fetches atomic.Int64

	mu    sync.Mutex
	cred  secrets.Credential
	times []time.Time // when each fetch began
}

var (
	_ secrets.Source    = (*memSource)(nil)
	_ secrets.Describer = (*memSource)(nil)
)

func newMemSource(name, user, password string) *memSource {
	return &memSource{name: name, cred: secrets.Credential{Username: user, Password: password, Version: "v1"}}
}

func (s *memSource) Fetch(ctx context.Context) (secrets.Credential, error) {
	s.fetches.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.times = append(s.times, time.Now())
	if err := ctx.Err(); err != nil {
		return secrets.Credential{}, err
	}
	return s.cred, nil
}

func (s *memSource) Describe() string { return "mem-source " + s.name }

// set is the store being updated.
func (s *memSource) set(cred secrets.Credential) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cred = cred
}

func (s *memSource) count() int64 { return s.fetches.Load() }

// firstFetchAfter returns when the first fetch begun after t began, or false
// if none was.
func (s *memSource) firstFetchAfter(t time.Time) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, at := range s.times {
		if at.After(t) {
			return at, true
		}
	}
	return time.Time{}, false
}

// serverLog is the part of a test server's log written after a mark, for
// the cases that count what the server saw (rejected logins) rather than
// what the connector says it did.
type serverLog struct {
	path   string
	offset int64
}

// markServerLog marks the end of srv's log now. ok is false for an external
// server (ROTATING_TEST_PG_DSN), whose log is not on this machine.
func markServerLog(t *testing.T, srv *pgserver.Server) (l serverLog, ok bool) {
	t.Helper()
	if srv.Dir == "" {
		return serverLog{}, false
	}
	l.path = filepath.Join(srv.Dir, "log") // see pgserver.Server.Dir
	st, err := os.Stat(l.path)
	if err != nil {
		t.Fatalf("server log: %v", err)
	}
	l.offset = st.Size()
	return l, true
}

// count returns how many lines written since the mark contain substr.
func (l serverLog) count(t *testing.T, substr string) int {
	t.Helper()
	f, err := os.Open(l.path)
	if err != nil {
		t.Fatalf("server log: %v", err)
	}
	defer f.Close()
	if _, err := f.Seek(l.offset, io.SeekStart); err != nil {
		t.Fatalf("server log: %v", err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("server log: %v", err)
	}
	n := 0
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}

// rejectedLoginLine is what PostgreSQL logs for each rejected password
// login of role (rotation.md).
func rejectedLoginLine(role string) string {
	return `password authentication failed for user "` + role + `"`
}

// awsStore is an awssmtest server holding one secret, and an awssm.Source
// reading it through the real SDK.
type awsStore struct {
	srv    *awssmtest.Server
	client *secretsmanager.Client
	src    *awssm.Source
	id     string
}

// newAWSStore starts an awssmtest server (closed when t ends) whose secret
// holds value, with an SDK client that keeps the standard retryer (three
// attempts, the same retryable and throttling errors) but caps its backoff at
// 20 ms so that fault cases stay fast. Everything logs to w.
func newAWSStore(t *testing.T, w *watch, value string) *awsStore {
	t.Helper()
	srv := awssmtest.NewServer(awssmtest.WithLogger(w.logger)).Start()
	t.Cleanup(srv.Close)
	id := "faults/" + pgtest.UniqueName(t, "s")
	srv.CreateSecret(id, value)
	client := srv.Client(t.Context(), func(o *secretsmanager.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) { so.MaxBackoff = 20 * time.Millisecond })
	})
	src, err := awssm.New(client, id, awssm.WithLogger(w.logger))
	if err != nil {
		t.Fatalf("awssm.New: %v", err)
	}
	return &awsStore{srv: srv, client: client, src: src, id: id}
}

// put stores value as a new AWSCURRENT version and returns its id.
func (a *awsStore) put(value string) string { return a.srv.PutValue(a.id, value) }

// putBinary stores value as a new AWSCURRENT version in SecretBinary,
// through the SDK (the Go methods only take strings), and returns its id.
func (a *awsStore) putBinary(t *testing.T, value []byte) string {
	t.Helper()
	out, err := a.client.PutSecretValue(context.Background(), &secretsmanager.PutSecretValueInput{
		SecretId:     &a.id,
		SecretBinary: value,
	})
	if err != nil {
		t.Fatalf("PutSecretValue(SecretBinary): %v", err)
	}
	return *out.VersionId
}

// gets returns how many GetSecretValue requests reached the server,
// the SDK's retries included.
func (a *awsStore) gets() int64 { return a.srv.Calls(awssmtest.OpGetSecretValue) }

// credJSON is the RDS JSON secret for user and password.
func credJSON(user, password string) string {
	b, err := json.Marshal(map[string]any{"engine": "postgres", "username": user, "password": password})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// newConnector returns a Connector that logs in through d, closed when the
// test ends.
func newConnector(t *testing.T, d testDriver, dsn string, src secrets.Source, opts ...rotating.Option) *rotating.Connector {
	t.Helper()
	c, err := rotating.NewConnector(dsn, src, d.with(opts...)...)
	if err != nil {
		t.Fatalf("NewConnector: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// openDB returns sql.OpenDB(c), closed (and c with it) when the test ends.
func openDB(t *testing.T, c *rotating.Connector) *sql.DB {
	t.Helper()
	db := sql.OpenDB(c)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// outcome is one call's result.
type outcome struct {
	start time.Time
	took  time.Duration
	err   error
}

// call runs f, turning a panic into a test error and an error outcome.
func call(t *testing.T, f func() error) (o outcome) {
	o.start = time.Now()
	defer func() {
		o.took = time.Since(o.start)
		if r := recover(); r != nil {
			t.Errorf("panic: %v\n%s", r, debug.Stack())
			o.err = fmt.Errorf("panic: %v", r)
		}
	}()
	o.err = f()
	return o
}

// concurrently runs n calls of f at once and returns their outcomes.
func concurrently(t *testing.T, n int, f func(i int) error) []outcome {
	out := make([]outcome, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { out[i] = call(t, func() error { return f(i) }) })
	}
	wg.Wait()
	return out
}

// pings runs n concurrent db.PingContext(ctx): each a new login when the
// pool holds no idle connection.
func pings(t *testing.T, ctx context.Context, db *sql.DB, n int) []outcome {
	return concurrently(t, n, func(int) error { return db.PingContext(ctx) })
}

// wantAllOK fails t for every failed outcome.
func wantAllOK(t *testing.T, what string, outs []outcome) {
	t.Helper()
	for i, o := range outs {
		if o.err != nil {
			t.Errorf("%s %d failed after %v: %v", what, i, o.took.Round(time.Millisecond), o.err)
		}
	}
}

// load is a set of workers running one statement after another until
// finish, recording each outcome.
type load struct {
	stop chan struct{}
	wg   sync.WaitGroup

	mu   sync.Mutex
	outs []outcome
}

// startLoad starts workers that each run f in a loop, pausing pause between
// calls, until finish is called or ctx ends.
func startLoad(t *testing.T, ctx context.Context, workers int, pause time.Duration, f func(ctx context.Context) error) *load {
	l := &load{stop: make(chan struct{})}
	for range workers {
		l.wg.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				o := call(t, func() error {
					sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					defer cancel()
					return f(sctx)
				})
				l.mu.Lock()
				l.outs = append(l.outs, o)
				l.mu.Unlock()
				if pause > 0 {
					testkit.Sleep(ctx, pause)
				}
			}
		})
	}
	return l
}

// finish stops the workers, waits for them and returns every outcome.
func (l *load) finish() []outcome {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.outs)
}

// snapshot returns the outcomes so far.
func (l *load) snapshot() []outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.outs)
}

// tally counts the successes and failures among outs and returns the first
// few errors.
func tally(outs []outcome) (ok, failed int, first []error) {
	for _, o := range outs {
		if o.err == nil {
			ok++
			continue
		}
		failed++
		if len(first) < 5 {
			first = append(first, o.err)
		}
	}
	return ok, failed, first
}

// selectUser runs SELECT current_user through db and checks the result
// against want, if want is not empty.
func selectUser(db *sql.DB, want func() []string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		var user string
		if err := db.QueryRowContext(ctx, "SELECT current_user").Scan(&user); err != nil {
			return err
		}
		if want != nil && !slices.Contains(want(), user) {
			return fmt.Errorf("logged in as %q, want one of %q", user, want())
		}
		return nil
	}
}

// maxFetches is the most calls to the store the connector's pacing allows
// within elapsed after a call at time zero: the next waits for min, the one
// after for min again, then the pause doubles up to max (each call that
// fails or finds the rejected credential again doubles it).
func maxFetches(elapsed, minB, maxB time.Duration) int {
	n, at, pause := 1, time.Duration(0), minB
	for i := 0; ; i++ {
		at += pause
		if at > elapsed {
			return n
		}
		n++
		if i > 0 {
			pause = min(2*pause, maxB)
		}
	}
}

// wantRejected checks the error of a Connect that found no working
// credential: ErrCredentialRejected, an *AuthError naming the source and the
// user, the driver's own server error with code, and a message naming the
// source.
func wantRejected(t *testing.T, d testDriver, err error, code, source, user string) *rotating.AuthError {
	t.Helper()
	if err == nil {
		t.Errorf("no error, want a rejected login (%s)", code)
		return nil
	}
	if !errors.Is(err, rotating.ErrCredentialRejected) {
		t.Errorf("%v: does not match rotating.ErrCredentialRejected", err)
	}
	if got := d.sqlState(err); got != code {
		t.Errorf("%v: want the driver's %s with code %s in the chain (found %q)", err, d.errorType, code, got)
	}
	var ae *rotating.AuthError
	if !errors.As(err, &ae) {
		t.Errorf("%v: not a *rotating.AuthError", err)
		return nil
	}
	if ae.Source != source || ae.Username != user {
		t.Errorf("AuthError names source %q and user %q, want %q and %q", ae.Source, ae.Username, source, user)
	}
	if !strings.Contains(err.Error(), source) {
		t.Errorf("%q does not name the source %q", err, source)
	}
	return ae
}

// wantGaveUpInTime checks the time a Connect that found no working
// credential took against WithRotationWait's promise: it keeps looking for
// wait after its login was rejected, then returns. The connector measures
// that wait from the rejection (AuthError.Waited). The caller's own time
// also holds the rejected login before it, which on a loaded machine under
// -race can take a good part of a second (client-side SCRAM work); the
// connector bounds every login by the rotation wait too (the default
// dialer's deadline), so the whole call is bounded by twice the wait.
func wantGaveUpInTime(t *testing.T, what string, r outcome, ae *rotating.AuthError, wait time.Duration) {
	t.Helper()
	if ae == nil {
		return // wantRejected has reported it
	}
	if ae.Waited > wait+slack {
		t.Errorf("%s: waited %v after the rejection, want the rotation wait %v", what, ae.Waited, wait)
	}
	if r.took > 2*wait+slack || r.took < ae.Waited {
		t.Errorf("%s: returned after %v (%v of them waiting after the rejection); want within the rejected login and the rotation wait %v, each bounded by the wait",
			what, r.took, ae.Waited, wait)
	}
}

// authish reports whether err is, or carries, a rejected login: an
// *AuthError, or the driver's server error with a class 28 SQLSTATE.
func authish(d testDriver, err error) bool {
	return errors.Is(err, rotating.ErrCredentialRejected) || strings.HasPrefix(d.sqlState(err), "28")
}
