package awssm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/smithy-go"

	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/awssm"
	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
)

// start returns a started server that the test closes and an SDK client
// for it.
func start(t *testing.T) (*awssmtest.Server, *secretsmanager.Client) {
	t.Helper()
	srv := awssmtest.NewServer().Start()
	t.Cleanup(srv.Close)
	return srv, srv.Client(t.Context(), noBackoff)
}

// noBackoff keeps the SDK's standard retryer (3 attempts, the standard
// retryable and throttling errors) but retries at once and without a retry
// quota, so that fault tests are fast and independent. What is retried is
// still decided by the SDK.
func noBackoff(o *secretsmanager.Options) {
	o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
		so.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
		so.RateLimiter = ratelimit.None
	})
}

func newSource(t *testing.T, client awssm.API, id string, opts ...awssm.Option) *awssm.Source {
	t.Helper()
	src, err := awssm.New(client, id, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// wantCalls fails the test unless the server saw exactly current
// GetSecretValue calls for AWSCURRENT and pending for AWSPENDING, and no
// other call at all.
func wantCalls(t *testing.T, srv *awssmtest.Server, current, pending int64) {
	t.Helper()
	gotCur, gotPend := srv.CallsByStage(awssm.StageCurrent), srv.CallsByStage(awssm.StagePending)
	if gotCur != current || gotPend != pending {
		t.Errorf("GetSecretValue calls: AWSCURRENT %d, AWSPENDING %d; want %d and %d", gotCur, gotPend, current, pending)
	}
	if got, want := srv.TotalCalls(), current+pending; got != want {
		t.Errorf("total calls = %d, want %d (only GetSecretValue)", got, want)
	}
}

// wantNoSecret fails the test if s contains any of the secret values.
func wantNoSecret(t *testing.T, what, s string, values ...string) {
	t.Helper()
	for _, v := range values {
		if v != "" && strings.Contains(s, v) {
			t.Errorf("%s contains the secret value %q: %s", what, v, s)
		}
	}
}

func wantAs[E error](t *testing.T, err error) E {
	t.Helper()
	var target E
	if !errors.As(err, &target) {
		t.Fatalf("errors.As(%v, %T) = false", err, target)
	}
	return target
}

func TestFetch(t *testing.T) {
	tests := []struct {
		name   string
		value  string
		binary bool
		opts   []awssm.Option
		want   secrets.Credential
	}{
		{
			name:  "RDS JSON, port as a number",
			value: `{"engine":"postgres","host":"db.example.com","username":"app","password":"p@ss:w0rd","dbname":"appdb","port":5432,"masterarn":"arn:aws:secretsmanager:us-east-1:123456789012:secret:master-AbCdEf"}`,
			want:  secrets.Credential{Username: "app", Password: "p@ss:w0rd", Host: "db.example.com", Port: 5432, Database: "appdb"},
		},
		{
			name:  "RDS JSON, port as a string",
			value: `{"engine":"postgres","host":"db.example.com","username":"app","password":"pw","dbname":"appdb","port":"6432"}`,
			want:  secrets.Credential{Username: "app", Password: "pw", Host: "db.example.com", Port: 6432, Database: "appdb"},
		},
		{
			name:  "RDS JSON, only username and password",
			value: `{"username":"app","password":"pw"}`,
			want:  secrets.Credential{Username: "app", Password: "pw"},
		},
		{
			name:  "custom keys",
			value: `{"user":"svc","pass":"pw","server":"h","dbport":5433,"database":"d","username":"ignored"}`,
			opts:  []awssm.Option{awssm.WithKeys(secrets.Keys{Username: "user", Password: "pass", Host: "server", Port: "dbport", Database: "database"})},
			want:  secrets.Credential{Username: "svc", Password: "pw", Host: "h", Port: 5433, Database: "d"},
		},
		{
			name:  "custom password key only",
			value: `{"username":"app","db_password":"pw"}`,
			opts:  []awssm.Option{awssm.WithKeys(secrets.Keys{Password: "db_password"})},
			want:  secrets.Credential{Username: "app", Password: "pw"},
		},
		{
			name:  "plain string is the password",
			value: `plain-Secret_1`,
			want:  secrets.Credential{Password: "plain-Secret_1"},
		},
		{
			name:  "plain string with one trailing newline",
			value: "plain-Secret_1\n",
			want:  secrets.Credential{Password: "plain-Secret_1"},
		},
		{
			name:   "SecretBinary holding RDS JSON",
			value:  `{"username":"bin","password":"binpw","port":5432}`,
			binary: true,
			want:   secrets.Credential{Username: "bin", Password: "binpw", Port: 5432},
		},
		{
			name:   "SecretBinary holding a plain password",
			value:  "binary-plain",
			binary: true,
			want:   secrets.Credential{Password: "binary-plain"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, client := start(t)
			in := &secretsmanager.CreateSecretInput{Name: aws.String("prod/app/db")}
			if tt.binary {
				in.SecretBinary = []byte(tt.value)
			} else {
				in.SecretString = aws.String(tt.value)
			}
			created, err := client.CreateSecret(t.Context(), in)
			if err != nil {
				t.Fatal(err)
			}
			srv.ResetCalls()

			src := newSource(t, client, "prod/app/db", tt.opts...)
			got, err := src.Fetch(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			want.Version = aws.ToString(created.VersionId)
			if want.Version == "" || got != want {
				t.Errorf("Fetch = %#v, want %#v", got, want)
			}
			if got.Password != tt.want.Password {
				t.Errorf("password differs") // %#v redacts it
			}
			wantCalls(t, srv, 1, 0)
		})
	}
}

func TestFetchByARN(t *testing.T) {
	srv, client := start(t)
	arn, version := srv.CreateSecret("prod/app/db", `{"username":"app","password":"pw"}`)
	got, err := newSource(t, client, arn).Fetch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got.Username != "app" || got.Version != version {
		t.Errorf("Fetch = %v, want app at version %s", got, version)
	}
}

// TestFetchFollowsAWSCURRENT checks that every Fetch reads the store anew:
// the source caches nothing.
func TestFetchFollowsAWSCURRENT(t *testing.T) {
	srv, client := start(t)
	_, v1 := srv.CreateSecret("db", `{"username":"app","password":"p1"}`)
	src := newSource(t, client, "db")
	first, err := src.Fetch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	v2 := srv.PutValue("db", `{"username":"app","password":"p2"}`)
	second, err := src.Fetch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if first.Version != v1 || first.Password != "p1" || second.Version != v2 || second.Password != "p2" {
		t.Errorf("Fetch, Fetch = %v, %v; want versions %s then %s", first, second, v1, v2)
	}
	wantCalls(t, srv, 2, 0)
}

func TestFetchMalformed(t *testing.T) {
	const secretID = "prod/app/db"
	tests := []struct {
		name     string
		value    string
		binary   bool
		opts     []awssm.Option
		wantIs   error
		wantText string   // a part of the message that names the problem
		values   []string // secret values that must not appear
	}{
		{
			name:     "missing password",
			value:    `{"username":"app","pasword":"Typo-Secret-1"}`,
			wantIs:   secrets.ErrEmptyPassword,
			wantText: `field "password" is missing`,
			values:   []string{"Typo-Secret-1"},
		},
		{
			name:     "missing custom password key",
			value:    `{"username":"app","password":"Wrong-Key-Secret"}`,
			opts:     []awssm.Option{awssm.WithKeys(secrets.Keys{Password: "pw"})},
			wantIs:   secrets.ErrEmptyPassword,
			wantText: `field "pw" is missing`,
			values:   []string{"Wrong-Key-Secret"},
		},
		{
			name:     "empty password",
			value:    `{"username":"app","password":""}`,
			wantIs:   secrets.ErrEmptyPassword,
			wantText: `field "password" is empty`,
		},
		{
			name:     "malformed JSON",
			value:    `{"username":"app","password":"Broken-Secret-2",}`,
			wantIs:   secrets.ErrMalformed,
			wantText: "invalid JSON",
			values:   []string{"Broken-Secret-2"},
		},
		{
			name:     "truncated JSON",
			value:    `{"username":"app","password":"Cut-Secret-3`,
			wantIs:   secrets.ErrMalformed,
			wantText: "invalid JSON",
			values:   []string{"Cut-Secret-3"},
		},
		{
			name:     "password of the wrong type",
			value:    `{"username":"app","password":123456789}`,
			wantIs:   secrets.ErrMalformed,
			wantText: `field "password" is a number`,
			values:   []string{"123456789"},
		},
		{
			name:     "port out of range",
			value:    `{"username":"app","password":"Port-Secret-4","port":99999}`,
			wantIs:   secrets.ErrMalformed,
			wantText: `field "port"`,
			values:   []string{"Port-Secret-4"},
		},
		{
			name:     "port not a number",
			value:    `{"username":"app","password":"Port-Secret-5","port":"fivefourthreetwo"}`,
			wantIs:   secrets.ErrMalformed,
			wantText: `field "port"`,
			values:   []string{"Port-Secret-5", "fivefourthreetwo"},
		},
		{
			name:     "empty secret string",
			value:    "",
			wantIs:   secrets.ErrEmptyPassword,
			wantText: "is empty",
		},
		{
			name:     "whitespace secret string",
			value:    " \n",
			wantIs:   secrets.ErrEmptyPassword,
			wantText: "is empty",
		},
		{
			name:     "plain secret with two lines",
			value:    "app\nTwo-Line-Secret-6\n",
			wantIs:   secrets.ErrMalformed,
			wantText: "line break",
			values:   []string{"Two-Line-Secret-6"},
		},
		{
			name:     "binary secret that is not UTF-8",
			value:    "\xff\xfeBinary-Secret-7",
			binary:   true,
			wantIs:   secrets.ErrMalformed,
			wantText: "UTF-8",
			values:   []string{"Binary-Secret-7"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, client := start(t)
			in := &secretsmanager.CreateSecretInput{Name: aws.String(secretID)}
			if tt.binary {
				in.SecretBinary = []byte(tt.value)
			} else {
				in.SecretString = aws.String(tt.value)
			}
			created, err := client.CreateSecret(t.Context(), in)
			if err != nil {
				t.Fatal(err)
			}
			srv.ResetCalls()

			got, err := newSource(t, client, secretID, tt.opts...).Fetch(t.Context())
			if err == nil {
				t.Fatalf("Fetch = %v, want an error", got)
			}
			if got != (secrets.Credential{}) {
				t.Errorf("Fetch returned %v with its error, want the zero Credential", got)
			}
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("Fetch error %q does not wrap %v", err, tt.wantIs)
			}
			e := wantAs[*awssm.Error](t, err)
			version := aws.ToString(created.VersionId)
			if e.SecretID != secretID || e.Op != awssm.OpFetch || e.Stage != awssm.StageCurrent || e.VersionID != version {
				t.Errorf("Error = %+v, want secret %s, op Fetch, stage AWSCURRENT, version %s", *e, secretID, version)
			}
			msg := err.Error()
			for _, part := range []string{`"` + secretID + `"`, tt.wantText, version} {
				if !strings.Contains(msg, part) {
					t.Errorf("error %q does not contain %q", msg, part)
				}
			}
			wantNoSecret(t, "error", msg, tt.values...)
			wantNoSecret(t, "error %+v", fmt.Sprintf("%+v", err), tt.values...)
			wantNoSecret(t, "error %#v", fmt.Sprintf("%#v", err), tt.values...)
			wantCalls(t, srv, 1, 0)
		})
	}
}

// TestFetchRefusesNUL checks that a secret with a NUL byte in a login field,
// in SecretString or SecretBinary, as RDS JSON or as a plain password, is
// refused by Fetch and FetchPending with an error wrapping ErrMalformed that
// names the field. Failure messages name the field and never print the
// value (see wantNULRefused).
func TestFetchRefusesNUL(t *testing.T) {
	const id = "prod/app/db"
	type nulCase struct {
		name   string
		value  string
		binary bool
		want   string // a part of the message that names the problem
	}
	var cases []nulCase
	for _, key := range []string{"username", "password", "host", "dbname"} {
		value := rdsJSONWith(key, testkit.NULValue)
		want := `secrets: malformed secret: field "` + key + `" contains a NUL byte`
		cases = append(cases,
			nulCase{"SecretString JSON " + key, value, false, want},
			nulCase{"SecretBinary JSON " + key, value, true, want})
	}
	for _, value := range []string{testkit.NULValue, testkit.NULValue + "\n", "\x00"} {
		want := "secrets: malformed secret: plain-text secret contains a NUL byte"
		cases = append(cases,
			nulCase{fmt.Sprintf("SecretString plain %d bytes", len(value)), value, false, want},
			nulCase{fmt.Sprintf("SecretBinary plain %d bytes", len(value)), value, true, want})
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			srv, client := start(t)
			in := &secretsmanager.CreateSecretInput{Name: aws.String(id)}
			if tt.binary {
				in.SecretBinary = []byte(tt.value)
			} else {
				in.SecretString = aws.String(tt.value)
			}
			created, err := client.CreateSecret(t.Context(), in)
			if err != nil {
				t.Fatalf("CreateSecret: %v", err)
			}
			srv.ResetCalls()
			got, err := newSource(t, client, id).Fetch(t.Context())
			wantNULRefused(t, "Fetch", got, err, tt.want)
			var e *awssm.Error
			if errors.As(err, &e) && (e.Op != awssm.OpFetch || e.Stage != awssm.StageCurrent || e.VersionID != aws.ToString(created.VersionId)) {
				t.Errorf("Error: op %s, stage %s, version %s; want Fetch, AWSCURRENT, %s", e.Op, e.Stage, e.VersionID, aws.ToString(created.VersionId))
			} else if e == nil {
				t.Errorf("the error is not an *awssm.Error")
			}
			wantCalls(t, srv, 1, 0)
		})
	}

	t.Run("pending version", func(t *testing.T) {
		srv, client := start(t)
		_, v1 := srv.CreateSecret(id, `{"username":"app","password":"Current-Pw-1"}`)
		v2 := srv.PutValue(id, rdsJSONWith("password", testkit.NULValue), awssm.StagePending)
		srv.ResetCalls()
		rejected := secrets.Credential{Username: "app", Password: "Current-Pw-1", Version: v1}
		got, err := newSource(t, client, id).FetchPending(t.Context(), rejected)
		wantNULRefused(t, "FetchPending", got, err, `secrets: malformed secret: field "password" contains a NUL byte`)
		if errors.Is(err, secrets.ErrNoPending) {
			t.Errorf("a malformed pending version is not ErrNoPending")
		}
		var e *awssm.Error
		if errors.As(err, &e) && (e.Op != awssm.OpFetchPending || e.Stage != awssm.StagePending || e.VersionID != v2) {
			t.Errorf("Error: op %s, stage %s, version %s; want FetchPending, AWSPENDING, %s", e.Op, e.Stage, e.VersionID, v2)
		} else if e == nil {
			t.Errorf("the error is not an *awssm.Error")
		}
		wantCalls(t, srv, 0, 1)
	})
}

