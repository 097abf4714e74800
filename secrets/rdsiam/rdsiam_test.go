package rdsiam_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"

	"github.com/pgrotate/rotating/internal/rdsauth"
	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/rdsiam"
)

func TestFetchBuildsAValidToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now() // 2000-01-01T00:00:00Z in the bubble
		v := rdsauth.NewVerifier(testEndpoint(), testRegion)
		v.Allow(staticCreds())
		src := newSource(t, credentials.NewStaticCredentialsProvider(testAccessKeyID, testSecretKey, testSession))

		time.Sleep(1500 * time.Millisecond) // X-Amz-Date has whole seconds
		cred, err := src.Fetch(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		signed := start.Add(time.Second)
		want := secrets.Credential{Username: testUser, Host: testHost, Port: testPort,
			Version: "2000-01-01T00:00:01Z", Expires: signed.Add(rdsiam.TokenLifetime)}
		if cred.Username != want.Username || cred.Host != want.Host || cred.Port != want.Port ||
			cred.Version != want.Version || !cred.Expires.Equal(want.Expires) {
			t.Errorf("Fetch = %v, want %v", cred, want)
		}
		if !cred.SessionsEnd.IsZero() {
			t.Error("SessionsEnd is set: sessions outlive their token")
		}
		if err := cred.Validate(); err != nil {
			t.Errorf("the credential does not validate: %v", err)
		}
		// The token is what RDS accepts, until and only until Expires.
		if err := v.Check(testUser, cred.Password); err != nil {
			t.Errorf("the token is refused: %v", err)
		}
		if err := v.CheckAt(testUser, cred.Password, cred.Expires.Add(-time.Nanosecond)); err != nil {
			t.Errorf("the token is refused just before Expires: %v", err)
		}
		if err := v.CheckAt(testUser, cred.Password, cred.Expires); !errors.Is(err, rdsauth.ErrExpired) {
			t.Errorf("the token at Expires: %v, want it expired", err)
		}
		if !strings.HasPrefix(cred.Password, testEndpoint()+"?Action=connect&") {
			t.Error("the token does not start with host:port?Action=connect&")
		}
		for _, c := range "?&=%" {
			if !strings.ContainsRune(cred.Password, c) {
				t.Errorf("the token has no %q: not the shape the DSN tests assume", c)
			}
		}
		// A second token a second later is a new credential.
		time.Sleep(time.Second)
		next, err := src.Fetch(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if next.SameLogin(cred) || next.Version == cred.Version {
			t.Error("two tokens signed a second apart are the same credential")
		}
	})
}

func TestExpiresIsCappedByTheAWSCredentials(t *testing.T) {
	for _, tc := range []struct {
		name     string
		credLife time.Duration
		want     time.Duration
	}{
		{"credentials expire in 5 min", 5 * time.Minute, 5 * time.Minute},
		{"credentials expire in 14m59s", 14*time.Minute + 59*time.Second, 14*time.Minute + 59*time.Second},
		{"credentials expire in 15 min", 15 * time.Minute, 15 * time.Minute},
		{"credentials expire in an hour", time.Hour, rdsiam.TokenLifetime},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				issuer := &keyIssuer{life: tc.credLife}
				src := newSource(t, aws.NewCredentialsCache(issuer))
				cred, err := src.Fetch(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if got := time.Until(cred.Expires); got != tc.want {
					t.Errorf("Expires in %v, want %v", got, tc.want)
				}
			})
		})
	}
}

// TestSpentCredentialsAreRefreshedOnce checks that a token is not built
// from AWS credentials that already cut the previous token short (it
// could only be as short-lived), and that fresh credentials are not
// refreshed needlessly.
func TestSpentCredentialsAreRefreshedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		issuer := &keyIssuer{life: 5 * time.Minute}
		src := newSource(t, aws.NewCredentialsCache(issuer))
		first, err := src.Fetch(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(4 * time.Minute)
		second, err := src.Fetch(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if n := issuer.calls.Load(); n != 2 {
			t.Errorf("the provider was called %d times, want 2: the credentials that capped the first token must be refreshed", n)
		}
		if got := time.Until(second.Expires); got != 5*time.Minute {
			t.Errorf("the second token expires in %v, want 5m (new credentials)", got)
		}
		if a, b := tokenParam(t, first.Password, "X-Amz-Credential"), tokenParam(t, second.Password, "X-Amz-Credential"); a == b {
			t.Error("the second token is signed with the first token's access key")
		}

		// Credentials that outlive the token are used as they are.
		long := &keyIssuer{life: 6 * time.Hour}
		src = newSource(t, aws.NewCredentialsCache(long))
		for range 3 {
			if _, err := src.Fetch(t.Context()); err != nil {
				t.Fatal(err)
			}
			time.Sleep(14 * time.Minute)
		}
		if n := long.calls.Load(); n != 1 {
			t.Errorf("the provider of 6-hour credentials was called %d times for 3 tokens, want 1", n)
		}
	})
}

