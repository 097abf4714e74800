package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/lib/pq"

	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer = testkit.LogBuffer

// result is one run of the command.
type result struct {
	code     int
	out, err string
	report   *Report
}

// runCmd runs the command with args; std may carry hooks.
func runCmd(t *testing.T, ctx context.Context, args []string, std *stdio) result {
	t.Helper()
	if std == nil {
		std = &stdio{}
	}
	var out, errw syncBuffer
	std.out, std.err = &out, &errw
	var rep *Report
	std.report = func(r *Report) { rep = r }
	code := run(ctx, args, std)
	r := result{code: code, out: out.String(), err: errw.String(), report: rep}
	if testing.Verbose() || t.Failed() {
		t.Logf("pgrotate %s: exit %d\n--- stdout\n%s--- stderr\n%s", strings.Join(args, " "), code, r.out, r.err)
	}
	return r
}

// baseDSN is a DSN for pg without user or password.
func baseDSN(pg *pgserver.Server) string {
	return fmt.Sprintf("host=%s port=%d dbname=postgres sslmode=disable", pg.Host, pg.Port)
}

// startSM starts a local endpoint and points the AWS SDK's default
// configuration at it through the environment, isolated from the user's
// own AWS files.
func startSM(t *testing.T) *awssmtest.Server {
	t.Helper()
	sm := awssmtest.NewServer().Start()
	t.Cleanup(sm.Close)
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_SECRETS_MANAGER": sm.URL(),
		"AWS_REGION":                       awssmtest.Region,
		"AWS_ACCESS_KEY_ID":                "AKIATESTTESTTESTTEST",
		"AWS_SECRET_ACCESS_KEY":            "test",
		"AWS_SESSION_TOKEN":                "",
		"AWS_PROFILE":                      "",
		"AWS_CONFIG_FILE":                  filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE":      filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED":        "true",
		"AWS_ENDPOINT_URL":                 "",
	} {
		t.Setenv(k, v)
	}
	return sm
}

// secretValues returns every password ever stored in the secret named
// name, read back through the SDK, so that a test can check that none
// was printed.
func secretValues(t *testing.T, sm *awssmtest.Server, name string) []string {
	t.Helper()
	client := sm.Client(t.Context())
	var out []string
	for id := range sm.Versions(name) {
		v, err := client.GetSecretValue(t.Context(), &secretsmanager.GetSecretValueInput{SecretId: aws.String(name), VersionId: aws.String(id)})
		if err != nil {
			continue // the empty version a RotateSecret made
		}
		if c, err := secrets.ParseSecret([]byte(aws.ToString(v.SecretString)), secrets.Keys{}); err == nil {
			out = append(out, c.Password)
		}
	}
	return out
}

// superPassword is pg's superuser password.
func superPassword(t *testing.T, pg *pgserver.Server) string {
	t.Helper()
	cfg, err := pq.NewConfig(pg.SuperDSN())
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Password
}