// rdsJSONWith returns an RDS JSON secret with usable fields, except that
// key holds value.
func rdsJSONWith(key, value string) string {
	fields := map[string]any{"engine": "postgres", "username": "app", "password": "pw", "host": "db.example.com", "port": 5432, "dbname": "orders"}
	fields[key] = value
	b, err := json.Marshal(fields)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// wantNULRefused fails the test unless err wraps secrets.ErrMalformed, its
// text contains want and got is the zero Credential, printing no value (see
// testkit.WantNULRefused).
func wantNULRefused(t *testing.T, what string, got secrets.Credential, err error, want string) {
	t.Helper()
	testkit.WantNULRefused(t, what, err, secrets.ErrMalformed, want)
	if err != nil && got != (secrets.Credential{}) {
		t.Errorf("%s: a non-zero credential came with the error", what)
	}
}

func TestFetchSecretNotFound(t *testing.T) {
	srv, client := start(t)
	_, err := newSource(t, client, "prod/missing").Fetch(t.Context())
	if err == nil {
		t.Fatal("Fetch of a missing secret succeeded")
	}
	wantAs[*types.ResourceNotFoundException](t, err)
	if code := wantAs[smithy.APIError](t, err).ErrorCode(); code != "ResourceNotFoundException" {
		t.Errorf("ErrorCode = %q", code)
	}
	e := wantAs[*awssm.Error](t, err)
	if e.SecretID != "prod/missing" || e.Op != awssm.OpFetch || e.Stage != awssm.StageCurrent || e.VersionID != "" {
		t.Errorf("Error = %+v", *e)
	}
	if !strings.Contains(err.Error(), `"prod/missing"`) {
		t.Errorf("error %q does not name the secret", err)
	}
	if errors.Is(err, secrets.ErrNoPending) || errors.Is(err, secrets.ErrMalformed) {
		t.Errorf("error %q matches a secrets sentinel", err)
	}
	// Not found is not retried.
	wantCalls(t, srv, 1, 0)
}

func TestFetchDeletedSecret(t *testing.T) {
	srv, client := start(t)
	srv.CreateSecret("db", `{"username":"app","password":"pw"}`)
	src := newSource(t, client, "db")
	if _, err := src.Fetch(t.Context()); err != nil {
		t.Fatal(err)
	}
	srv.Delete("db")
	_, err := src.Fetch(t.Context())
	wantAs[*types.ResourceNotFoundException](t, err)
}

func TestFetchPending(t *testing.T) {
	const id = "prod/app/db"
	current := `{"username":"app","password":"Current-Pw-1"}`
	rejected := secrets.Credential{Username: "app", Password: "Current-Pw-1"}

	t.Run("no version carries AWSPENDING", func(t *testing.T) {
		srv, client := start(t)
		_, v1 := srv.CreateSecret(id, current)
		r := rejected
		r.Version = v1
		got, err := newSource(t, client, id).FetchPending(t.Context(), r)
		if !errors.Is(err, secrets.ErrNoPending) {
			t.Fatalf("FetchPending = %v, %v; want ErrNoPending", got, err)
		}
		// The SDK's error stays reachable.
		wantAs[*types.ResourceNotFoundException](t, err)
		e := wantAs[*awssm.Error](t, err)
		if e.SecretID != id || e.Op != awssm.OpFetchPending || e.Stage != awssm.StagePending {
			t.Errorf("Error = %+v", *e)
		}
		wantCalls(t, srv, 0, 1)
	})

	t.Run("RotateSecret made an empty pending version", func(t *testing.T) {
		srv, client := start(t)
		_, v1 := srv.CreateSecret(id, current)
		rot, err := client.RotateSecret(t.Context(), &secretsmanager.RotateSecretInput{SecretId: aws.String(id)})
		if err != nil {
			t.Fatal(err)
		}
		if stages := srv.Versions(id)[aws.ToString(rot.VersionId)]; len(stages) != 1 || stages[0] != awssm.StagePending {
			t.Fatalf("after RotateSecret the new version has labels %v", stages)
		}
		srv.ResetCalls()
		r := rejected
		r.Version = v1
		got, err := newSource(t, client, id).FetchPending(t.Context(), r)
		if !errors.Is(err, secrets.ErrNoPending) {
			t.Fatalf("FetchPending = %v, %v; want ErrNoPending", got, err)
		}
		wantAs[*types.ResourceNotFoundException](t, err)
		wantCalls(t, srv, 0, 1)
	})

	t.Run("pending version with a value", func(t *testing.T) {
		srv, client := start(t)
		_, v1 := srv.CreateSecret(id, current)
		rot, err := client.RotateSecret(t.Context(), &secretsmanager.RotateSecretInput{SecretId: aws.String(id)})
		if err != nil {
			t.Fatal(err)
		}
		// The rotation function's createSecret step.
		_, err = client.PutSecretValue(t.Context(), &secretsmanager.PutSecretValueInput{
			SecretId:           aws.String(id),
			ClientRequestToken: rot.VersionId,
			SecretString:       aws.String(`{"username":"app","password":"Pending-Pw-2","host":"h","port":"5432"}`),
			VersionStages:      []string{awssm.StagePending},
		})
		if err != nil {
			t.Fatal(err)
		}
		srv.ResetCalls()
		r := rejected
		r.Version = v1
		got, err := newSource(t, client, id).FetchPending(t.Context(), r)
		if err != nil {
			t.Fatal(err)
		}
		want := secrets.Credential{Username: "app", Password: "Pending-Pw-2", Host: "h", Port: 5432, Version: aws.ToString(rot.VersionId)}
		if got != want || got.Password != want.Password {
			t.Errorf("FetchPending = %v, want %v", got, want)
		}
		wantCalls(t, srv, 0, 1)
	})

	t.Run("rotation finished since the rejected Fetch", func(t *testing.T) {
		srv, client := start(t)
		_, v1 := srv.CreateSecret(id, current)
		// The connector's Fetch read V1 as AWSCURRENT; finishSecret then
		// moved AWSCURRENT onto V2, which keeps AWSPENDING for a while.
		v2 := srv.PutValue(id, `{"username":"app","password":"New-Pw-3"}`, awssm.StageCurrent, awssm.StagePending)
		srv.ResetCalls()
		r := rejected
		r.Version = v1
		got, err := newSource(t, client, id).FetchPending(t.Context(), r)
		if err != nil {
			t.Fatalf("FetchPending = %v; want V2, the new current credential", err)
		}
		want := secrets.Credential{Username: "app", Password: "New-Pw-3", Version: v2}
		if got != want {
			t.Errorf("FetchPending = %v, want %v (password compared too, not printed)", got, want)
		}
		wantCalls(t, srv, 0, 1)
	})

	t.Run("AWSPENDING left on the AWSCURRENT version, which was rejected", func(t *testing.T) {
		srv, client := start(t)
		srv.CreateSecret(id, `{"username":"app","password":"Old-Pw-0"}`)
		v2 := srv.PutValue(id, current, awssm.StageCurrent, awssm.StagePending)
		srv.ResetCalls()
		r := rejected
		r.Version = v2
		got, err := newSource(t, client, id).FetchPending(t.Context(), r)
		if !errors.Is(err, secrets.ErrNoPending) {
			t.Fatalf("FetchPending = %v, %v; want ErrNoPending", got, err)
		}
		e := wantAs[*awssm.Error](t, err)
		if e.VersionID != v2 {
			t.Errorf("Error.VersionID = %q, want %q", e.VersionID, v2)
		}
		wantNoSecret(t, "error", err.Error(), "Current-Pw-1")
		wantCalls(t, srv, 0, 1)
	})

	t.Run("AWSPENDING left on the AWSCURRENT version, which holds the rejected login", func(t *testing.T) {
		srv, client := start(t)
		_, v1 := srv.CreateSecret(id, current)
		// A rotation that re-issued the same login under a new version.
		v2 := srv.PutValue(id, current, awssm.StageCurrent, awssm.StagePending)
		srv.ResetCalls()
		r := rejected
		r.Version = v1
		got, err := newSource(t, client, id).FetchPending(t.Context(), r)
		if !errors.Is(err, secrets.ErrNoPending) {
			t.Fatalf("FetchPending = %v, %v; want ErrNoPending", got, err)
		}
		if e := wantAs[*awssm.Error](t, err); e.VersionID != v2 {
			t.Errorf("Error.VersionID = %q, want %q", e.VersionID, v2)
		}
		wantNoSecret(t, "error", err.Error(), "Current-Pw-1")
		wantCalls(t, srv, 0, 1)
	})

	t.Run("pending version is the rejected version", func(t *testing.T) {
		srv, client := start(t)
		srv.CreateSecret(id, current)
		v2 := srv.PutValue(id, `{"username":"app","password":"Rejected-Pw-4"}`, awssm.StagePending)
		r := secrets.Credential{Username: "app", Password: "Rejected-Pw-4", Version: v2}
		srv.ResetCalls()
		got, err := newSource(t, client, id).FetchPending(t.Context(), r)
		if !errors.Is(err, secrets.ErrNoPending) {
			t.Fatalf("FetchPending = %v, %v; want ErrNoPending", got, err)
		}
		wantCalls(t, srv, 0, 1)
	})

	t.Run("pending version holds the rejected login", func(t *testing.T) {
		srv, client := start(t)
		_, v1 := srv.CreateSecret(id, current)
		// A rotation whose createSecret step copied the old password.
		srv.PutValue(id, current, awssm.StagePending)
		r := rejected
		r.Version = v1
		srv.ResetCalls()
		got, err := newSource(t, client, id).FetchPending(t.Context(), r)
		if !errors.Is(err, secrets.ErrNoPending) {
			t.Fatalf("FetchPending = %v, %v; want ErrNoPending", got, err)
		}
		wantNoSecret(t, "error", err.Error(), "Current-Pw-1")
		wantCalls(t, srv, 0, 1)
	})

	t.Run("malformed pending version is an error, not no-pending", func(t *testing.T) {
		srv, client := start(t)
		_, v1 := srv.CreateSecret(id, current)
		v2 := srv.PutValue(id, `{"username":"app","password":"Bad-Pending-5"`, awssm.StagePending)
		r := rejected
		r.Version = v1
		srv.ResetCalls()
		got, err := newSource(t, client, id).FetchPending(t.Context(), r)
		if err == nil || errors.Is(err, secrets.ErrNoPending) || !errors.Is(err, secrets.ErrMalformed) {
			t.Fatalf("FetchPending = %v, %v; want an error wrapping ErrMalformed only", got, err)
		}
		e := wantAs[*awssm.Error](t, err)
		if e.Op != awssm.OpFetchPending || e.Stage != awssm.StagePending || e.VersionID != v2 {
			t.Errorf("Error = %+v", *e)
		}
		wantNoSecret(t, "error", err.Error(), "Bad-Pending-5")
		wantCalls(t, srv, 0, 1)
	})

	t.Run("secret gone", func(t *testing.T) {
		_, client := start(t)
		_, err := newSource(t, client, "prod/missing").FetchPending(t.Context(), rejected)
		// The connector treats this as no pending credential; the next
		// Fetch reports the missing secret.
		if !errors.Is(err, secrets.ErrNoPending) {
			t.Fatalf("FetchPending = %v; want ErrNoPending", err)
		}
		wantAs[*types.ResourceNotFoundException](t, err)
	})

	t.Run("access denied is an error, not no-pending", func(t *testing.T) {
		srv, client := start(t)
		srv.CreateSecret(id, current)
		// An IAM policy that allows only AWSCURRENT.
		srv.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{Error: "AccessDeniedException", Count: 1})
		_, err := newSource(t, client, id).FetchPending(t.Context(), rejected)
		if err == nil || errors.Is(err, secrets.ErrNoPending) {
			t.Fatalf("FetchPending = %v; want an error that is not ErrNoPending", err)
		}
		if code := wantAs[smithy.APIError](t, err).ErrorCode(); code != "AccessDeniedException" {
			t.Errorf("ErrorCode = %q", code)
		}
	})
}

