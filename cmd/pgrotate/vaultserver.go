package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lib/pq"

	"github.com/pgrotate/rotating/internal/loopback"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/secrets/vault/vaulttest"
)

const vaultServerUsage = `Usage: pgrotate vault-server [-addr 127.0.0.1:8200] [-dsn SUPERUSER-DSN] [-role NAME [-ttl 1h] [-max-ttl 24h]]
       [-static-role NAME [-static-username USER] [-rotation-period 1h]] [-kv-path PATH -kv-data JSON] [-tls] [-v]

Runs a local HashiCorp Vault-compatible server (the vaulttest package) until
Ctrl-C, so that your application, the vault CLI or the vault/api client can
be pointed at it during development. Its database secrets engine manages
real PostgreSQL roles: on the server of -dsn (a superuser DSN), or on a
throwaway PostgreSQL server it starts on 127.0.0.1 when -dsn is not given.
It serves only on a loopback address, and prints the environment variables
that point Vault clients at it (VAULT_ADDR, VAULT_TOKEN with the root
token, VAULT_CACERT with -tls).

It implements the database engine at database/ (creds/:role,
static-creds/:name, rotate-role/:name), sys/leases/renew, lookup and
revoke, KV version 2 at secret/, auth/token/lookup-self, renew-self,
revoke-self and create, and sys/health. A dynamic role's every read
creates a PostgreSQL role v-<token name>-<role>-... (v-root-... with the
root token) with VALID UNTIL its lease's end, dropped (its sessions ended)
when the lease ends; a static role's password changes every rotation
period, or on rotate-role.

-creation-statement replaces Vault's default creation statement; give it
once per statement, with Vault's template fields, for example:

  -creation-statement 'CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '\''{{password}}'\'' VALID UNTIL '\''{{expiration}}'\'''
  -creation-statement 'GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO "{{name}}"'

A static role's user is created (LOGIN, no password until the first
rotation) if it does not exist. When the server stops, the roles of the
leases still open are dropped.

Flags:
`

// stringsFlag collects the values of a flag given several times.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, "; ") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

// vaultServerConfig is the parsed command line.
type vaultServerConfig struct {
	addr, dsn, token       string
	role                   string
	ttl, maxTTL            time.Duration
	creation               stringsFlag
	staticRole, staticUser string
	rotation               time.Duration
	kvPath                 string
	kvData                 map[string]any
	tls                    bool
	caFile                 string
	verbose                bool
}

func parseVaultServerFlags(args []string, std *stdio) (cfg vaultServerConfig, code int, stop bool) {
	fs := flag.NewFlagSet("pgrotate vault-server", flag.ContinueOnError)
	fs.SetOutput(std.err)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), vaultServerUsage)
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), "\n"+exitCodesHelp)
	}
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:8200", "loopback address to listen on (port 0 picks a free one)")
	fs.StringVar(&cfg.dsn, "dsn", "", "superuser DSN of the PostgreSQL server whose roles it manages (default: a throwaway server)")
	fs.StringVar(&cfg.token, "token", "", "the root token's id (default: a random hvs. token)")
	fs.StringVar(&cfg.role, "role", "", "name of a dynamic role to create (database/creds/NAME)")
	fs.DurationVar(&cfg.ttl, "ttl", time.Hour, "the dynamic role's default_ttl (whole seconds)")
	fs.DurationVar(&cfg.maxTTL, "max-ttl", 24*time.Hour, "the dynamic role's max_ttl (whole seconds)")
	fs.Var(&cfg.creation, "creation-statement", "the dynamic role's creation statement (repeatable; default Vault's CREATE ROLE)")
	fs.StringVar(&cfg.staticRole, "static-role", "", "name of a static role to create (database/static-creds/NAME)")
	fs.StringVar(&cfg.staticUser, "static-username", "", "the static role's PostgreSQL user (default: the static role's name)")
	fs.DurationVar(&cfg.rotation, "rotation-period", time.Hour, "the static role's rotation period (whole seconds)")
	fs.StringVar(&cfg.kvPath, "kv-path", "", "path of a KV v2 secret to write at start (secret/data/PATH)")
	kvData := fs.String("kv-data", "", "the KV secret's data, a JSON object")
	fs.BoolVar(&cfg.tls, "tls", false, "serve HTTPS with a certificate from a CA generated at start")
	fs.StringVar(&cfg.caFile, "ca-file", "", "with -tls, where to write the CA certificate for VAULT_CACERT (default: a temporary file)")
	fs.BoolVar(&cfg.verbose, "v", false, "log every request (operation, path, status; never a password or token)")
	if code, stop := parseFlags(fs, args); stop {
		return cfg, code, true
	}
	bad := func(format string, args ...any) (vaultServerConfig, int, bool) {
		fmt.Fprintf(std.err, "pgrotate vault-server: "+format+"\n", args...)
		return cfg, exitUsage, true
	}
	switch err := loopback.CheckAddr(cfg.addr); {
	case errors.Is(err, loopback.ErrNotLoopback):
		return bad("-addr %q: serve on a loopback address (127.0.0.1, [::1], localhost): "+
			"the server hands out database credentials, so it must not be reachable from other machines", cfg.addr)
	case err != nil:
		return bad("-addr: %v", err)
	}
	for name, d := range map[string]time.Duration{"-ttl": cfg.ttl, "-max-ttl": cfg.maxTTL, "-rotation-period": cfg.rotation} {
		if d < time.Second || d%time.Second != 0 {
			return bad("%s %v: want a whole number of seconds, at least 1s", name, d)
		}
	}
	if cfg.maxTTL < cfg.ttl {
		return bad("-max-ttl %v is shorter than -ttl %v", cfg.maxTTL, cfg.ttl)
	}
	if cfg.staticUser != "" && cfg.staticRole == "" {
		return bad("-static-username needs -static-role")
	}
	if cfg.staticUser == "" {
		cfg.staticUser = cfg.staticRole
	}
	switch {
	case cfg.kvPath == "" && *kvData != "":
		return bad("-kv-data needs -kv-path")
	case cfg.kvPath != "" && *kvData == "":
		return bad("-kv-path needs -kv-data, a JSON object")
	case cfg.kvPath != "":
		if err := json.Unmarshal([]byte(*kvData), &cfg.kvData); err != nil || cfg.kvData == nil {
			return bad("-kv-data: want a JSON object such as {\"username\": \"app\", \"password\": \"...\"}")
		}
	}
	if cfg.caFile != "" && !cfg.tls {
		return bad("-ca-file needs -tls")
	}
	return cfg, 0, false
}