// assertNoSecret fails t if text contains any of the values.
func assertNoSecret(t *testing.T, what, text string, values ...string) {
	t.Helper()
	for _, v := range values {
		if v != "" && strings.Contains(text, v) {
			t.Errorf("%s contains a secret value", what)
		}
	}
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "Usage:"},
		{[]string{"nope"}, exitUsage, `unknown command "nope"`},
		{[]string{"help"}, exitOK, "Exit codes:"},
		{[]string{"demo", "-h"}, exitOK, "Exit codes:"},
		{[]string{"check", "-h"}, exitOK, "Exit codes:"},
		{[]string{"sm-server", "-h"}, exitOK, "Exit codes:"},
		{[]string{"demo", "-nope"}, exitUsage, "flag provided but not defined"},
		{[]string{"demo", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"demo", "-strategy", "triple"}, exitUsage, `-strategy "triple"`},
		{[]string{"demo", "-driver", "mysql"}, exitUsage, `-driver "mysql": want lib/pq (or pq, libpq) or pgx (or pgx/v5)`},
		{[]string{"demo", "-driver", ""}, exitUsage, `-driver ""`},
		{[]string{"check", "-env", "-driver", "pgx/v4"}, exitUsage, `-driver "pgx/v4": want lib/pq`},
		{[]string{"demo", "-duration", "0s"}, exitUsage, "-duration"},
		{[]string{"demo", "-workers", "0"}, exitUsage, "-workers"},
		{[]string{"demo", "-rotations", "-1"}, exitUsage, "-rotations"},
		{[]string{"demo", "-rate", "-5"}, exitUsage, "-rate"},
		{[]string{"demo", "-window", "2m"}, exitUsage, "-window"},
		{[]string{"demo", "-recycle", "1ms"}, exitUsage, "-recycle"},
		{[]string{"demo", "-dsn", "host=x"}, exitUsage, "-dsn and -secret-id go together"},
		{[]string{"demo", "-secret-id", "x"}, exitUsage, "-dsn and -secret-id go together"},
		{[]string{"demo", "-dsn", "host=x", "-secret-id", "x", "-compare"}, exitUsage, "-compare needs the local server"},
		{[]string{"demo", "-store", "gcp"}, exitUsage, `-store "gcp": want aws or vault`},
		{[]string{"demo", "-role", "static"}, exitUsage, "-role goes with -store vault"},
		{[]string{"demo", "-ttl", "5s"}, exitUsage, "-ttl goes with -store vault"},
		{[]string{"demo", "-store", "vault", "-role", "kv"}, exitUsage, `-role "kv": want static or dynamic`},
		{[]string{"demo", "-store", "vault", "-compare"}, exitUsage, "-compare goes with -store aws"},
		{[]string{"demo", "-store", "vault", "-window", "2s"}, exitUsage, "-strategy and -window go with -store aws"},
		{[]string{"demo", "-store", "vault", "-dsn", "host=x", "-secret-id", "x"}, exitUsage, "pgrotate check -store vault"},
		{[]string{"demo", "-store", "vault", "-rotations", "2"}, exitUsage, "-rotations goes with -role static"},
		{[]string{"demo", "-store", "vault", "-rotation-period", "5s"}, exitUsage, "-rotation-period goes with -role static"},
		{[]string{"demo", "-store", "vault", "-ttl", "1500ms"}, exitUsage, "-ttl 1.5s: want whole seconds, 2s to 1h0m0s"},
		{[]string{"demo", "-store", "vault", "-ttl", "5s", "-max-ttl", "4s"}, exitUsage, "-max-ttl 4s: want whole seconds, 5s to 24h0m0s"},
		{[]string{"demo", "-store", "vault", "-role", "static", "-ttl", "5s"}, exitUsage, "-ttl and -max-ttl go with -role dynamic"},
		{[]string{"demo", "-store", "vault", "-role", "static", "-rotation-period", "2s"}, exitUsage, "-rotation-period 2s: want whole seconds, 3s to 1h0m0s"},
		{[]string{"check"}, exitUsage, "give one source"},
		{[]string{"check", "-env", "-file", "x"}, exitUsage, "give one source"},
		{[]string{"check", "-env", "-timeout", "0s"}, exitUsage, "-timeout"},
		{[]string{"check", "-env", "-dsn", "host='unterminated"}, exitUsage, "-dsn"},
		{[]string{"check", "-store", "vault"}, exitUsage, "-store vault needs -vault-role"},
		{[]string{"check", "-vault-role", "static:app"}, exitUsage, "-vault-role goes with -store vault"},
		{[]string{"check", "-store", "gcp", "-env"}, exitUsage, `-store "gcp": want vault`},
		{[]string{"check", "-env", "-vault-mount", "db"}, exitUsage, "-vault-mount goes with -store vault"},
		{[]string{"check", "-store", "vault", "-vault-role", "app"}, exitUsage, "want static:NAME, dynamic:NAME or kv:MOUNT/PATH"},
		{[]string{"check", "-store", "vault", "-vault-role", "ldap:app"}, exitUsage, `"ldap": want static, dynamic or kv`},
		{[]string{"check", "-store", "vault", "-vault-role", "kv:secret"}, exitUsage, "kv: want MOUNT/PATH"},
		{[]string{"check", "-store", "vault", "-vault-role", "static:a/b"}, exitUsage, "holds no /"},
		{[]string{"check", "-store", "vault", "-vault-role", "static:app", "-env"}, exitUsage, "give one source"},
		{[]string{"sm-server", "-addr", "0.0.0.0:0"}, exitUsage, "loopback"},
		{[]string{"sm-server", "-addr", ":4566"}, exitUsage, "loopback"},
		{[]string{"sm-server", "-addr", "nocolon"}, exitUsage, "-addr"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := runCmd(t, t.Context(), tc.args, nil)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d", r.code, tc.code)
			}
			if !strings.Contains(r.out+r.err, tc.want) {
				t.Errorf("output lacks %q:\n%s%s", tc.want, r.out, r.err)
			}
		})
	}
}

func TestReportDrawing(t *testing.T) {
	if got := bar(50, 100, 10); got != "█████     " {
		t.Errorf("bar(50, 100, 10) = %q", got)
	}
	if got := bar(1, 1000, 10); !strings.HasPrefix(got, "▏") {
		t.Errorf("bar(1, 1000, 10) = %q: a non-zero value must show", got)
	}
	if got := bar(0, 0, 3); got != "   " {
		t.Errorf("bar(0, 0, 3) = %q", got)
	}
	if got := spark([]Second{{OK: 0}, {OK: 10}, {OK: 5}}, 10); got != " █▄" {
		t.Errorf("spark = %q", got)
	}
	ds := []time.Duration{5, 1, 4, 2, 3}
	if s := latencies(ds); s.N != 5 || s.P50 != 3 || s.P99 != 5 || s.Max != 5 {
		t.Errorf("latencies = %+v", s)
	}
	if s := latencies(nil); s != (LatencySummary{}) {
		t.Errorf("latencies(nil) = %+v", s)
	}
}

func TestConsole(t *testing.T) {
	var b bytes.Buffer
	c := &console{w: &b, tty: true}
	c.progress("p1")
	fmt.Fprintln(c, "log line")
	c.done()
	if got, want := b.String(), "\r\x1b[Kp1\r\x1b[Klog line\np1\r\x1b[K"; got != want {
		t.Errorf("tty console wrote %q, want %q", got, want)
	}
	b.Reset()
	c = &console{w: &b}
	c.progress("p1")
	fmt.Fprintln(c, "log line")
	c.done()
	if got, want := b.String(), "p1\nlog line\n"; got != want {
		t.Errorf("plain console wrote %q, want %q", got, want)
	}
}
