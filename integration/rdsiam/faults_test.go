package rdsiamintegration

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/internal/testkit/drivers"
	"github.com/pgrotate/rotating/secrets/rdsiam"
)

// errSTSDown is what the stand-in for STS (or the instance metadata
// service) answers while it is down.
var errSTSDown = errors.New("sts: dial tcp: connection refused")

// shortSessions stands in for STS: each Retrieve issues a new role
// session that expires life later (allowed by the verifier), or fails
// while down.
type shortSessions struct {
	t    *testing.T
	w    *world
	life time.Duration
	down atomic.Bool

	mu    sync.Mutex
	n     int
	calls int
}

func (s *shortSessions) Retrieve(context.Context) (aws.Credentials, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.down.Load() {
		return aws.Credentials{}, errSTSDown
	}
	s.n++
	c := aws.Credentials{
		AccessKeyID: fmt.Sprintf("ASIAROTATINGSTS%05d", s.n), SecretAccessKey: pgtest.RandomPassword(s.t),
		SessionToken: pgtest.RandomPassword(s.t), Source: "shortSessions", CanExpire: true, Expires: time.Now().Add(s.life),
	}
	s.w.verifier.Allow(c)
	s.w.keys.mu.Lock()
	s.w.keys.all = append(s.w.keys.all, c.SecretAccessKey, c.SessionToken)
	s.w.keys.mu.Unlock()
	return c, nil
}

// TestCredentialsProviderDown takes STS down while the application runs
// on role sessions that live 5 s. A: while the current token is good
// (until its credentials expire), the refreshes fail and no statement
// fails. B: once it has expired, PostgreSQL refuses it with 28000 and
// Connect returns an *rotating.AuthError within the rotation wait, with
// the driver's 28000 and a *rotating.FetchError wrapping *rdsiam.Error and
// the provider's own error inside. C: STS comes back and logins work again
// with a new token.
func TestCredentialsProviderDown(t *testing.T) {
	for _, d := range drivers.All {
		t.Run(d.Name, func(t *testing.T) { testCredentialsProviderDown(t, d) })
	}
}

func testCredentialsProviderDown(t *testing.T, d drivers.Driver) {
	const (
		workers      = 4
		sessionLife  = 5 * time.Second
		rotationWait = 2 * time.Second
	)
	w := newWorld(t, ldapStandIn, time.Minute)
	sts := &shortSessions{t: t, w: w, life: sessionLife}
	src := w.sourceWith(t, aws.NewCredentialsCache(sts))
	c, db := w.open(t, d, w.dsn(), src, rotating.WithRotationWait(rotationWait), rotating.WithBackoff(100*time.Millisecond, time.Second))
	db.SetMaxIdleConns(0)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	table := w.createTable(ctx, t)
	if err := db.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	first := src.built()[0]
	sts.down.Store(true)

	// A: the token signed with the first session is good until the
	// session expires; the background refresh meets STS down meanwhile.
	load := testkit.StartInserts(ctx, db, table, workers, 1<<30, 20*time.Millisecond)
	if err := testkit.Sleep(ctx, time.Until(first.at.Add(sessionLife-time.Second))); err != nil {
		t.Fatal(err)
	}
	load.Finish()
	resA, err := load.Verify(ctx, w.pg.Admin())
	if err != nil {
		t.Fatal(err)
	}
	stA := c.Stats()
	for _, p := range resA.Problems() {
		t.Errorf("A, STS down, token still good: %s", p)
	}
	if stA.FetchErrors == 0 {
		t.Error("A: no refresh met STS down")
	}

	// B: past the session's expiry.
	if err := testkit.Sleep(ctx, time.Until(first.at.Add(sessionLife+200*time.Millisecond))); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	err = db.PingContext(ctx)
	took := time.Since(began)
	var (
		authErr  *rotating.AuthError
		fetchErr *rotating.FetchError
		iamErr   *rdsiam.Error
	)
	if !errors.As(err, &authErr) || !errors.As(err, &fetchErr) || !errors.As(err, &iamErr) || !errors.Is(err, errSTSDown) {
		t.Errorf("B: Connect = %v; want *AuthError with *FetchError, *rdsiam.Error and the provider's error inside", err)
	} else if iamErr.Op != rdsiam.OpRetrieveCredentials {
		t.Errorf("B: the rdsiam error's step is %s, want %s", iamErr.Op, rdsiam.OpRetrieveCredentials)
	}
	if code := d.SQLState(err); code != "28000" {
		t.Errorf("B: the driver's SQLSTATE in the error is %q, want 28000 (%s reachable with errors.As)", code, d.ErrorType)
	}
	if took < rotationWait || took > rotationWait+3*time.Second {
		t.Errorf("B: Connect gave up after %v, want after the rotation wait (%v), not much later", took, rotationWait)
	}

	// C: STS is back.
	sts.down.Store(false)
	testkit.WaitFor(ctx, t, 30*time.Second, "a login once STS is back", func() bool { return db.PingContext(ctx) == nil })
	st := c.Stats()
	t.Logf("%s: A (STS down, %v of the token's life left): %v, %d failed refreshes; B: %v after %v; C: recovered, %d tokens in all, %d STS calls, %d store calls, %d fetch errors",
		d.Name, sessionLife-time.Second, resA, stA.FetchErrors, err, took.Round(time.Millisecond),
		len(src.built()), sts.calls, st.Fetches, st.FetchErrors)
	w.assertNoSecret(t, "the application's log and the error", w.logs.String()+fmt.Sprintf("%v %+v", err, err), src)
}