// TestSingleUserRotation walks the AWS single-user rotation with the SDK
// calls the rotation function makes, checking Fetch and FetchPending at
// every step.
func TestSingleUserRotation(t *testing.T) {
	const id = "prod/app/db"
	srv, client := start(t)
	ctx := t.Context()
	_, v1 := srv.CreateSecret(id, `{"engine":"postgres","username":"app","password":"P1","port":5432}`)
	src := newSource(t, client, id)

	cur, err := src.Fetch(ctx)
	if err != nil || cur.Version != v1 {
		t.Fatalf("Fetch before rotation = %v, %v", cur, err)
	}
	rot, err := client.RotateSecret(ctx, &secretsmanager.RotateSecretInput{SecretId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	v2 := aws.ToString(rot.VersionId)
	if _, err := src.FetchPending(ctx, cur); !errors.Is(err, secrets.ErrNoPending) {
		t.Errorf("FetchPending before createSecret = %v, want ErrNoPending", err)
	}
	// createSecret
	if _, err := client.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId: aws.String(id), ClientRequestToken: rot.VersionId,
		SecretString:  aws.String(`{"engine":"postgres","username":"app","password":"P2","port":5432}`),
		VersionStages: []string{awssm.StagePending},
	}); err != nil {
		t.Fatal(err)
	}
	// setSecret changes the database; AWSCURRENT is now stale.
	stale, err := src.Fetch(ctx)
	if err != nil || stale.Version != v1 || stale.Password != "P1" {
		t.Fatalf("Fetch in the window = %v, %v; want the stale %s", stale, err, v1)
	}
	pending, err := src.FetchPending(ctx, stale)
	if err != nil || pending.Version != v2 || pending.Password != "P2" {
		t.Fatalf("FetchPending in the window = %v, %v; want %s", pending, err, v2)
	}
	// finishSecret
	if _, err := client.UpdateSecretVersionStage(ctx, &secretsmanager.UpdateSecretVersionStageInput{
		SecretId: aws.String(id), VersionStage: aws.String(awssm.StageCurrent),
		MoveToVersionId: rot.VersionId, RemoveFromVersionId: aws.String(v1),
	}); err != nil {
		t.Fatal(err)
	}
	after, err := src.Fetch(ctx)
	if err != nil || after.Version != v2 || after.Password != "P2" {
		t.Fatalf("Fetch after finishSecret = %v, %v; want %s", after, err, v2)
	}
	// A caller whose Fetch ran just before finishSecret: AWSPENDING is left
	// on the new AWSCURRENT version, which is the credential it needs.
	late, err := src.FetchPending(ctx, stale)
	if err != nil || late != after || late.Password != "P2" {
		t.Errorf("FetchPending(stale %s) after finishSecret = %v, %v; want %s, the new current", v1, late, err, v2)
	}
	if _, err := src.FetchPending(ctx, after); !errors.Is(err, secrets.ErrNoPending) {
		t.Errorf("FetchPending(%s) after finishSecret = %v, want ErrNoPending (AWSPENDING is left on that very AWSCURRENT)", v2, err)
	}
	if n := srv.Calls(awssmtest.OpGetSecretValue); n != 7 {
		t.Errorf("GetSecretValue calls = %d, want 7 (one per Fetch and FetchPending)", n)
	}
	if n := srv.Calls(awssmtest.OpDescribeSecret) + srv.Calls(awssmtest.OpListSecretVersionIds); n != 0 {
		t.Errorf("the source made %d DescribeSecret/ListSecretVersionIds calls, want 0", n)
	}
}