func TestFetchErrors(t *testing.T) {
	stsDown := errors.New("sts: service unavailable")
	for _, tc := range []struct {
		name     string
		provider aws.CredentialsProvider
		want     error
		op       string
	}{
		{"provider fails", aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{}, stsDown
		})), stsDown, rdsiam.OpRetrieveCredentials},
		{"anonymous credentials", aws.AnonymousCredentials{}, nil, rdsiam.OpRetrieveCredentials},
		{"empty static credentials", credentials.NewStaticCredentialsProvider("", "", ""), nil, rdsiam.OpRetrieveCredentials},
		{"no secret key", aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: testAccessKeyID}, nil
		}), rdsiam.ErrNoAccessKey, rdsiam.OpRetrieveCredentials},
		{"expired credentials", aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			c := staticCreds()
			c.CanExpire, c.Expires = true, time.Now().Add(-time.Second)
			return c, nil
		}), rdsiam.ErrCredentialsExpired, rdsiam.OpRetrieveCredentials},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			src := newSource(t, tc.provider, rdsiam.WithLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
			_, err := src.Fetch(t.Context())
			var e *rdsiam.Error
			if !errors.As(err, &e) || tc.want != nil && !errors.Is(err, tc.want) || e.Err == nil {
				t.Fatalf("Fetch = %v, want an *rdsiam.Error wrapping %v", err, tc.want)
			}
			if e.Op != tc.op || e.User != testUser || e.Endpoint != testEndpoint() || e.Region != testRegion {
				t.Errorf("Error = %+v, want op %s for %s at %s in %s", e, tc.op, testUser, testEndpoint(), testRegion)
			}
			msg := err.Error()
			for _, w := range []string{`user "` + testUser + `"`, testEndpoint(), testRegion, tc.op} {
				if !strings.Contains(msg, w) {
					t.Errorf("the error %q does not name %q", msg, w)
				}
			}
			if !strings.Contains(logs.String(), "building auth token failed") {
				t.Errorf("the failure was not logged: %s", logs.String())
			}
			assertNoSecret(t, "the error and the log", msg+fmt.Sprintf("%+v %#v", err, err)+logs.String(), testSecretKey, testSession)
		})
	}

	t.Run("context", func(t *testing.T) {
		blocking := aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(ctx context.Context) (aws.Credentials, error) {
			<-ctx.Done()
			return aws.Credentials{}, ctx.Err()
		}))
		src := newSource(t, blocking)
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := src.Fetch(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Fetch with a provider that waits for its context = %v, want context.DeadlineExceeded", err)
		}
	})
}

