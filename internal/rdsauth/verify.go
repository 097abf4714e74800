// Package rdsauth stands in for RDS's side of IAM database authentication
// in tests: a [Verifier] that checks a token as RDS does (the endpoint, the
// user, the region, the signing time and lifetime, the AWS credentials'
// expiry and the SigV4 signature, recomputed with the test's own
// credentials), and an [LDAPServer] through which a real PostgreSQL server
// asks the Verifier about each login (pg_hba.conf's ldap method), so that
// a refused token gets SQLSTATE 28000 from PostgreSQL itself, as from RDS,
// and any number of tokens are valid at once, each until its own expiry.
//
// Nothing here talks to AWS: tokens are built locally by
// auth.BuildAuthToken and checked locally.
package rdsauth

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Why a token was refused. Check's errors wrap one of these and never
// contain the token.
var (
	ErrMalformed          = errors.New("rdsauth: not an RDS IAM token")
	ErrWrongTarget        = errors.New("rdsauth: token is for another endpoint, user or region")
	ErrExpired            = errors.New("rdsauth: token expired")
	ErrNotYetValid        = errors.New("rdsauth: token signed in the future")
	ErrUnknownKey         = errors.New("rdsauth: token signed with an unknown access key")
	ErrCredentialsExpired = errors.New("rdsauth: token signed with expired AWS credentials")
	ErrBadSignature       = errors.New("rdsauth: token signature does not match")
)

// maxLifetime is the longest X-Amz-Expires RDS honours.
const maxLifetime = 15 * time.Minute

// clockSkew is how far in the future a signing time may be.
const clockSkew = 5 * time.Minute

// Verifier checks tokens for one endpoint and region, signed with the
// AWS credentials it was told to accept. It is safe for concurrent use.
type Verifier struct {
	endpoint, region string

	mu       sync.Mutex
	creds    map[string]aws.Credentials // by access key id
	lifetime time.Duration              // see SetLifetime

	accepted, refused atomic.Int64
}

// NewVerifier returns a Verifier for tokens built for endpoint ("host:port")
// in region.
func NewVerifier(endpoint, region string) *Verifier {
	return &Verifier{endpoint: endpoint, region: region, creds: map[string]aws.Credentials{}, lifetime: maxLifetime}
}

// SetLifetime makes the Verifier accept a token for at most d after its
// signing time instead of RDS's 15 minutes, so that a test can see tokens
// expire in seconds. Pair it with a source whose Expires is shortened the
// same way.
func (v *Verifier) SetLifetime(d time.Duration) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.lifetime = d
}

// Allow makes the Verifier accept tokens signed with c (until c.Expires,
// if c.CanExpire), as IAM accepts a user's or a role session's keys.
func (v *Verifier) Allow(c aws.Credentials) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.creds[c.AccessKeyID] = c
}

// Revoke makes the Verifier refuse tokens signed with the access key
// accessKeyID from now on, as IAM does once a key is deactivated.
func (v *Verifier) Revoke(accessKeyID string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.creds, accessKeyID)
}

// Check reports whether RDS would let user log in with token now: nil, or
// an error wrapping one of this package's sentinels.
func (v *Verifier) Check(user, token string) error {
	return v.CheckAt(user, token, time.Now())
}

// CheckAt is Check at the time now.
func (v *Verifier) CheckAt(user, token string, now time.Time) error {
	err := v.check(user, token, now)
	if err != nil {
		v.refused.Add(1)
	} else {
		v.accepted.Add(1)
	}
	return err
}

// Accepted counts the tokens Check accepted.
func (v *Verifier) Accepted() int64 { return v.accepted.Load() }

// Refused counts the tokens Check refused.
func (v *Verifier) Refused() int64 { return v.refused.Load() }

