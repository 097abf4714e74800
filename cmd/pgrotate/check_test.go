package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"

	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/rdsauth"
	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
	"github.com/pgrotate/rotating/secrets/vault/vaulttest"
)

// rds is a secret value in the RDS format.
func rds(user, password string, extra ...string) string {
	s := fmt.Sprintf(`{"engine":"postgres","username":%q,"password":%q`, user, password)
	for i := 0; i+1 < len(extra); i += 2 {
		s += fmt.Sprintf(",%q:%s", extra[i], extra[i+1])
	}
	return s + "}"
}

// putPending starts a rotation of the secret and stores value as its
// AWSPENDING version, as createSecret does.
func putPending(t *testing.T, sm *awssmtest.Server, id, value string) {
	t.Helper()
	client := sm.Client(t.Context())
	rot, err := client.RotateSecret(t.Context(), &secretsmanager.RotateSecretInput{SecretId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.PutSecretValue(t.Context(), &secretsmanager.PutSecretValueInput{
		SecretId: aws.String(id), ClientRequestToken: rot.VersionId,
		SecretString: aws.String(value), VersionStages: []string{"AWSPENDING"},
	}); err != nil {
		t.Fatal(err)
	}
}

func TestCheckAWS(t *testing.T) {
	pg := pgtest.Shared(t)
	sm := startSM(t)
	role, password := pgtest.NewRole(t, pg)
	wrong := newPassword()
	dsn := baseDSN(pg)

	sm.CreateSecret("ok", rds(role, password, "host", `"db.example"`, "port", "5432"))
	sm.CreateSecret("malformed", `{"username": "app", "password": `)
	sm.CreateSecret("nopassword", `{"username": "app"}`)
	sm.CreateSecret("refused", rds(role, wrong))
	sm.CreateSecret("pending-works", rds(role, wrong))
	putPending(t, sm, "pending-works", rds(role, password))
	sm.CreateSecret("both-refused", rds(role, wrong))
	putPending(t, sm, "both-refused", rds(role, newPassword()))
	sm.CreateSecret("pending-not-yet", rds(role, password))
	putPending(t, sm, "pending-not-yet", rds(role, newPassword()))
	sm.CreateSecret("from-secret", rds(role, password, "dbname", `"postgres"`))

	cases := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"ok", []string{"-secret-id", "ok"}, exitOK, []string{
			`username "` + role + `"`, "version ", "PostgreSQL ", "TLS: off", "sslmode=disable",
			`the secret's "db.example" is not used, the DSN wins`, "from the secret",
			"pending     none (no rotation in progress", "rotation    not enabled", "exit 0"}},
		{"not found", []string{"-secret-id", "nope"}, exitSource, []string{"secret not found in region us-east-1", "exit 2"}},
		{"malformed", []string{"-secret-id", "malformed"}, exitSource, []string{"malformed", "RDS JSON format", "exit 2"}},
		{"no password", []string{"-secret-id", "nopassword"}, exitSource, []string{"no usable password", `"password"`}},
		{"refused", []string{"-secret-id", "refused"}, exitDatabase, []string{
			"password authentication failed for user", "28P01", "the store has nothing newer", "exit 3"}},
		{"pending works", []string{"-secret-id", "pending-works"}, exitPendingOnly, []string{
			"a rotation is in progress", "accepts AWSPENDING but not AWSCURRENT", "exit 4", "finishSecret"}},
		{"both refused", []string{"-secret-id", "both-refused"}, exitDatabase, []string{
			"a rotation is in progress", "accepts neither AWSCURRENT nor AWSPENDING", "exit 3"}},
		{"pending not yet", []string{"-secret-id", "pending-not-yet"}, exitOK, []string{
			"does not accept AWSPENDING yet", "rotation    enabled", "AWSPENDING", "exit 0"}},
		{"dbname from secret", []string{"-secret-id", "from-secret", "-dsn", fmt.Sprintf("host=%s port=%d sslmode=disable", pg.Host, pg.Port)},
			exitOK, []string{"dbname   postgres               from the secret (the DSN leaves it unset)"}},
		{"unreachable", []string{"-secret-id", "ok", "-dsn", "host=127.0.0.1 port=1 sslmode=disable"}, exitDatabase, []string{
			"cannot reach 127.0.0.1:1", "exit 3"}},
	}
	// Every finding is the same through either driver: the merge, the
	// login and the explanations of its failures.
	for _, drv := range []driverName{driverPQ, driverPGX} {
		for _, tc := range cases {
			t.Run(string(drv)+"/"+tc.name, func(t *testing.T) {
				args := append([]string{"check", "-driver", string(drv), "-dsn", dsn}, tc.args...)
				r := runCmd(t, t.Context(), args, nil)
				if r.code != tc.code {
					t.Errorf("exit %d, want %d", r.code, tc.code)
				}
				for _, w := range append(tc.want, "driver      "+drv.title()) {
					if !strings.Contains(r.out, w) {
						t.Errorf("output lacks %q", w)
					}
				}
				assertNoSecret(t, "check's output", r.out+r.err, password, wrong)
			})
		}
	}

	t.Run("not permitted", func(t *testing.T) {
		sm.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{Error: "AccessDeniedException", Message: "User is not authorized"})
		defer sm.ClearFaults()
		r := runCmd(t, t.Context(), []string{"check", "-dsn", dsn, "-secret-id", "ok"}, nil)
		if r.code != exitSource || !strings.Contains(r.out, "not permitted") || !strings.Contains(r.out, "secretsmanager:GetSecretValue") {
			t.Errorf("exit %d, want %d and 'not permitted ... secretsmanager:GetSecretValue'", r.code, exitSource)
		}
	})
	t.Run("describe not permitted", func(t *testing.T) {
		sm.InjectFault(awssmtest.OpDescribeSecret, awssmtest.Fault{Error: "AccessDeniedException"})
		defer sm.ClearFaults()
		r := runCmd(t, t.Context(), []string{"check", "-dsn", dsn, "-secret-id", "ok"}, nil)
		if r.code != exitOK || !strings.Contains(r.out, "rotation    not permitted (secretsmanager:DescribeSecret)") {
			t.Errorf("exit %d, want 0 and DescribeSecret 'not permitted'", r.code)
		}
	})
	t.Run("no region", func(t *testing.T) {
		t.Setenv("AWS_REGION", "")
		t.Setenv("AWS_DEFAULT_REGION", "")
		r := runCmd(t, t.Context(), []string{"check", "-dsn", dsn, "-secret-id", "ok"}, nil)
		if r.code != exitSource || !strings.Contains(r.out, "no AWS region") {
			t.Errorf("exit %d, want %d and 'no AWS region'", r.code, exitSource)
		}
	})
}