// TestAlternatingUsers follows AWS's alternating-users rotation, in which
// the username flips between app and app_clone with every version: Fetch
// always returns the username and password of the AWSCURRENT version
// together.
func TestAlternatingUsers(t *testing.T) {
	const id = "prod/app/db"
	srv, client := start(t)
	ctx := t.Context()
	master := `"masterarn":"arn:aws:secretsmanager:us-east-1:123456789012:secret:master-AbCdEf"`
	_, v1 := srv.CreateSecret(id, `{"username":"app","password":"A1",`+master+`}`)
	src := newSource(t, client, id)

	steps := []struct {
		user, password string
	}{
		{"app_clone", "A2"},
		{"app", "A3"},
		{"app_clone", "A4"},
	}
	wantFetch := func(user, password, version string) secrets.Credential {
		t.Helper()
		got, err := src.Fetch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.Username != user || got.Password != password || got.Version != version {
			t.Fatalf("Fetch = %v, want user %s at version %s", got, user, version)
		}
		return got
	}
	prev := wantFetch("app", "A1", v1)
	prevVersion := v1
	for _, step := range steps {
		value := fmt.Sprintf(`{"username":%q,"password":%q,%s}`, step.user, step.password, master)
		next := srv.PutValue(id, value, awssm.StagePending)
		// Until finishSecret, AWSCURRENT (the other user) is still valid.
		wantFetch(prev.Username, prev.Password, prevVersion)
		pending, err := src.FetchPending(ctx, prev)
		if err != nil || pending.Username != step.user || pending.Version != next {
			t.Fatalf("FetchPending = %v, %v; want user %s at version %s", pending, err, step.user, next)
		}
		srv.MoveStage(id, awssm.StageCurrent, next)
		prev = wantFetch(step.user, step.password, next)
		prevVersion = next
	}
}

