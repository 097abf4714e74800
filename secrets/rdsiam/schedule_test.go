package rdsiam_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/rdsauth"
)

// connectEvery logs in through c every interval until d has passed (on the
// bubble's clock), as an application whose pool opens a connection now and
// then would, and returns the errors.
func connectEvery(c *rotating.Connector, interval, d time.Duration) []error {
	var errs []error
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(interval) {
		conn, err := c.Connect(context.Background())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		conn.Close()
	}
	return errs
}

// TestTokensAreRebuiltAheadOfEachExpiry runs the connector over a fake RDS
// for a fake hour, logging in every 10 s: the background refresh must
// build each next token 1 to 1.5 minutes (the default
// WithRefreshBeforeExpiry and its jitter) before the current one expires,
// so that no login ever meets an expired token, and must not build more.
func TestTokensAreRebuiltAheadOfEachExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db := newFakeRDS()
		db.verifier.Allow(staticCreds())
		src := &recordingSource{Source: newSource(t,
			aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(testAccessKeyID, testSecretKey, testSession)))}
		c := newConnector(t, db, src)

		start := time.Now()
		errs := connectEvery(c, 10*time.Second, time.Hour)
		synctest.Wait()

		if len(errs) > 0 {
			t.Errorf("%d logins failed in the hour; first: %v", len(errs), errs[0])
		}
		if n := db.rejections.Load(); n != 0 {
			t.Errorf("%d logins were refused (last: %v), want 0: a token expired before its successor was built", n, db.why())
		}
		if n := db.dials.Load(); n < 360 || n > 361 {
			t.Errorf("%d logins in the hour, want 360 (one per 10 s)", n)
		}
		builds := src.tokens()
		// Builds at 0, then every 13.5 to 14 min: at 13.5..14, 27..28,
		// 40.5..42 and 54..56 min, so exactly 5 in the hour. Fewer means a
		// refresh that did not run ahead of the expiry; more, a refresh
		// that ran too early or twice.
		if len(builds) != 5 {
			t.Errorf("%d tokens built in the hour, want 5", len(builds))
		}
		if got := c.Stats().Fetches; got != uint64(len(builds)) {
			t.Errorf("Stats().Fetches = %d, want one per token built (%d)", got, len(builds))
		}
		for i := 1; i < len(builds); i++ {
			gap := builds[i].at.Sub(builds[i-1].at)
			lead := builds[i-1].cred.Expires.Sub(builds[i].at)
			if lead < time.Minute-time.Second || lead > 90*time.Second {
				t.Errorf("token %d was built %v before token %d expired, want 1 to 1.5 min", i+1, lead, i)
			}
			t.Logf("token %d built at %v, %v after the previous one, %v before it expired",
				i+1, builds[i].at.Sub(start).Round(time.Second), gap.Round(time.Second), lead.Round(time.Second))
		}
		t.Logf("one fake hour: %d tokens built, %d logins, %d refused", len(builds), db.dials.Load(), db.rejections.Load())
	})
}

// TestTokenLifeIsCappedByShortAWSCredentials uses AWS credentials that
// live 5 minutes (a short role session): each token must expire with its
// credentials, and the next one must be built, with new credentials,
// before that.
func TestTokenLifeIsCappedByShortAWSCredentials(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db := newFakeRDS()
		issuer := &keyIssuer{life: 5 * time.Minute, verifier: db.verifier}
		src := &recordingSource{Source: newSource(t, aws.NewCredentialsCache(issuer))}
		c := newConnector(t, db, src)

		start := time.Now()
		errs := connectEvery(c, 10*time.Second, time.Hour)
		synctest.Wait()

		builds := src.tokens()
		if len(builds) == 0 {
			t.Fatal("no token was built")
		}
		if got := builds[0].cred.Expires.Sub(start); got != 5*time.Minute {
			t.Errorf("the first token expires after %v, want 5m, with its AWS credentials", got)
		}
		if len(errs) > 0 || db.rejections.Load() > 0 {
			t.Errorf("%d logins failed and %d were refused (last: %v), want none", len(errs), db.rejections.Load(), db.why())
		}
		// Builds every 3.5 to 4 min (the lead of 1 to 1.5 min before the
		// 5-minute expiry): 15 to 18 in the hour.
		if n := len(builds); n < 15 || n > 18 {
			t.Errorf("%d tokens built in the hour, want 15..18", n)
		}
		// Each token after the first is signed with credentials the
		// provider issued for it: one provider call per token, no more.
		if calls := issuer.calls.Load(); calls != int64(len(builds)) {
			t.Errorf("the provider issued %d sets of credentials for %d tokens, want one each", calls, len(builds))
		}
		seen := map[string]bool{}
		for i, b := range builds {
			key := tokenParam(t, b.cred.Password, "X-Amz-Credential")
			if seen[key] {
				t.Errorf("token %d is signed with the same access key as an earlier one", i+1)
			}
			seen[key] = true
			if life := b.cred.Expires.Sub(b.at); life < 5*time.Minute-time.Second || life > 5*time.Minute {
				t.Errorf("token %d lives %v, want 5m (its credentials' life)", i+1, life)
			}
			if i > 0 {
				if lead := builds[i-1].cred.Expires.Sub(b.at); lead < time.Minute-time.Second || lead > 90*time.Second {
					t.Errorf("token %d was built %v before token %d expired, want 1 to 1.5 min", i+1, lead, i)
				}
			}
		}
		t.Logf("5-minute AWS credentials over one fake hour: %d tokens, %d credential sets, %d logins, %d refused",
			len(builds), issuer.calls.Load(), db.dials.Load(), db.rejections.Load())
	})
}

