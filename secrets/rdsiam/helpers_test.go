package rdsiam_test

import (
	"context"
	"database/sql/driver"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/lib/pq"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/rdsauth"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/rdsiam"
)

// The test's AWS identity. The secret access key and the session token
// must never appear in an error, a log line or a formatted value; neither
// must a token.
const (
	testAccessKeyID = "AKIDROTATINGTEST0001"
	testSecretKey   = "rotating-test-secret-access-key/NEVER+SHOWN"
	testSession     = "rotating-test-session-token/NEVER+SHOWN=="
	testRegion      = "us-east-1"
	testHost        = "app.abcdefghijkl.us-east-1.rds.amazonaws.com"
	testPort        = 5432
	testUser        = "app_iam"
)

var testDB = rdsiam.DB{Host: testHost, Port: testPort, User: testUser, Region: testRegion}

func testEndpoint() string { return net.JoinHostPort(testHost, strconv.Itoa(testPort)) }

// keyIssuer stands in for STS or the instance metadata service: each
// Retrieve issues new temporary credentials (a new access key id) that
// expire life after they were issued, and allows them on the verifier.
// Wrapped in aws.NewCredentialsCache, as the SDK's default configuration
// wraps its providers.
type keyIssuer struct {
	life     time.Duration
	verifier *rdsauth.Verifier

	calls     atomic.Int64
	refuseNew atomic.Bool // IAM no longer accepts the keys issued
}

func (k *keyIssuer) Retrieve(context.Context) (aws.Credentials, error) {
	n := k.calls.Add(1)
	c := aws.Credentials{
		AccessKeyID:     fmt.Sprintf("ASIAROTATINGTEST%04d", n),
		SecretAccessKey: fmt.Sprintf("%s-%d", testSecretKey, n),
		SessionToken:    fmt.Sprintf("%s-%d", testSession, n),
		Source:          "keyIssuer",
		CanExpire:       true,
		Expires:         time.Now().Add(k.life),
	}
	if k.verifier != nil && !k.refuseNew.Load() {
		k.verifier.Allow(c)
	}
	return c, nil
}

// staticCreds are the never-expiring test credentials, as
// credentials.NewStaticCredentialsProvider returns them.
func staticCreds() aws.Credentials {
	return aws.Credentials{AccessKeyID: testAccessKeyID, SecretAccessKey: testSecretKey, SessionToken: testSession, Source: "StaticCredentials"}
}

// fakeRDS stands in for an RDS instance's login check in unit tests: a
// login is accepted if the driver dials the token's endpoint and the
// token passes rdsauth's checks now (the fake clock inside a synctest
// bubble), and refused with FATAL 28000 "PAM authentication failed", as
// RDS refuses it, otherwise. Plug it in with
// rotating.WithNewConnector(db.Connector).
type fakeRDS struct {
	verifier *rdsauth.Verifier
	endpoint string

	dials, rejections atomic.Int64

	mu       sync.Mutex
	lastWhy  error
	badDials int // dials to another endpoint
}

func newFakeRDS() *fakeRDS {
	return &fakeRDS{verifier: rdsauth.NewVerifier(testEndpoint(), testRegion), endpoint: testEndpoint()}
}

func (db *fakeRDS) Connector(cfg pq.Config) (driver.Connector, error) {
	return rotating.ConnectorFunc(func(ctx context.Context) (driver.Conn, error) {
		db.dials.Add(1)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if got := net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))); got != db.endpoint {
			db.mu.Lock()
			db.badDials++
			db.mu.Unlock()
			return nil, fmt.Errorf("dial tcp %s: connection refused", got)
		}
		if err := db.verifier.Check(cfg.User, cfg.Password); err != nil {
			db.rejections.Add(1)
			db.mu.Lock()
			db.lastWhy = err
			db.mu.Unlock()
			return nil, &pq.Error{Severity: "FATAL", Code: "28000",
				Message: `PAM authentication failed for user "` + cfg.User + `"`}
		}
		return &testkit.FakeConn{User: cfg.User}, nil
	}), nil
}

func (db *fakeRDS) why() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.lastWhy
}

// recordingSource counts the tokens a source built and keeps when and
// what (never printing them).
type recordingSource struct {
	secrets.Source

	mu    sync.Mutex
	built []built
}

type built struct {
	at   time.Time
	cred secrets.Credential
}

func (r *recordingSource) Fetch(ctx context.Context) (secrets.Credential, error) {
	c, err := r.Source.Fetch(ctx)
	if err == nil {
		r.mu.Lock()
		r.built = append(r.built, built{time.Now(), c})
		r.mu.Unlock()
	}
	return c, err
}

func (r *recordingSource) tokens() []built {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]built(nil), r.built...)
}

// tokenParam returns one query parameter of a token (for assertions; the
// token itself is never printed).
func tokenParam(t *testing.T, token, key string) string {
	t.Helper()
	_, query, ok := strings.Cut(token, "?")
	if !ok {
		t.Fatal("the token has no query")
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal("the token's query does not parse")
	}
	return q.Get(key)
}

// assertNoSecret fails t if text holds any of the secrets (never quoting
// them).
func assertNoSecret(t testing.TB, what, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("%s contains a secret (%d bytes of text)", what, len(text))
			return
		}
	}
}

// newSource returns a Source for testDB signing with provider.
func newSource(t testing.TB, provider aws.CredentialsProvider, opts ...rdsiam.Option) *rdsiam.Source {
	t.Helper()
	src, err := rdsiam.New(aws.Config{Credentials: provider, Region: testRegion}, testDB, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// newConnector returns a Connector over db for src, closed by t.Cleanup.
// Its DSN leaves host and port unset: the credential supplies the
// endpoint the token was signed for.
func newConnector(t testing.TB, db *fakeRDS, src secrets.Source, opts ...rotating.Option) *rotating.Connector {
	t.Helper()
	c, err := rotating.NewConnector("dbname=app sslmode=disable", src,
		append([]rotating.Option{rotating.WithNewConnector(db.Connector)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