func TestRetriedByTheSDK(t *testing.T) {
	for _, code := range []string{"ThrottlingException", "InternalServiceError"} {
		t.Run(code, func(t *testing.T) {
			srv, client := start(t)
			_, v1 := srv.CreateSecret("db", `{"username":"app","password":"pw"}`)
			srv.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{Error: code, Count: 2})
			got, err := newSource(t, client, "db").Fetch(t.Context())
			if err != nil {
				t.Fatalf("Fetch after 2 x %s = %v, want the SDK to retry", code, err)
			}
			if got.Version != v1 {
				t.Errorf("Fetch = %v", got)
			}
			if n := srv.Calls(awssmtest.OpGetSecretValue); n != 3 {
				t.Errorf("GetSecretValue requests = %d, want 3 (2 faults, 1 success)", n)
			}
		})
	}

	t.Run("exhausted", func(t *testing.T) {
		srv, client := start(t)
		srv.CreateSecret("db", `{"username":"app","password":"pw"}`)
		srv.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{Error: "ThrottlingException"})
		_, err := newSource(t, client, "db").Fetch(t.Context())
		if code := wantAs[smithy.APIError](t, err).ErrorCode(); code != "ThrottlingException" {
			t.Errorf("ErrorCode = %q", code)
		}
		wantAs[*awssm.Error](t, err)
		if n := srv.Calls(awssmtest.OpGetSecretValue); n != 3 {
			t.Errorf("GetSecretValue requests = %d, want the standard retryer's 3", n)
		}
	})
}