func (v *Verifier) check(user, token string, now time.Time) error {
	target, query, ok := strings.Cut(token, "?")
	if !ok {
		return fmt.Errorf("%w: no query", ErrMalformed)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return fmt.Errorf("%w: the query does not parse", ErrMalformed)
	}
	for _, k := range []string{"Action", "DBUser", "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature"} {
		if len(q[k]) != 1 {
			return fmt.Errorf("%w: %s missing or repeated", ErrMalformed, k)
		}
	}
	if q.Get("Action") != "connect" || q.Get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256" || q.Get("X-Amz-SignedHeaders") != "host" {
		return fmt.Errorf("%w: not a SigV4 presigned connect request", ErrMalformed)
	}
	// X-Amz-Credential is AKID/yyyymmdd/region/rds-db/aws4_request.
	scope := strings.Split(q.Get("X-Amz-Credential"), "/")
	if len(scope) != 5 || scope[3] != "rds-db" || scope[4] != "aws4_request" {
		return fmt.Errorf("%w: X-Amz-Credential is not an rds-db scope", ErrMalformed)
	}
	switch {
	case target != v.endpoint:
		return fmt.Errorf("%w: endpoint %s, want %s", ErrWrongTarget, target, v.endpoint)
	case q.Get("DBUser") != user:
		return fmt.Errorf("%w: DBUser %q, logging in as %q", ErrWrongTarget, q.Get("DBUser"), user)
	case scope[2] != v.region:
		return fmt.Errorf("%w: region %s, want %s", ErrWrongTarget, scope[2], v.region)
	}
	signed, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	if err != nil || scope[1] != signed.Format("20060102") {
		return fmt.Errorf("%w: X-Amz-Date", ErrMalformed)
	}
	secs, err := strconv.Atoi(q.Get("X-Amz-Expires"))
	if err != nil || secs < 1 || time.Duration(secs)*time.Second > maxLifetime {
		return fmt.Errorf("%w: X-Amz-Expires must be 1 to 900", ErrMalformed)
	}
	v.mu.Lock()
	life := min(time.Duration(secs)*time.Second, v.lifetime)
	v.mu.Unlock()
	if expiry := signed.Add(life); !now.Before(expiry) {
		return fmt.Errorf("%w: at %s, %v ago", ErrExpired, expiry.Format(time.RFC3339), now.Sub(expiry).Round(time.Millisecond))
	}
	if signed.After(now.Add(clockSkew)) {
		return fmt.Errorf("%w: at %s", ErrNotYetValid, signed.Format(time.RFC3339))
	}

	v.mu.Lock()
	creds, known := v.creds[scope[0]]
	v.mu.Unlock()
	if !known {
		return ErrUnknownKey
	}
	if creds.CanExpire && !now.Before(creds.Expires) {
		return fmt.Errorf("%w: at %s", ErrCredentialsExpired, creds.Expires.Format(time.RFC3339))
	}
	if got := q.Get("X-Amz-Security-Token"); got != creds.SessionToken {
		return fmt.Errorf("%w: the session token differs", ErrBadSignature)
	}
	want, err := signature(v.endpoint, v.region, user, secs, signed, creds)
	if err != nil {
		return err
	}
	if !hmac.Equal([]byte(q.Get("X-Amz-Signature")), []byte(want)) {
		return ErrBadSignature
	}
	return nil
}

// emptyPayloadHash is SHA-256 of nothing, as BuildAuthToken signs.
const emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// signature recomputes the token's SigV4 signature: the presigned
// GET https://endpoint/?Action=connect&DBUser=user&X-Amz-Expires=secs of
// service rds-db, signed at signed with creds.
func signature(endpoint, region, user string, secs int, signed time.Time, creds aws.Credentials) (string, error) {
	req, err := http.NewRequest(http.MethodGet, "https://"+endpoint, nil)
	if err != nil {
		return "", fmt.Errorf("rdsauth: %w", err)
	}
	q := url.Values{"Action": {"connect"}, "DBUser": {user}, "X-Amz-Expires": {strconv.Itoa(secs)}}
	req.URL.RawQuery = q.Encode()
	presigned, _, err := v4.NewSigner().PresignHTTP(context.Background(), creds, req, emptyPayloadHash, "rds-db", region, signed)
	if err != nil {
		return "", fmt.Errorf("rdsauth: signing: %w", err)
	}
	u, err := url.Parse(presigned)
	if err != nil {
		return "", fmt.Errorf("rdsauth: %w", err)
	}
	return u.Query().Get("X-Amz-Signature"), nil
}
