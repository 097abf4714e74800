package rdsiamintegration

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/lib/pq"
	"go.uber.org/goleak"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/rdsauth"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/internal/testkit/drivers"
	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/rdsiam"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const region = "us-east-1"

// standIn is how the test makes PostgreSQL accept a token as RDS would.
type standIn int

const (
	// passwordStandIn makes each new token the role's password, VALID
	// UNTIL its signing time plus the token's (shortened) life, with ALTER
	// ROLE: PostgreSQL refuses it after that with 28P01. Unlike RDS it
	// also refuses every earlier token from then on: a role has one
	// password.
	passwordStandIn standIn = iota
	// ldapStandIn routes the role's logins through pg_hba.conf's ldap
	// method to rdsauth's LDAP server, which checks each token as RDS
	// does (signature, endpoint, user, region, expiry): PostgreSQL refuses
	// a bad one with 28000, as RDS does, and every token is good until
	// its own expiry, as on RDS.
	ldapStandIn
)

func (s standIn) String() string {
	if s == ldapStandIn {
		return "ldap"
	}
	return "password"
}

// refusal is the SQLSTATE PostgreSQL answers a refused token with.
func (s standIn) refusal() string {
	if s == ldapStandIn {
		return "28000"
	}
	return "28P01"
}

// world is one test's RDS: the shared TLS server (RDS requires TLS), a
// role of the test's own that logs in with tokens only, the AWS identity
// that signs them (the SDK's static provider behind its credentials
// cache), and the stand-in that makes PostgreSQL check them.
type world struct {
	pg       *pgserver.Server
	role     string
	db       rdsiam.DB
	kind     standIn
	life     time.Duration
	verifier *rdsauth.Verifier
	ldap     *rdsauth.LDAPServer // ldapStandIn only
	keys     *keyring
	cache    *aws.CredentialsCache

	logs   *testkit.LogBuffer
	logger *slog.Logger
}

// newWorld sets up a world whose tokens live life (RDS's 15 minutes,
// shortened).
func newWorld(t *testing.T, kind standIn, life time.Duration) *world {
	t.Helper()
	pg := pgtest.SharedTLS(t)
	role, _ := pgtest.NewRole(t, pg)
	// Everything the test starts from here on (the LDAP server, the
	// connector's refresh, the pools) must be gone once its cleanups ran.
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	w := &world{pg: pg, role: role, kind: kind, life: life,
		db: rdsiam.DB{Host: pg.Host, Port: pg.Port, User: role, Region: region}}
	w.verifier = rdsauth.NewVerifier(net.JoinHostPort(pg.Host, strconv.Itoa(pg.Port)), region)
	w.verifier.SetLifetime(life)
	w.keys = newKeyring(t, w.verifier)
	w.cache = aws.NewCredentialsCache(w.keys)
	w.logs = &testkit.LogBuffer{}
	w.logger = slog.New(slog.NewJSONHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if kind == ldapStandIn {
		ldap, err := rdsauth.StartLDAP(w.verifier.Check)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ldap.Close)
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		if err := ldap.Route(ctx, pg, role); err != nil {
			t.Fatal(err)
		}
		w.ldap = ldap
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the application's log (tail):\n%s", tail(w.logs.String(), 40))
		}
	})
	return w
}

func tail(s string, lines int) string {
	all := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// keyring is the AWS identity: the static keys in use (the SDK's static
// provider), which the test can replace, as STS issues new ones for a
// new role session. Every key it hands out is allowed by the verifier
// unless revoked.
type keyring struct {
	t        *testing.T
	verifier *rdsauth.Verifier

	mu   sync.Mutex
	n    int
	cur  aws.CredentialsProvider
	id   string
	all  []string // every secret key and session token, for the secrecy checks
	hits int
}

func newKeyring(t *testing.T, v *rdsauth.Verifier) *keyring {
	k := &keyring{t: t, verifier: v}
	k.rotate()
	return k
}

// rotate replaces the keys; the old ones stay valid until revoked.
func (k *keyring) rotate() (oldID string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	oldID = k.id
	k.n++
	id, secret, session := fmt.Sprintf("ASIAROTATINGIT%06d", k.n), pgtest.RandomPassword(k.t), pgtest.RandomPassword(k.t)
	k.cur = credentials.NewStaticCredentialsProvider(id, secret, session)
	k.id = id
	k.all = append(k.all, secret, session)
	c, _ := k.cur.Retrieve(context.Background())
	k.verifier.Allow(c)
	return oldID
}

func (k *keyring) Retrieve(ctx context.Context) (aws.Credentials, error) {
	k.mu.Lock()
	cur := k.cur
	k.hits++
	k.mu.Unlock()
	return cur.Retrieve(ctx)
}

func (k *keyring) retrievals() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.hits
}