// TestDefaultRetryerRetriesThrottling uses the client exactly as
// awssmtest.Client builds it, with the SDK's default retryer and its real
// backoff, so the test takes up to a few seconds.
func TestDefaultRetryerRetriesThrottling(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the SDK's backoff")
	}
	srv := awssmtest.NewServer().Start()
	t.Cleanup(srv.Close)
	srv.CreateSecret("db", "pw")
	srv.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{Error: "ThrottlingException", Count: 1})
	if _, err := newSource(t, srv.Client(t.Context()), "db").Fetch(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := srv.Calls(awssmtest.OpGetSecretValue); n != 2 {
		t.Errorf("GetSecretValue requests = %d, want 2", n)
	}
}

func TestHangIsBoundedByContext(t *testing.T) {
	for _, pending := range []bool{false, true} {
		t.Run(fmt.Sprintf("pending=%v", pending), func(t *testing.T) {
			srv, client := start(t)
			srv.CreateSecret("db", `{"username":"app","password":"pw"}`)
			srv.PutValue("db", `{"username":"app","password":"pw2"}`, awssm.StagePending)
			srv.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{Hang: true})
			src := newSource(t, client, "db")

			ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
			defer cancel()
			begin := time.Now()
			var err error
			if pending {
				_, err = src.FetchPending(ctx, secrets.Credential{Username: "app", Password: "pw"})
			} else {
				_, err = src.Fetch(ctx)
			}
			elapsed := time.Since(begin)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error = %v, want one wrapping context.DeadlineExceeded", err)
			}
			if errors.Is(err, secrets.ErrNoPending) {
				t.Errorf("a timeout is not ErrNoPending: %v", err)
			}
			wantAs[*awssm.Error](t, err)
			if elapsed > 5*time.Second {
				t.Errorf("call returned after %v, want about the 100ms deadline", elapsed)
			}
			if n := srv.Calls(awssmtest.OpGetSecretValue); n != 1 {
				t.Errorf("GetSecretValue requests = %d, want 1 (no retry past the deadline)", n)
			}
		})
	}
}