func vaultServerCommand(ctx context.Context, args []string, std *stdio) int {
	cfg, code, stop := parseVaultServerFlags(args, std)
	if stop {
		return code
	}
	log := newLogger(std.err, cfg.verbose)
	fail := func(code int, format string, args ...any) int {
		fmt.Fprintf(std.err, "pgrotate vault-server: "+format+"\n", args...)
		return code
	}

	dsn, secret := cfg.dsn, ""
	var pg *pgserver.Server
	if dsn == "" {
		log.Info("starting a throwaway PostgreSQL server on 127.0.0.1")
		var err error
		pg, err = pgserver.Start(ctx, pgserver.Options{Logf: func(format string, args ...any) { log.Debug(fmt.Sprintf(format, args...)) }})
		if errors.Is(err, pgserver.ErrNotInstalled) {
			return fail(exitDatabase, "PostgreSQL's server binaries (initdb, pg_ctl, postgres) were not found.\n"+
				"  Install them (on Debian or Ubuntu: apt-get install postgresql), or give -dsn a superuser DSN of your own server")
		}
		if err != nil {
			if ctx.Err() != nil {
				return exitInterrupted
			}
			return fail(exitDatabase, "starting PostgreSQL: %v", err)
		}
		defer func() {
			log.Info("stopping PostgreSQL and removing its directory")
			if err := pg.Stop(); err != nil {
				log.Error("stopping PostgreSQL", slog.Any("error", err))
			}
		}()
		dsn = pg.SuperDSN()
	}
	if c, err := pq.NewConfig(dsn); err == nil {
		secret = c.Password
	} else if pg == nil {
		return fail(exitUsage, "-dsn: not a PostgreSQL DSN (%s)", redactText(err.Error(), dsn))
	}
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return fail(exitUsage, "-dsn: %s", redactText(err.Error(), secret, dsn))
	}
	defer db.Close()
	pingCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = db.PingContext(pingCtx)
	cancel()
	if err != nil {
		return fail(exitDatabase, "connecting to PostgreSQL: %s", redactText(err.Error(), secret, dsn))
	}

	opts := []vaulttest.Option{vaulttest.WithAddr(cfg.addr)}
	if cfg.token != "" {
		opts = append(opts, vaulttest.WithRootToken(cfg.token))
	}
	if cfg.tls {
		opts = append(opts, vaulttest.WithTLS())
	}
	if cfg.verbose {
		opts = append(opts, vaulttest.WithLogger(log))
	}
	srv, err := vaulttest.NewServer(db, opts...)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	defer func() {
		if err := srv.Close(); err != nil {
			log.Error("revoking the leases left", slog.Any("error", err))
		}
	}()

	if cfg.role != "" {
		role := vaulttest.DynamicRole{DefaultTTL: cfg.ttl, MaxTTL: cfg.maxTTL, CreationStatements: cfg.creation}
		if err := srv.SetRole(cfg.role, role); err != nil {
			return fail(exitUsage, "-role: %v", err)
		}
		log.Info("dynamic role", slog.String("path", "database/creds/"+cfg.role), slog.Duration("ttl", cfg.ttl), slog.Duration("max_ttl", cfg.maxTTL))
	}
	if cfg.staticRole != "" {
		var exists bool
		if err := db.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", cfg.staticUser).Scan(&exists); err != nil {
			return fail(exitDatabase, "looking up -static-username %q: %s", cfg.staticUser, redactText(err.Error(), secret))
		}
		if !exists {
			if _, err := db.ExecContext(ctx, "CREATE ROLE "+pq.QuoteIdentifier(cfg.staticUser)+" LOGIN"); err != nil {
				return fail(exitDatabase, "creating the static role's user %q: %s", cfg.staticUser, redactText(err.Error(), secret))
			}
			log.Info("created the static role's PostgreSQL user", slog.String("username", cfg.staticUser))
		}
		err := srv.SetStaticRole(ctx, cfg.staticRole, vaulttest.StaticRole{Username: cfg.staticUser, RotationPeriod: cfg.rotation})
		if err != nil {
			return fail(exitDatabase, "-static-role: %s", redactText(err.Error(), secret))
		}
		log.Info("static role", slog.String("path", "database/static-creds/"+cfg.staticRole),
			slog.String("username", cfg.staticUser), slog.Duration("rotation_period", cfg.rotation))
	}
	if cfg.kvPath != "" {
		version, err := srv.PutKV(cfg.kvPath, cfg.kvData)
		if err != nil {
			return fail(exitUsage, "-kv-path: %v", err)
		}
		log.Info("KV secret", slog.String("path", "secret/data/"+strings.Trim(cfg.kvPath, "/")), slog.Int("version", version))
	}

	if err := srv.Start(); err != nil {
		return fail(exitSource, "%v", err)
	}
	url := srv.URL()
	caFile := cfg.caFile
	if cfg.tls {
		if caFile == "" {
			dir, err := os.MkdirTemp("", "pgrotate-vault-server-")
			if err != nil {
				return fail(exitSource, "%v", err)
			}
			defer os.RemoveAll(dir)
			caFile = filepath.Join(dir, "ca.pem")
		}
		if err := srv.WriteCACert(caFile); err != nil {
			return fail(exitSource, "writing the CA certificate: %v", err)
		}
	}

	fmt.Fprintf(std.out, "# Vault-compatible server at %s; point Vault clients at it with:\n", url)
	fmt.Fprintf(std.out, "export VAULT_ADDR=%s\n", url)
	fmt.Fprintf(std.out, "export VAULT_TOKEN=%s  # the root token\n", srv.RootToken())
	if cfg.tls {
		fmt.Fprintf(std.out, "export VAULT_CACERT=%s\n", caFile)
	}
	if pg != nil {
		fmt.Fprintf(std.out, "# its database engine manages roles on a throwaway PostgreSQL server:\n")
		fmt.Fprintf(std.out, "export PGHOST=%s PGPORT=%s PGDATABASE=postgres\n", pg.Host, strconv.Itoa(pg.Port))
	}
	if cfg.role != "" {
		fmt.Fprintf(std.out, "# dynamic credentials: vault read database/creds/%s\n", cfg.role)
	}
	if cfg.staticRole != "" {
		fmt.Fprintf(std.out, "# static credentials:  vault read database/static-creds/%s\n", cfg.staticRole)
	}
	if cfg.kvPath != "" {
		fmt.Fprintf(std.out, "# KV secret:           vault kv get secret/%s\n", strings.Trim(cfg.kvPath, "/"))
	}
	log.Info("serving until Ctrl-C", slog.String("url", url))
	if std.onListen != nil {
		std.onListen(url)
	}
	<-ctx.Done()
	log.Info("stopping: revoking the leases still open")
	return exitOK
}

// redactText replaces each non-empty secret in text.
func redactText(text string, secrets ...string) string {
	for _, s := range secrets {
		if s != "" {
			text = strings.ReplaceAll(text, s, "[redacted]")
		}
	}
	return text
}
