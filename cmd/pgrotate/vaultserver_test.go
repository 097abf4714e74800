package main

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
)

// startVaultServer runs vault-server with args until the test ends and
// returns its URL and the variables it printed.
func startVaultServer(t *testing.T, args ...string) (url string, env map[string]string, stop func() (int, string)) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	listening := make(chan string, 1)
	var out, errw syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"vault-server", "-addr", "127.0.0.1:0"}, args...), &stdio{
			out: &out, err: &errw, onListen: func(url string) { listening <- url },
		})
	}()
	select {
	case url = <-listening:
	case code := <-done:
		cancel()
		t.Fatalf("vault-server exited %d before listening:\n%s", code, errw.String())
	case <-time.After(2 * time.Minute):
		cancel()
		t.Fatal("vault-server did not start listening")
	}
	stopped := false
	var code int
	stop = func() (int, string) {
		if !stopped {
			stopped = true
			cancel()
			select {
			case code = <-done:
			case <-time.After(time.Minute):
				t.Fatal("vault-server did not stop")
			}
		}
		return code, out.String() + errw.String()
	}
	t.Cleanup(func() { stop() })
	env = map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^export (.*)$`).FindAllStringSubmatch(out.String(), -1) {
		for _, kv := range strings.Fields(m[1]) {
			if k, v, ok := strings.Cut(kv, "="); ok {
				env[k] = v
			}
		}
	}
	return url, env, stop
}

// vaultClient is a vault/api client set up from the printed variables.
func vaultClient(t *testing.T, env map[string]string) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = env["VAULT_ADDR"]
	if ca := env["VAULT_CACERT"]; ca != "" {
		if err := cfg.ConfigureTLS(&api.TLSConfig{CACert: ca}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(env["VAULT_TOKEN"])
	return c
}

func TestVaultServer(t *testing.T) {
	pg := pgtest.Shared(t)
	user, _ := pgtest.NewRole(t, pg)
	url, env, stop := startVaultServer(t, "-dsn", pg.SuperDSN(), "-token", "test-root-token",
		"-role", "app", "-ttl", "30s", "-max-ttl", "1m",
		"-static-role", "static-app", "-static-username", user, "-rotation-period", "1h",
		"-kv-path", "app/db", "-kv-data", `{"username":"app","password":"kv-pw-123"}`, "-tls")
	if !strings.HasPrefix(url, "https://127.0.0.1:") || env["VAULT_ADDR"] != url || env["VAULT_TOKEN"] != "test-root-token" || env["VAULT_CACERT"] == "" {
		t.Fatalf("url %q, variables %v", url, env)
	}
	c := vaultClient(t, env)
	ctx := t.Context()

	s, err := c.Logical().ReadWithContext(ctx, "database/creds/app")
	if err != nil {
		t.Fatal(err)
	}
	dynUser, dynPW := s.Data["username"].(string), s.Data["password"].(string)
	if s.LeaseDuration != 30 || !strings.HasPrefix(dynUser, "v-root-app-") {
		t.Errorf("creds: lease %d s, user %q", s.LeaseDuration, dynUser)
	}
	if err := pgLogin(ctx, pg, dynUser, dynPW); err != nil {
		t.Errorf("login with the dynamic credentials: %v", err)
	}
	st, err := c.Logical().ReadWithContext(ctx, "database/static-creds/static-app")
	if err != nil {
		t.Fatal(err)
	}
	staticPW := st.Data["password"].(string)
	if st.Data["username"] != user {
		t.Errorf("static user %v, want %s", st.Data["username"], user)
	}
	if err := pgLogin(ctx, pg, user, staticPW); err != nil {
		t.Errorf("login with the static credentials: %v", err)
	}
	kv, err := c.KVv2("secret").Get(ctx, "app/db")
	if err != nil || kv.Data["password"] != "kv-pw-123" {
		t.Errorf("kv: %v, %v", kv, err)
	}

	code, output := stop()
	if code != exitOK {
		t.Errorf("exit %d after Ctrl-C, want 0", code)
	}
	// The lease left open was revoked at the end.
	var exists bool
	if err := pg.Admin().QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", dynUser).Scan(&exists); err != nil || exists {
		t.Errorf("the dynamic role after vault-server stopped: exists %v (%v)", exists, err)
	}
	if _, err := os.Stat(env["VAULT_CACERT"]); !os.IsNotExist(err) {
		t.Errorf("the temporary CA file is left: %v", err)
	}
	for _, want := range []string{"vault read database/creds/app", "vault read database/static-creds/static-app", "vault kv get secret/app/db"} {
		if !strings.Contains(output, want) {
			t.Errorf("output lacks %q:\n%s", want, output)
		}
	}
	assertNoSecret(t, "vault-server's output", output, dynPW, staticPW, "kv-pw-123", superPassword(t, pg))
}

// Without -dsn it starts a throwaway PostgreSQL server and says where.
func TestVaultServerThrowaway(t *testing.T) {
	t.Parallel()
	_, env, stop := startVaultServer(t, "-role", "app", "-static-role", "st", "-rotation-period", "2s", "-v")
	if env["PGHOST"] != "127.0.0.1" || env["PGPORT"] == "" {
		t.Fatalf("variables %v, want PGHOST and PGPORT", env)
	}
	c := vaultClient(t, env)
	s, err := c.Logical().ReadWithContext(t.Context(), "database/creds/app")
	if err != nil {
		t.Fatal(err)
	}
	dsn := "host=127.0.0.1 port=" + env["PGPORT"] + " dbname=postgres sslmode=disable user=" + s.Data["username"].(string) + " password=" + s.Data["password"].(string)
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.PingContext(t.Context()); err != nil {
		t.Errorf("login on the throwaway server: %v", err)
	}
	db.Close()
	st, err := c.Logical().ReadWithContext(t.Context(), "database/static-creds/st")
	if err != nil || st.Data["username"] != "st" {
		t.Fatalf("static-creds: %v, %v", st, err)
	}
	code, output := stop()
	if code != exitOK {
		t.Errorf("exit %d", code)
	}
	assertNoSecret(t, "vault-server's output", output, s.Data["password"].(string), st.Data["password"].(string))
	if !strings.Contains(output, "vaulttest request") || !strings.Contains(output, "created the static role's PostgreSQL user") {
		t.Errorf("the verbose log lacks requests or the user's creation:\n%s", output)
	}
}

func TestVaultServerBadFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, args := range map[string][]string{
		"not loopback":          {"-addr", "0.0.0.0:8200"},
		"ttl not seconds":       {"-ttl", "1500ms"},
		"max below ttl":         {"-ttl", "1h", "-max-ttl", "1m"},
		"kv data without path":  {"-kv-data", `{"a":"b"}`},
		"kv path without data":  {"-kv-path", "x"},
		"kv data not an object": {"-kv-path", "x", "-kv-data", `["a"]`},
		"username without role": {"-static-username", "u"},
		"ca file without tls":   {"-ca-file", filepath.Join(dir, "ca.pem")},
		"stray argument":        {"extra"},
	} {
		t.Run(name, func(t *testing.T) {
			r := runCmd(t, t.Context(), append([]string{"vault-server"}, args...), nil)
			if r.code != exitUsage {
				t.Errorf("exit %d, want %d", r.code, exitUsage)
			}
		})
	}
	r := runCmd(t, t.Context(), []string{"vault-server", "-dsn", "host=127.0.0.1 port=1 user=x password=secret-dsn-pw sslmode=disable connect_timeout=2"}, nil)
	if r.code != exitDatabase {
		t.Errorf("unreachable -dsn: exit %d, want %d", r.code, exitDatabase)
	}
	assertNoSecret(t, "the error", r.err, "secret-dsn-pw")
}

// pgLogin logs in as user and runs a query.
func pgLogin(ctx context.Context, pg *pgserver.Server, user, password string) error {
	db, err := sql.Open("postgres", pg.DSN(user, password, ""))
	if err != nil {
		return err
	}
	defer db.Close()
	var one int
	return db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}