func TestMalformedAnswer(t *testing.T) {
	srv, client := start(t)
	srv.CreateSecret("db", `{"username":"app","password":"pw"}`)
	srv.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{MalformedBody: true, Count: 1})
	_, err := newSource(t, client, "db").Fetch(t.Context())
	wantAs[*smithy.DeserializationError](t, err)
	wantAs[*smithy.OperationError](t, err)
	if re := wantAs[*awshttp.ResponseError](t, err); re.ServiceRequestID() == "" {
		t.Errorf("the request id is lost: %v", err)
	}
	if !strings.Contains(err.Error(), `"db"`) {
		t.Errorf("error %q does not name the secret", err)
	}
}

// leakyAPI answers GetSecretValue with a deserialization error that quotes
// the secret, as the SDK's JSON parser can ("cannot unquote ...").
type leakyAPI struct{ secret string }

func (a leakyAPI) GetSecretValue(context.Context, *secretsmanager.GetSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	return nil, &smithy.OperationError{
		ServiceID:     "Secrets Manager",
		OperationName: "GetSecretValue",
		Err: &smithy.DeserializationError{
			Err:      fmt.Errorf("cannot unquote %q", a.secret),
			Snapshot: []byte(`{"SecretString":"` + a.secret + `"}`),
		},
	}
}

func TestDeserializationErrorIsRedacted(t *testing.T) {
	const secret = "Leaky-Secret-9"
	src := newSource(t, leakyAPI{secret}, "db")
	_, err := src.Fetch(t.Context())
	de := wantAs[*smithy.DeserializationError](t, err)
	if len(de.Snapshot) != 0 {
		t.Errorf("the body snapshot is still reachable: %q", de.Snapshot)
	}
	if oe := wantAs[*smithy.OperationError](t, err); oe.Operation() != "GetSecretValue" || oe.Service() != "Secrets Manager" {
		t.Errorf("OperationError = %v", oe)
	}
	wantNoSecret(t, "error", err.Error(), secret)
	wantNoSecret(t, "error %+v", fmt.Sprintf("%+v", err), secret)
	wantNoSecret(t, "error %#v", fmt.Sprintf("%#v", err), secret)

	_, err = src.FetchPending(t.Context(), secrets.Credential{})
	wantNoSecret(t, "FetchPending error", err.Error(), secret)
	if errors.Is(err, secrets.ErrNoPending) {
		t.Errorf("a deserialization error is not ErrNoPending")
	}
}

// stubAPI answers GetSecretValue with out and counts the calls.
type stubAPI struct {
	mu    sync.Mutex
	out   *secretsmanager.GetSecretValueOutput
	calls int
}

func (a *stubAPI) GetSecretValue(_ context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	return a.out, nil
}

func TestNoValueInAnswer(t *testing.T) {
	api := &stubAPI{out: &secretsmanager.GetSecretValueOutput{VersionId: aws.String("v1"), VersionStages: []string{"AWSCURRENT"}}}
	_, err := newSource(t, api, "db").Fetch(t.Context())
	if !errors.Is(err, secrets.ErrEmptyPassword) || !strings.Contains(err.Error(), "neither SecretString nor SecretBinary") {
		t.Errorf("Fetch of a version without a value = %v", err)
	}
}

// TestPendingWithoutVersionStages covers a compatible endpoint (a proxy or
// cache) that omits VersionStages: the login comparison still applies.
func TestPendingWithoutVersionStages(t *testing.T) {
	api := &stubAPI{out: &secretsmanager.GetSecretValueOutput{VersionId: aws.String("v2"), SecretString: aws.String("same-pw")}}
	src := newSource(t, api, "db")
	if _, err := src.FetchPending(t.Context(), secrets.Credential{Password: "same-pw", Version: "v1"}); !errors.Is(err, secrets.ErrNoPending) {
		t.Errorf("FetchPending of the rejected login = %v, want ErrNoPending", err)
	}
	got, err := src.FetchPending(t.Context(), secrets.Credential{Password: "old-pw", Version: "v1"})
	if err != nil || got.Password != "same-pw" || got.Version != "v2" {
		t.Errorf("FetchPending = %v, %v", got, err)
	}
}

func TestWithVersionStage(t *testing.T) {
	srv, client := start(t)
	srv.CreateSecret("db", `{"username":"app","password":"cur"}`)
	vLive := srv.PutValue("db", `{"username":"app","password":"live"}`, "LIVE")
	src := newSource(t, client, "db", awssm.WithVersionStage("LIVE"))
	if d := src.Describe(); d != "aws-secretsmanager db LIVE" {
		t.Errorf("Describe = %q", d)
	}
	got, err := src.Fetch(t.Context())
	if err != nil || got.Password != "live" || got.Version != vLive {
		t.Fatalf("Fetch = %v, %v; want the LIVE version %s", got, err, vLive)
	}
	if n := srv.CallsByStage("LIVE"); n != 1 {
		t.Errorf("GetSecretValue calls for LIVE = %d, want 1", n)
	}
	// AWSPENDING on the LIVE version: no pending credential for the LIVE
	// one; for another, the LIVE version is its successor.
	srv.MoveStage("db", awssm.StagePending, vLive)
	if _, err := src.FetchPending(t.Context(), got); !errors.Is(err, secrets.ErrNoPending) {
		t.Errorf("FetchPending(the LIVE credential) with AWSPENDING on LIVE = %v, want ErrNoPending", err)
	}
	if p, err := src.FetchPending(t.Context(), secrets.Credential{Username: "app", Password: "older"}); err != nil || p != got {
		t.Errorf("FetchPending(an older credential) with AWSPENDING on LIVE = %v, %v; want the LIVE version %s", p, err, vLive)
	}
	srv.MoveStage("db", "LIVE", "")
	_, err = src.Fetch(t.Context())
	if e := wantAs[*awssm.Error](t, err); e.Stage != "LIVE" {
		t.Errorf("Error.Stage = %q, want LIVE", e.Stage)
	}
	wantAs[*types.ResourceNotFoundException](t, err)
}