// TestRefusedTokenIsRebuiltOnceForAllCallers revokes the access key the
// current token was signed with (IAM keys rotated by an operator): the
// next logins are refused with 28000, and one new token, signed with the
// provider's new key, serves every caller.
func TestRefusedTokenIsRebuiltOnceForAllCallers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db := newFakeRDS()
		var (
			mu      sync.Mutex
			current = staticCreds()
		)
		db.verifier.Allow(current)
		provider := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			mu.Lock()
			defer mu.Unlock()
			return current, nil
		})
		src := &recordingSource{Source: newSource(t, provider)}
		c := newConnector(t, db, src)
		if conn, err := c.Connect(context.Background()); err != nil {
			t.Fatal(err)
		} else {
			conn.Close()
		}

		// The key is replaced: the old one no longer signs valid tokens.
		mu.Lock()
		current = staticCreds()
		current.AccessKeyID, current.SecretAccessKey = "AKIDROTATINGTEST0002", testSecretKey+"-2"
		mu.Unlock()
		db.verifier.Revoke(testAccessKeyID)
		db.verifier.Allow(current)
		time.Sleep(time.Second) // the next token is signed a second later

		const callers = 16
		var wg sync.WaitGroup
		errs := make(chan error, callers)
		for range callers {
			wg.Go(func() {
				conn, err := c.Connect(context.Background())
				if err == nil {
					conn.Close()
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("a caller failed: %v", err)
			}
		}
		st := c.Stats()
		if n := len(src.tokens()); n != 2 {
			t.Errorf("%d tokens built, want 2: the first, and one for all %d callers after the refusal", n, callers)
		}
		if st.AuthFailures < 1 || st.AuthFailures > callers {
			t.Errorf("Stats().AuthFailures = %d, want 1..%d (28000 counts as a rejection)", st.AuthFailures, callers)
		}
		if !errors.Is(db.why(), rdsauth.ErrUnknownKey) {
			t.Errorf("the refusal was %v, want the unknown (revoked) key", db.why())
		}
		t.Logf("key revoked, %d callers: %d tokens built in all, %d logins refused with 28000", callers, len(src.tokens()), st.AuthFailures)
	})
}

// TestRevokedCredentialsAreRefreshedAfterARefusal revokes the role
// session the cached AWS credentials belong to ("revoke active sessions"):
// the cache would hand them out for another hour, so every new token
// would be refused. Asked for a token long before the current one
// expires, which the connector does only after a refused login, Fetch has
// the cache refresh them: one new set of credentials and one new token
// serve every caller. If the new credentials are refused too, the cache
// is refreshed at most once a minute, not once per store call.
func TestRevokedCredentialsAreRefreshedAfterARefusal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db := newFakeRDS()
		issuer := &keyIssuer{life: time.Hour, verifier: db.verifier}
		src := &recordingSource{Source: newSource(t, aws.NewCredentialsCache(issuer))}
		c := newConnector(t, db, src, rotating.WithRotationWait(20*time.Second))
		connectAll := func(n int) []error {
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := range n {
				wg.Go(func() {
					conn, err := c.Connect(context.Background())
					if err == nil {
						conn.Close()
					}
					errs[i] = err
				})
			}
			wg.Wait()
			return nonNil(errs)
		}
		if errs := connectAll(1); len(errs) > 0 {
			t.Fatal(errs[0])
		}
		time.Sleep(2 * time.Minute)
		db.verifier.Revoke("ASIAROTATINGTEST0001")
		if errs := connectAll(16); len(errs) > 0 {
			t.Fatalf("%d of 16 callers failed after the revocation; first: %v", len(errs), errs[0])
		}
		if n, calls := len(src.tokens()), issuer.calls.Load(); n != 2 || calls != 2 {
			t.Errorf("%d tokens and %d credential sets after the revocation, want 2 and 2", n, calls)
		}

		// From now on IAM refuses every key: the callers give up after the
		// rotation wait, with the database's 28000 inside.
		issuer.refuseNew.Store(true)
		time.Sleep(2 * time.Minute)
		db.verifier.Revoke("ASIAROTATINGTEST0002")
		callsBefore, tokensBefore, start := issuer.calls.Load(), len(src.tokens()), time.Now()
		errs := connectAll(4)
		if len(errs) != 4 {
			t.Fatalf("%d of 4 callers failed with every key refused, want 4", len(errs))
		}
		var authErr *rotating.AuthError
		if !errors.As(errs[0], &authErr) || !strings.Contains(errs[0].Error(), "28000") {
			t.Errorf("the callers' error is %v, want an *rotating.AuthError with 28000", errs[0])
		}
		elapsed := time.Since(start)
		builds := len(src.tokens()) - tokensBefore
		refreshes := issuer.calls.Load() - callsBefore
		if builds < 3 {
			t.Errorf("%d tokens built in the %v the callers waited, want the store re-asked each backoff step", builds, elapsed)
		}
		if max := 1 + int64(elapsed/time.Minute); refreshes < 1 || refreshes > max {
			t.Errorf("the credentials were refreshed %d times in %v of refusals, want 1..%d (at most once a minute)", refreshes, elapsed, max)
		}
		t.Logf("every key refused: %d tokens built and %d credential refreshes in %v", builds, refreshes, elapsed.Round(time.Millisecond))
	})
}

func nonNil(errs []error) []error {
	var out []error
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}