func (k *keyring) secrets() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.all...)
}

// tokenSource is the application's rdsiam source plus what the stand-in
// does when a token is built, and a record of every token (to check that
// none leaks, and to count builds).
type tokenSource struct {
	w     *world
	inner *rdsiam.Source
	// staleExpires makes Fetch report RDS's 15 minutes instead of the
	// shortened life, so that the connector does not refresh ahead and
	// meets a token the database refuses.
	staleExpires bool

	mu     sync.Mutex
	builds []build
}

type build struct {
	at      time.Time
	expires time.Time // when the stand-in stops accepting it
	token   string
}

func (w *world) source(t *testing.T) *tokenSource {
	t.Helper()
	return w.sourceWith(t, w.cache)
}

// sourceWith is source with AWS credentials from provider.
func (w *world) sourceWith(t *testing.T, provider aws.CredentialsProvider) *tokenSource {
	t.Helper()
	inner, err := rdsiam.New(aws.Config{Credentials: provider, Region: region}, w.db, rdsiam.WithLogger(w.logger))
	if err != nil {
		t.Fatal(err)
	}
	return &tokenSource{w: w, inner: inner}
}

func (s *tokenSource) Describe() string { return s.inner.Describe() }

func (s *tokenSource) Fetch(ctx context.Context) (secrets.Credential, error) {
	cred, err := s.inner.Fetch(ctx)
	if err != nil {
		return cred, err
	}
	signed, err := time.Parse(time.RFC3339, cred.Version)
	if err != nil {
		return secrets.Credential{}, fmt.Errorf("the token's version %q is not its signing time", cred.Version)
	}
	validUntil := signed.Add(s.w.life)
	if s.w.kind == passwordStandIn {
		q := "ALTER ROLE " + pq.QuoteIdentifier(s.w.role) + " PASSWORD " + pq.QuoteLiteral(cred.Password) +
			" VALID UNTIL " + pq.QuoteLiteral(validUntil.UTC().Format(time.RFC3339Nano))
		if err := s.w.pg.Exec(ctx, q); err != nil {
			return secrets.Credential{}, err
		}
	}
	if !s.staleExpires && validUntil.Before(cred.Expires) {
		cred.Expires = validUntil
	}
	s.mu.Lock()
	s.builds = append(s.builds, build{at: time.Now(), expires: validUntil, token: cred.Password})
	s.mu.Unlock()
	return cred, nil
}

func (s *tokenSource) built() []build {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]build(nil), s.builds...)
}

func (s *tokenSource) tokens() []string {
	var out []string
	for _, b := range s.built() {
		out = append(out, b.token)
	}
	return out
}

// dsn is the application's DSN: TLS verified against the server's CA, as
// on RDS with the RDS CA bundle, and no host or port, which come with the
// credential (the endpoint the token is signed for).
func (w *world) dsn() string { return "dbname=postgres " + w.pg.SSLParams() }

// open returns a Connector for src through d, and its pool.
func (w *world) open(t *testing.T, d drivers.Driver, dsn string, src secrets.Source, opts ...rotating.Option) (*rotating.Connector, *sql.DB) {
	t.Helper()
	c, err := rotating.NewConnector(dsn, src, d.With(append([]rotating.Option{rotating.WithLogger(w.logger)}, opts...)...)...)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	t.Cleanup(func() { _ = db.Close() })
	return c, db
}

// control logs in with token through the driver alone, bypassing the
// connector, and returns the open pool (nil on error).
func (w *world) control(ctx context.Context, t *testing.T, d drivers.Driver, token string) (*sql.DB, error) {
	t.Helper()
	db, err := sql.Open(d.SQLName, w.pg.DSN(w.role, token, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// assertNoSecret fails t if text holds a token, a secret key or a session
// token (never quoting it).
func (w *world) assertNoSecret(t *testing.T, what, text string, src *tokenSource) {
	t.Helper()
	for _, s := range append(w.keys.secrets(), src.tokens()...) {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("%s contains a token or an AWS secret (%d bytes of text)", what, len(text))
			return
		}
	}
}

// loggedSQLStates counts the SQLSTATEs of the rejected logins the
// connector logged.
func (w *world) loggedSQLStates() map[string]int {
	out := map[string]int{}
	for line := range strings.Lines(w.logs.String()) {
		if !strings.Contains(line, "login rejected") {
			continue
		}
		if i := strings.Index(line, `"sqlstate":"`); i >= 0 {
			out[line[i+12:i+17]]++
		}
	}
	return out
}