func TestNew(t *testing.T) {
	_, client := start(t)
	if _, err := awssm.New(nil, "db"); err == nil {
		t.Error("New(nil client) succeeded")
	}
	var nilClient *secretsmanager.Client
	if _, err := awssm.New(nilClient, "db"); err == nil {
		t.Error("New(typed nil client) succeeded")
	}
	if _, err := awssm.New(client, ""); err == nil || !strings.Contains(err.Error(), "secret id") {
		t.Errorf("New(empty secret id) = %v", err)
	}
	_, err := awssm.New(client, "db", awssm.WithLogger(nil), awssm.WithVersionStage(""))
	if !errors.Is(err, awssm.ErrInvalidOption) || !strings.Contains(err.Error(), "WithLogger") || !strings.Contains(err.Error(), "WithVersionStage") {
		t.Errorf("New with two bad options = %v, want both reported as ErrInvalidOption", err)
	}
	if _, err := awssm.NewFromConfig(t.Context(), ""); err == nil {
		t.Error("NewFromConfig(empty secret id) succeeded")
	}
}

func TestDescribe(t *testing.T) {
	_, client := start(t)
	src := newSource(t, client, "prod/app/db")
	if got := src.Describe(); got != "aws-secretsmanager prod/app/db" {
		t.Errorf("Describe = %q", got)
	}
	if got := secrets.Describe(src); got != "aws-secretsmanager prod/app/db" {
		t.Errorf("secrets.Describe = %q", got)
	}
}

// isolateAWSConfig points the SDK's default configuration at srv through
// the environment only, as an application on a developer machine would be.
func isolateAWSConfig(t *testing.T, srv *awssmtest.Server) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", srv.URL())
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_REGION", awssmtest.Region)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	for _, k := range []string{"AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_DEFAULT_PROFILE"} {
		if v, ok := os.LookupEnv(k); ok {
			t.Setenv(k, v) // restored at the end of the test
			os.Unsetenv(k)
		}
	}
}

func TestNewFromConfig(t *testing.T) {
	srv := awssmtest.NewServer().Start()
	t.Cleanup(srv.Close)
	_, v1 := srv.CreateSecret("prod/app/db", `{"username":"app","password":"pw","port":"5432"}`)
	isolateAWSConfig(t, srv)

	src, err := awssm.NewFromConfig(t.Context(), "prod/app/db", awssm.WithKeys(secrets.DefaultKeys))
	if err != nil {
		t.Fatal(err)
	}
	got, err := src.Fetch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got.Username != "app" || got.Port != 5432 || got.Version != v1 {
		t.Errorf("Fetch = %v", got)
	}
	if _, err := src.FetchPending(t.Context(), got); !errors.Is(err, secrets.ErrNoPending) {
		t.Errorf("FetchPending = %v, want ErrNoPending", err)
	}
	wantCalls(t, srv, 1, 1)
}

func TestLoggerSeesVersionsNotValues(t *testing.T) {
	srv, client := start(t)
	_, v1 := srv.CreateSecret("db", `{"username":"app","password":"Log-Secret-1"}`)
	v2 := srv.PutValue("db", `{"username":"app","password":"Log-Secret-2"}`, awssm.StagePending)
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	src := newSource(t, client, "db", awssm.WithLogger(logger))

	cur, err := src.Fetch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.FetchPending(t.Context(), cur); err != nil {
		t.Fatal(err)
	}
	srv.MoveStage("db", awssm.StageCurrent, v2)
	next, err := src.FetchPending(t.Context(), cur)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.FetchPending(t.Context(), next); !errors.Is(err, secrets.ErrNoPending) {
		t.Fatal(err)
	}
	srv.PutValue("db", `{"username":"app","password":"Log-Secret-3",}`)
	if _, err := src.Fetch(t.Context()); err == nil {
		t.Fatal("Fetch of malformed JSON succeeded")
	}
	srv.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{Error: "AccessDeniedException"})
	if _, err := src.Fetch(t.Context()); err == nil {
		t.Fatal("Fetch succeeded despite the fault")
	}

	logs := buf.String()
	wantNoSecret(t, "log", logs, "Log-Secret-1", "Log-Secret-2", "Log-Secret-3")
	for _, want := range []string{v1, v2, `"secret_id":"db"`, "AWSPENDING", "AccessDeniedException"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log does not mention %q:\n%s", want, logs)
		}
	}
}

func TestSilentByDefault(t *testing.T) {
	var buf bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(prev) })

	srv, client := start(t)
	srv.CreateSecret("db", "pw")
	src := newSource(t, client, "db")
	if _, err := src.Fetch(t.Context()); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Errorf("the source logged without WithLogger: %s", buf.String())
	}
}

// TestConcurrentUse runs Fetch and FetchPending from many goroutines, for
// the race detector.
func TestConcurrentUse(t *testing.T) {
	srv, client := start(t)
	srv.CreateSecret("db", `{"username":"app","password":"p1"}`)
	srv.PutValue("db", `{"username":"app","password":"p2"}`, awssm.StagePending)
	src := newSource(t, client, "db")
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 20 {
		wg.Go(func() {
			if _, err := src.Fetch(t.Context()); err != nil {
				errs <- err
			}
		})
		wg.Go(func() {
			if _, err := src.FetchPending(t.Context(), secrets.Credential{Username: "app", Password: fmt.Sprint("old", i)}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	wantCalls(t, srv, 20, 20)
}

func TestErrorText(t *testing.T) {
	cause := errors.New("boom")
	tests := []struct {
		err  awssm.Error
		want string
	}{
		{awssm.Error{SecretID: "db", Op: awssm.OpFetch, Stage: "AWSCURRENT", Err: cause}, `awssm: Fetch secret "db" AWSCURRENT: boom`},
		{awssm.Error{SecretID: "db", Op: awssm.OpFetchPending, Stage: "AWSPENDING", VersionID: "v2", Err: cause}, `awssm: FetchPending secret "db" AWSPENDING version v2: boom`},
		{awssm.Error{SecretID: "a b", Op: awssm.OpFetch}, `awssm: Fetch secret "a b"`},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	e := &awssm.Error{Err: cause}
	if !errors.Is(e, cause) {
		t.Error("Error does not unwrap to its cause")
	}
}
