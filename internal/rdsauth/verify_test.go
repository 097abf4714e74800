package rdsauth_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/rds/auth"

	"github.com/pgrotate/rotating/internal/rdsauth"
)

const (
	endpoint = "db.abc.us-east-1.rds.amazonaws.com:5432"
	region   = "us-east-1"
	user     = "app"
)

var (
	keys      = aws.Credentials{AccessKeyID: "AKIDRDSAUTHTEST", SecretAccessKey: "rdsauth-secret", SessionToken: strings.Repeat("session/token+", 60)}
	otherKeys = aws.Credentials{AccessKeyID: "AKIDRDSAUTHOTHER", SecretAccessKey: "other-secret"}
)

// token builds a token with the SDK, as the rdsiam source does.
func token(t *testing.T, endpoint, region, user string, c aws.Credentials) string {
	t.Helper()
	tok, err := auth.BuildAuthToken(context.Background(), endpoint, region, user,
		credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tokenAt is what BuildAuthToken would have built at signed: the same
// presigned request, signed at another time.
func tokenAt(t *testing.T, endpoint, user string, c aws.Credentials, signed time.Time) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "https://"+endpoint, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.RawQuery = url.Values{"Action": {"connect"}, "DBUser": {user}, "X-Amz-Expires": {"900"}}.Encode()
	u, _, err := v4.NewSigner().PresignHTTP(context.Background(), c, req,
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "rds-db", region, signed)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u, "https://")
}

func TestVerifier(t *testing.T) {
	v := rdsauth.NewVerifier(endpoint, region)
	v.Allow(keys)
	expiring := aws.Credentials{AccessKeyID: "ASIAEXPIRING", SecretAccessKey: "s", SessionToken: "t", CanExpire: true, Expires: time.Now().Add(time.Minute)}
	v.Allow(expiring)
	good := token(t, endpoint, region, user, keys)
	if err := v.Check(user, good); err != nil {
		t.Fatalf("a token from BuildAuthToken is refused: %v", err)
	}
	now := time.Now()
	tampered := []byte(good)
	tampered[len(tampered)-1] ^= 1 // the signature's last hex digit
	for _, tc := range []struct {
		name, user, token string
		at                time.Time
		want              error
	}{
		{"expired", user, good, now.Add(15*time.Minute + time.Second), rdsauth.ErrExpired},
		{"signed in the future", user, tokenAt(t, endpoint, user, keys, now.Add(10*time.Minute)), now, rdsauth.ErrNotYetValid},
		{"signed 14 min ago", user, tokenAt(t, endpoint, user, keys, now.Add(-14*time.Minute)), now, nil},
		{"signed 16 min ago", user, tokenAt(t, endpoint, user, keys, now.Add(-16*time.Minute)), now, rdsauth.ErrExpired},
		{"another endpoint", user, token(t, "other.host:5432", region, user, keys), now, rdsauth.ErrWrongTarget},
		{"another port", user, token(t, "db.abc.us-east-1.rds.amazonaws.com:5433", region, user, keys), now, rdsauth.ErrWrongTarget},
		{"another user", "admin", good, now, rdsauth.ErrWrongTarget},
		{"another region", user, token(t, endpoint, "eu-west-1", user, keys), now, rdsauth.ErrWrongTarget},
		{"unknown key", user, token(t, endpoint, region, user, otherKeys), now, rdsauth.ErrUnknownKey},
		{"tampered signature", user, string(tampered), now, rdsauth.ErrBadSignature},
		{"DBUser changed", "admin", strings.Replace(good, "DBUser=app", "DBUser=admin", 1), now, rdsauth.ErrBadSignature},
		{"expired credentials", user, token(t, endpoint, region, user, expiring), now.Add(2 * time.Minute), rdsauth.ErrCredentialsExpired},
		{"a password", user, "hunter2", now, rdsauth.ErrMalformed},
		{"garbage query", user, endpoint + "?%zz", now, rdsauth.ErrMalformed},
		{"no signature", user, good[:strings.Index(good, "&X-Amz-Signature")], now, rdsauth.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := v.CheckAt(tc.user, tc.token, tc.at)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("CheckAt = %v, want %v", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "X-Amz-Signature=") {
				t.Error("the error quotes the token")
			}
		})
	}
	v.Revoke(keys.AccessKeyID)
	if err := v.Check(user, good); !errors.Is(err, rdsauth.ErrUnknownKey) {
		t.Errorf("a token of a revoked key: %v, want ErrUnknownKey", err)
	}
	if v.Accepted() != 2 || v.Refused() != 15 {
		t.Errorf("Accepted, Refused = %d, %d; want 2, 15", v.Accepted(), v.Refused())
	}
}