// TestCredentialProcessOutputIsWithheld runs the SDK's real
// credential_process provider, through NewFromConfig and a shared config
// file, with a process whose output is truncated JSON: the SDK quotes the
// whole output, secret access key included, in its error.
func TestCredentialProcessOutputIsWithheld(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "creds.sh")
	out := fmt.Sprintf(`{"Version": 1, "AccessKeyId": %q, "SecretAccessKey": %q, "SessionToken": %q`, testAccessKeyID, testSecretKey, testSession)
	if err := os.WriteFile(script, []byte("#!/bin/sh\ncat <<'EOF'\n"+out+"\nEOF\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "config")
	if err := os.WriteFile(cfgFile, []byte("[profile broken]\nregion = eu-west-1\ncredential_process = "+script+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	isolateAWSEnv(t)
	t.Setenv("AWS_CONFIG_FILE", cfgFile)
	t.Setenv("AWS_PROFILE", "broken")

	// The SDK's own error holds the secret: this is what is redacted.
	raw := processcreds.NewProvider(script)
	if _, err := raw.Retrieve(t.Context()); err == nil || !strings.Contains(err.Error(), testSecretKey) {
		t.Fatalf("the SDK's credential_process error no longer quotes the output (%v); the redaction may be moot", err != nil)
	}

	src, err := rdsiam.NewFromConfig(t.Context(), rdsiam.DB{Host: testHost, User: testUser})
	if err != nil {
		t.Fatal(err)
	}
	if got := src.DB(); got.Region != "eu-west-1" || got.Port != 5432 {
		t.Errorf("DB() = %+v, want the profile's region eu-west-1 and port 5432", got)
	}
	_, err = src.Fetch(t.Context())
	var pe *processcreds.ProviderError
	if !errors.As(err, &pe) {
		t.Fatalf("Fetch = %v, want a *processcreds.ProviderError in the chain", err)
	}
	if !strings.Contains(err.Error(), "output is withheld") || !strings.Contains(err.Error(), "failed to refresh cached credentials") {
		t.Errorf("the error %q does not say the output was withheld, or lost the cache's context", err)
	}
	assertNoSecret(t, "the error", fmt.Sprintf("%v %+v", err, err), testSecretKey, testSession)
}

// TestNewFromConfig signs with the credentials and the region of the
// environment, as an application on a laptop or in CI would.
func TestNewFromConfig(t *testing.T) {
	isolateAWSEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", testAccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testSecretKey)
	t.Setenv("AWS_SESSION_TOKEN", testSession)
	t.Setenv("AWS_REGION", testRegion)
	v := rdsauth.NewVerifier(testEndpoint(), testRegion)
	v.Allow(staticCreds())

	var logs bytes.Buffer
	src, err := rdsiam.NewFromConfig(t.Context(), rdsiam.DB{Host: testHost, User: testUser},
		rdsiam.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err != nil {
		t.Fatal(err)
	}
	cred, err := src.Fetch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Check(testUser, cred.Password); err != nil {
		t.Errorf("the token is refused: %v", err)
	}
	if got := src.Describe(); got != "rds-iam "+testUser+"@"+testEndpoint()+" "+testRegion {
		t.Errorf("Describe = %q", got)
	}
	for _, w := range []string{"built auth token", "version=" + cred.Version, "expiry_bound_by=\"token lifetime\"", "credentials_source=EnvConfigCredentials"} {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("the log lacks %q:\n%s", w, logs.String())
		}
	}
	formatted := fmt.Sprintf("%v %+v %#v %s %q %x", src, src, src, src, src, src) + fmt.Sprintf("%+v %#v", cred, cred)
	assertNoSecret(t, "the log and the formatted source and credential", logs.String()+formatted,
		testSecretKey, testSession, testAccessKeyID, cred.Password)

	// A region given in DB wins over the environment's.
	other, err := rdsiam.NewFromConfig(t.Context(), rdsiam.DB{Host: testHost, User: testUser, Region: "eu-central-1"})
	if err != nil {
		t.Fatal(err)
	}
	if other.DB().Region != "eu-central-1" {
		t.Errorf("region %q, want eu-central-1", other.DB().Region)
	}
	// WithLoadOptions reaches LoadDefaultConfig.
	withOpt, err := rdsiam.NewFromConfig(t.Context(), rdsiam.DB{Host: testHost, User: testUser},
		rdsiam.WithLoadOptions(config.WithRegion("ap-south-1")))
	if err != nil {
		t.Fatal(err)
	}
	if withOpt.DB().Region != "ap-south-1" {
		t.Errorf("region %q, want ap-south-1 from WithLoadOptions", withOpt.DB().Region)
	}
}

// isolateAWSEnv keeps the machine's own AWS configuration out of a test.
func isolateAWSEnv(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

func TestNewRefusesWhatCannotMakeAToken(t *testing.T) {
	static := credentials.NewStaticCredentialsProvider(testAccessKeyID, testSecretKey, "")
	for _, tc := range []struct {
		name string
		cfg  aws.Config
		db   rdsiam.DB
		want string
	}{
		{"no host", aws.Config{Credentials: static}, rdsiam.DB{User: "u", Region: "r"}, "empty host"},
		{"socket", aws.Config{Credentials: static}, rdsiam.DB{Host: "/var/run/postgresql", User: "u", Region: "r"}, "unix socket"},
		{"host list", aws.Config{Credentials: static}, rdsiam.DB{Host: "a,b", User: "u", Region: "r"}, "not one host"},
		{"host with a space", aws.Config{Credentials: static}, rdsiam.DB{Host: "a b", User: "u", Region: "r"}, "not one host"},
		{"port", aws.Config{Credentials: static}, rdsiam.DB{Host: "h", Port: 70000, User: "u", Region: "r"}, "out of range"},
		{"no user", aws.Config{Credentials: static}, rdsiam.DB{Host: "h", Region: "r"}, "empty database user"},
		{"NUL in user", aws.Config{Credentials: static}, rdsiam.DB{Host: "h", User: "a\x00b", Region: "r"}, "control character"},
		{"no region", aws.Config{Credentials: static}, rdsiam.DB{Host: "h", User: "u"}, "no AWS region"},
		{"bad region", aws.Config{Credentials: static}, rdsiam.DB{Host: "h", User: "u", Region: "US East"}, "not an AWS region"},
		{"no credentials", aws.Config{}, rdsiam.DB{Host: "h", User: "u", Region: "r"}, "no credentials provider"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rdsiam.New(tc.cfg, tc.db)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New = %v, want an error saying %q", err, tc.want)
			}
		})
	}
	if _, err := rdsiam.New(aws.Config{Credentials: static, Region: "r"}, rdsiam.DB{Host: "h", User: "u"}, rdsiam.WithLogger(nil)); !errors.Is(err, rdsiam.ErrInvalidOption) {
		t.Errorf("WithLogger(nil): %v, want ErrInvalidOption", err)
	}
	src, err := rdsiam.New(aws.Config{Credentials: static, Region: "us-west-2"}, rdsiam.DB{Host: "[::1]", User: "u"})
	if err != nil {
		t.Fatal(err)
	}
	if got := src.Describe(); got != "rds-iam u@[::1]:5432 us-west-2" {
		t.Errorf("an IPv6 host: Describe = %q", got)
	}
}