func TestCheckFileAndEnv(t *testing.T) {
	pg := pgtest.Shared(t)
	role, password := pgtest.NewRole(t, pg)
	dsn := baseDSN(pg)
	dir := t.TempDir()
	good := filepath.Join(dir, "db.json")
	if err := os.WriteFile(good, []byte(rds(role, password)), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"username": 3, "password": "x"}`), 0o600); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		args []string
		env  map[string]string
		code int
		want []string
	}{
		{"file", []string{"-file", good}, nil, exitOK, []string{"file " + good, "no version id", "exit 0"}},
		{"file missing", []string{"-file", filepath.Join(dir, "none")}, nil, exitSource, []string{"does not exist", "exit 2"}},
		{"file malformed", []string{"-file", bad}, nil, exitSource, []string{"malformed", `"username"`}},
		{"env", []string{"-env"}, map[string]string{"DB_USER": role, "DB_PASSWORD": password}, exitOK, []string{"env DB_USER/DB_PASSWORD", "exit 0"}},
		{"env unset", []string{"-env"}, map[string]string{"DB_USER": role}, exitSource, []string{"DB_PASSWORD", "exit 2"}},
		{"env json", []string{"-env-json", "DB_SECRET"}, map[string]string{"DB_SECRET": rds(role, password)}, exitOK, []string{"env DB_SECRET"}},
		{"env refused", []string{"-env"}, map[string]string{"DB_USER": role, "DB_PASSWORD": "wrong-" + password}, exitDatabase, []string{"28P01", "exit 3"}},
		// Where each field comes from, by the connector's rule: the
		// environment's host, a password that is never used.
		{"env host", []string{"-file", good, "-dsn", fmt.Sprintf("port=%d dbname=postgres sslmode=disable password=unused", pg.Port)},
			map[string]string{"PGHOST": pg.Host}, exitOK, []string{
				"host     " + pg.Host, "from the environment (PGHOST) (not in the secret)",
				"note: the DSN holds a password; the connector never uses it"}},
	}
	for _, drv := range []driverName{driverPQ, driverPGX} {
		for _, tc := range cases {
			t.Run(string(drv)+"/"+tc.name, func(t *testing.T) {
				if _, set := tc.env["DB_PASSWORD"]; !set {
					os.Unsetenv("DB_PASSWORD") // t.Setenv below restores what it changes
				}
				for k, v := range tc.env {
					t.Setenv(k, v)
				}
				args := append([]string{"check", "-driver", string(drv), "-dsn", dsn}, tc.args...)
				r := runCmd(t, context.Background(), args, nil)
				if r.code != tc.code {
					t.Errorf("exit %d, want %d", r.code, tc.code)
				}
				for _, w := range tc.want {
					if !strings.Contains(r.out, w) {
						t.Errorf("output lacks %q", w)
					}
				}
				assertNoSecret(t, "check's output", r.out+r.err, password)
			})
		}
	}
}

// TestMergedLogin checks that check logs in through the driver it names,
// with the connector's own merge: the secret's login, the DSN's endpoint,
// and the sslmode as that driver reads it.
func TestMergedLogin(t *testing.T) {
	cred := secrets.Credential{Username: "secret_user", Password: "pw", Host: "secret.host", Port: 6543, Database: "secretdb"}
	for _, tc := range []struct {
		drv    driverName
		driver any
	}{{driverPQ, &pq.Driver{}}, {driverPGX, stdlib.GetDefaultDriver()}} {
		for _, dsn := range []string{"host=dsn.host dbname=dsndb user=dsn_user sslmode=require", "postgres://dsn_user@dsn.host/dsndb?sslmode=require"} {
			got, err := mergedLogin(tc.drv, dsn, cred, time.Second)
			if err != nil {
				t.Fatalf("%s %q: %v", tc.drv, dsn, err)
			}
			if got.user != "secret_user" || got.host != "dsn.host" || got.port != 6543 || got.database != "dsndb" || got.sslmode != "require" {
				t.Errorf("%s %q: login %+v, want secret_user at dsn.host:6543/dsndb, sslmode require", tc.drv, dsn, got)
			}
			if d := got.connector.Driver(); reflect.TypeOf(d) != reflect.TypeOf(tc.driver) {
				t.Errorf("%s: logs in with %T", tc.drv, d)
			}
		}
		if _, err := mergedLogin(tc.drv, "host=h", secrets.Credential{Username: "u"}, time.Second); !errors.Is(err, secrets.ErrEmptyPassword) {
			t.Errorf("%s: empty password: %v, want ErrEmptyPassword", tc.drv, err)
		}
	}
}

func TestPGXSSLMode(t *testing.T) {
	for _, mode := range []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"} {
		cfg, err := pgx.ParseConfig("host=db.example sslmode=" + mode)
		if err != nil {
			t.Fatal(err)
		}
		if got := pgxSSLMode(&cfg.Config); got != mode {
			t.Errorf("sslmode=%s reads as %q", mode, got)
		}
	}
	cfg, err := pgx.ParseConfig("host=/tmp sslmode=require")
	if err != nil {
		t.Fatal(err)
	}
	if got := pgxSSLMode(&cfg.Config); got != "disable" {
		t.Errorf("a socket reads as %q: pgx uses no TLS there", got)
	}
}

func TestParseDriver(t *testing.T) {
	for in, want := range map[string]driverName{"pq": driverPQ, "libpq": driverPQ, "lib/pq": driverPQ, "pgx": driverPGX, "pgx/v5": driverPGX} {
		if got, ok := parseDriver(in); !ok || got != want {
			t.Errorf("parseDriver(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "PGX", "pgx/v4", "postgres", "mysql", " pgx"} {
		if got, ok := parseDriver(in); ok {
			t.Errorf("parseDriver(%q) = %q: want it refused", in, got)
		}
	}
}

// TestCheckIAM runs check -iam against a real PostgreSQL whose logins for
// the role go through the RDS stand-in of internal/rdsauth (pg_hba.conf's
// ldap method and a token verifier for the environment's AWS keys), so
// that the token check builds is accepted or refused as RDS would, with
// 28000.
func TestCheckIAM(t *testing.T) {
	const (
		keyID   = "AKIACHECKIAMTEST0001"
		secret  = "check-iam-secret-access-key"
		session = "check-iam-session-token"
	)
	pg := pgtest.Server(t)
	role, password := pgtest.NewRole(t, pg)
	v := rdsauth.NewVerifier(net.JoinHostPort(pg.Host, strconv.Itoa(pg.Port)), "us-east-1")
	v.Allow(aws.Credentials{AccessKeyID: keyID, SecretAccessKey: secret, SessionToken: session})
	ldap, err := rdsauth.StartLDAP(v.Check)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ldap.Close)
	if err := ldap.Route(t.Context(), pg, role); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": keyID, "AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": session,
		"AWS_PROFILE": "", "AWS_CONFIG_FILE": filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
		"AWS_WEB_IDENTITY_TOKEN_FILE": "", "AWS_ROLE_ARN": "",
	} {
		t.Setenv(k, v)
	}
	dsn := fmt.Sprintf("host=%s port=%d user=%s dbname=postgres sslmode=disable", pg.Host, pg.Port, role)

	cases := []struct {
		name string
		args []string
		env  map[string]string
		code int
		want []string
	}{
		{"ok", []string{"-dsn", dsn}, nil, exitOK, []string{
			"RDS IAM authentication, region us-east-1", "rds-iam " + role + "@", `username "` + role + `", IAM token signed at `,
			"the token expires at ", "), 15 minutes after it was signed", "password (never shown)          the IAM token",
			"ok as \"" + role + "\"", "TLS: off", "RDS accepts IAM tokens only over TLS", "exit 0"}},
		{"region flag", []string{"-dsn", dsn, "-region", "eu-west-1"}, nil, exitDatabase, []string{
			"region eu-west-1", "refused the IAM token (SQLSTATE 28000", "GRANT rds_iam TO " + role,
			"rds-db:connect on arn:aws:rds-db:eu-west-1:ACCOUNT:dbuser:DBI-RESOURCE-ID/" + role, "exit 3"}},
		{"key not allowed", []string{"-dsn", dsn}, map[string]string{"AWS_ACCESS_KEY_ID": "AKIACHECKIAMUNKNOWN1"}, exitDatabase, []string{
			"SQLSTATE 28000", "exit 3"}},
		{"short credentials", []string{"-dsn", dsn}, map[string]string{"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": ""},
			exitSource, []string{"no usable AWS credentials to sign the IAM token with", "exit 2"}},
		{"no user", []string{"-dsn", baseDSN(pg)}, nil, exitUsage, []string{"names no user"}},
		{"no region", []string{"-dsn", dsn}, map[string]string{"AWS_REGION": "", "AWS_DEFAULT_REGION": ""}, exitSource, []string{"no AWS region", "(or give -region)"}},
	}
	for _, drv := range []driverName{driverPQ, driverPGX} {
		for _, tc := range cases {
			t.Run(string(drv)+"/"+tc.name, func(t *testing.T) {
				for k, v := range tc.env {
					t.Setenv(k, v)
				}
				args := append([]string{"check", "-iam", "-driver", string(drv)}, tc.args...)
				r := runCmd(t, t.Context(), args, nil)
				if r.code != tc.code {
					t.Errorf("exit %d, want %d", r.code, tc.code)
				}
				for _, w := range tc.want {
					if !strings.Contains(r.out, w) {
						t.Errorf("output lacks %q", w)
					}
				}
				assertNoSecret(t, "check's output", r.out+r.err, secret, session, password, "X-Amz-Signature", "X-Amz-Credential")
			})
		}
	}
	if v.Accepted() != 2 {
		t.Errorf("the stand-in accepted %d tokens, want 2 (one per driver)", v.Accepted())
	}
	t.Run("-region without -iam", func(t *testing.T) {
		r := runCmd(t, t.Context(), []string{"check", "-env", "-region", "us-east-1"}, nil)
		if r.code != exitUsage || !strings.Contains(r.err, "-region goes with -iam") {
			t.Errorf("exit %d, want %d and '-region goes with -iam'", r.code, exitUsage)
		}
	})
}

// vaultEnv points the Vault client of the environment at addr with token,
// isolated from the caller's own Vault settings; the client's retries are
// off so that a fault answers at once.
func vaultEnv(t *testing.T, addr, token string) {
	t.Helper()
	for k, v := range map[string]string{
		"VAULT_ADDR": addr, "VAULT_TOKEN": token, "VAULT_MAX_RETRIES": "0",
		"VAULT_AGENT_ADDR": "", "VAULT_NAMESPACE": "", "VAULT_CACERT": "", "VAULT_CAPATH": "", "VAULT_CLIENT_CERT": "",
		"VAULT_CLIENT_KEY": "", "VAULT_SKIP_VERIFY": "", "VAULT_TLS_SERVER_NAME": "", "VAULT_CLIENT_TIMEOUT": "",
		"VAULT_HEADERS": "", "VAULT_RATE_LIMIT": "", "VAULT_SRV_LOOKUP": "", "VAULT_HTTP_PROXY": "", "VAULT_PROXY_ADDR": "",
	} {
		t.Setenv(k, v)
	}
}

// TestCheckVault runs check -store vault against a Vault-compatible server
// (vaulttest) over the shared PostgreSQL server, through the real
// vault/api client configured from the environment: a static role, a
// dynamic role (whose lease check revokes), KV secrets, and Vault's
// failures, each with what to do about it and never a token or password.
func TestCheckVault(t *testing.T) {
	pg := pgtest.Shared(t)
	srv, err := vaulttest.NewServer(pg.Admin())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("closing the Vault server: %v", err)
		}
	})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	role, password := pgtest.NewRole(t, pg)
	staticUser, _ := pgtest.NewRole(t, pg)
	if err := srv.SetStaticRole(t.Context(), "app", vaulttest.StaticRole{Username: staticUser, RotationPeriod: time.Hour}); err != nil {
		t.Fatal(err)
	}
	for name, ttl := range map[string]time.Duration{"dyn": time.Hour, "short": 30 * time.Second} {
		if err := srv.SetRole(name, vaulttest.DynamicRole{DefaultTTL: ttl, MaxTTL: 2 * ttl}); err != nil {
			t.Fatal(err)
		}
	}
	for path, data := range map[string]map[string]any{
		"prod/db":     {"username": role, "password": password},
		"prod/wrong":  {"username": role, "password": "wrong-" + password},
		"prod/nopass": {"username": role},
	} {
		if _, err := srv.PutKV(path, data); err != nil {
			t.Fatal(err)
		}
	}
	token, err := srv.CreateToken(vaulttest.TokenOptions{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	dsn := baseDSN(pg)

	cases := []struct {
		name  string
		args  []string
		setup func(t *testing.T)
		code  int
		want  []string
	}{
		{"static", []string{"-vault-role", "static:app"}, nil, exitOK, []string{
			"HashiCorp Vault at VAULT_ADDR " + srv.URL(), "token: from VAULT_TOKEN, accessor " + srv.TokenAccessor(token),
			"TTL 1h0m0s, renewable", "source      vault-static-role database/app", `username "` + staticUser + `", last rotated `,
			"(last_vault_rotation)", "next rotation at ", "(in 1h0m0s, the answer's ttl)", "password (never shown)          from Vault",
			`ok as "` + staticUser + `"`, "exit 0"}},
		{"dynamic", []string{"-vault-role", "dynamic:dyn"}, nil, exitOK, []string{
			"vault-dynamic-role database/dyn", "lease database/creds/dyn/", "the lease ends at ", "(in 1h0m0s): Vault then drops the user",
			"ok as \"v-token-dyn-", "revoked the lease check read (sys/leases/revoke)", "exit 0"}},
		{"dynamic short", []string{"-vault-role", "dynamic:short"}, nil, exitOK, []string{
			"(in 30s)", "note: with the connector's defaults (WithSessionMargin(1m0s), WithRefreshBeforeExpiry(1m0s)) a lease",
			"needs at least 2m30s: give the connector smaller margins (say 8s and 4s)", "revoked the lease", "exit 0"}},
		{"kv", []string{"-vault-role", "kv:secret/prod/db"}, nil, exitOK, []string{
			"vault-kv secret/prod/db", `username "` + role + `", KV version 1`, "exit 0"}},
		{"kv mount flag", []string{"-vault-mount", "secret", "-vault-role", "kv:prod/db"}, nil, exitOK, []string{"vault-kv secret/prod/db", "exit 0"}},
		{"kv refused", []string{"-vault-role", "kv:secret/prod/wrong"}, nil, exitDatabase, []string{"28P01", "exit 3"}},
		{"kv no password", []string{"-vault-role", "kv:secret/prod/nopass"}, nil, exitSource, []string{"no usable password", "exit 2"}},
		{"kv not found", []string{"-vault-role", "kv:secret/prod/none"}, nil, exitSource, []string{
			"Vault has nothing at secret/data/prod/none (404)", "exit 2"}},
		{"unknown role", []string{"-vault-role", "static:nope"}, nil, exitSource, []string{
			"Vault refused the request (400)", "unknown role", "does the role exist under this mount (-vault-mount)?", "exit 2"}},
		{"wrong mount", []string{"-vault-mount", "db", "-vault-role", "dynamic:dyn"}, nil, exitSource, []string{"db/creds/dyn", "exit 2"}},
		{"permission denied", []string{"-vault-role", "static:app"}, func(t *testing.T) {
			srv.InjectFault(vaulttest.OpStaticCreds, vaulttest.Fault{Status: 403})
			t.Cleanup(srv.ClearFaults)
		}, exitSource, []string{"Vault refused the token (403): its policies must allow read on database/static-creds/app", "exit 2"}},
		{"dynamic denied", []string{"-vault-role", "dynamic:dyn"}, func(t *testing.T) {
			srv.InjectFault(vaulttest.OpCreds, vaulttest.Fault{Status: 403})
			t.Cleanup(srv.ClearFaults)
		}, exitSource, []string{"read on database/creds/dyn (and update on sys/leases/renew)", "exit 2"}},
		{"sealed", []string{"-vault-role", "static:app"}, func(t *testing.T) {
			srv.Seal()
			t.Cleanup(srv.Unseal)
		}, exitSource, []string{"token: lookup-self failed (503 Vault is sealed)", "is sealed or not ready (503)", "exit 2"}},
		{"no token", []string{"-vault-role", "static:app"}, func(t *testing.T) { t.Setenv("VAULT_TOKEN", "") }, exitSource, []string{
			"token: none (VAULT_TOKEN is not set)", "Vault refused the token (403)", "exit 2"}},
		{"unreachable", []string{"-vault-role", "static:app"}, func(t *testing.T) { t.Setenv("VAULT_ADDR", "http://127.0.0.1:1") }, exitSource, []string{
			"HashiCorp Vault at VAULT_ADDR http://127.0.0.1:1", "cannot reach Vault at http://127.0.0.1:1: check VAULT_ADDR", "exit 2"}},
	}
	for _, drv := range []driverName{driverPQ, driverPGX} {
		for _, tc := range cases {
			t.Run(string(drv)+"/"+tc.name, func(t *testing.T) {
				vaultEnv(t, srv.URL(), token)
				if tc.setup != nil {
					tc.setup(t)
				}
				before := len(srv.Leases())
				args := append([]string{"check", "-driver", string(drv), "-dsn", dsn, "-store", "vault"}, tc.args...)
				r := runCmd(t, t.Context(), args, nil)
				// A lease check read is revoked before it reports, and
				// its user dropped.
				for _, l := range srv.Leases()[before:] {
					if l.EndReason != vaulttest.EndRevoked || l.RevokedAt.IsZero() || pgRoleExists(t, pg, l.Username) {
						t.Errorf("lease %s: ended %v (%q), user left: %v; want it revoked and its user dropped",
							l.ID, l.Ended, l.EndReason, pgRoleExists(t, pg, l.Username))
					}
				}
				if n := len(srv.Leases()) - before; strings.HasPrefix(tc.name, "dynamic") && tc.code == exitOK && n != 1 {
					t.Errorf("%d leases read, want 1", n)
				}
				if r.code != tc.code {
					t.Errorf("exit %d, want %d", r.code, tc.code)
				}
				for _, w := range tc.want {
					if !strings.Contains(r.out, w) {
						t.Errorf("output lacks %q", w)
					}
				}
				if s := vaultSecrets.FindString(r.out + r.err); s != "" {
					t.Errorf("check's output holds a password or token of the Vault server (%d characters)", len(s))
				}
				assertNoSecret(t, "check's output", r.out+r.err, token, password, srv.RootToken())
			})
		}
	}
}

// pgRoleExists reports whether the role name exists on pg.
func pgRoleExists(t *testing.T, pg *pgserver.Server, name string) bool {
	t.Helper()
	var exists bool
	if err := pg.Admin().QueryRowContext(t.Context(), "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	return exists
}
