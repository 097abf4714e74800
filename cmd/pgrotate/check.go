package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/dsnkeys"
	"github.com/pgrotate/rotating/pgxv5"
	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/awssm"
	"github.com/pgrotate/rotating/secrets/rdsiam"
)

const checkUsage = `Usage: pgrotate check [-dsn DSN] (-secret-id ID | -file PATH | -env | -env-json VAR | -iam [-region R]) [flags]
       pgrotate check [-dsn DSN] -store vault -vault-role static:NAME|dynamic:NAME|kv:MOUNT/PATH [-vault-mount M] [flags]

Checks a deployment's set-up the way the rotating connector will use it:
fetches the credential from the source, reports what it found (username,
version, which login fields come from the secret and which from the DSN;
never the password), logs in with it and reports the server version and
TLS state. For AWS Secrets Manager it also reports whether a pending
version (AWSPENDING) exists and logs in, and the secret's rotation settings
if DescribeSecret is permitted. Each failure comes with what to do about it.

The DSN is the application's, without a password. As in the connector, the
secret's username and password replace the DSN's, and the secret's host,
port and dbname fill only what the DSN leaves unset.

-driver pgx merges and logs in through pgx v5's database/sql adapter, as an
application using rotating.WithDriver(pgxv5.Driver()) does; lib/pq is the
default.

-secret-id uses the standard AWS configuration: AWS_REGION, AWS_PROFILE,
the shared config and credentials files, instance and task roles, and
AWS_ENDPOINT_URL_SECRETS_MANAGER (for a local endpoint such as
"pgrotate sm-server"). It needs secretsmanager:GetSecretValue (and
DescribeSecret for the rotation settings, which is optional).

-iam logs in with an RDS IAM authentication token, as secrets/rdsiam does:
built locally from the standard AWS configuration's credentials for the
host, port and user of the DSN (which must name all three: the token is
bound to them) in -region (default: the AWS configuration's), and reports
when the token expires and what bounds it; never the token. It needs
rds-db:connect on the database user, the user needs the rds_iam role, and
RDS requires TLS (sslmode=verify-full with the RDS CA bundle).

-store vault reads the credential from HashiCorp Vault through the
secrets/vault source that -vault-role names: static:NAME a static role
(database/static-creds/NAME), dynamic:NAME a dynamic role
(database/creds/NAME), kv:MOUNT/PATH a KV version 2 secret holding the
RDS-style JSON keys. -vault-mount sets the database secrets engine's mount
("database" by default), or the KV engine's (the whole value of kv: is
then the path). The client is configured as Vault's own is, from the
environment: VAULT_ADDR, VAULT_TOKEN, VAULT_NAMESPACE, VAULT_CACERT and
friends. check reports the token's TTL, the credential's version (the
static role's last rotation, the lease id, the KV version) and when it
changes: a static role's next rotation, a dynamic lease's end (its
SessionsEnd), against the connector's margins; never the token or the
password. A dynamic role's read creates a database user: check revokes
that lease when it is done (sys/leases/revoke), or says why it could not.

Flags:
`

type checkConfig struct {
	dsn, secretID, file, envJSON string
	driver                       driverName
	env, iam                     bool
	region                       string
	store, vaultRole, vaultMount string
	timeout                      time.Duration
	verbose                      bool
}

func checkCommand(ctx context.Context, args []string, std *stdio) int {
	var cfg checkConfig
	fs := flag.NewFlagSet("pgrotate check", flag.ContinueOnError)
	fs.SetOutput(std.err)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), checkUsage)
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), "\n"+exitCodesHelp)
	}
	fs.StringVar(&cfg.dsn, "dsn", "", "the application's DSN without password (key=value or postgres:// URL)")
	drv := fs.String("driver", string(driverPQ), driverFlagHelp)
	fs.StringVar(&cfg.secretID, "secret-id", "", "AWS Secrets Manager secret, name or ARN")
	fs.StringVar(&cfg.file, "file", "", "file holding the RDS-format JSON secret or a plain password")
	fs.BoolVar(&cfg.env, "env", false, "environment variables DB_USER, DB_PASSWORD, DB_HOST, DB_PORT, DB_NAME")
	fs.StringVar(&cfg.envJSON, "env-json", "", "one environment variable holding the whole JSON secret")
	fs.BoolVar(&cfg.iam, "iam", false, "an RDS IAM authentication token for the DSN's host, port and user")
	fs.StringVar(&cfg.region, "region", "", "with -iam: the DB instance's AWS region (default: the AWS configuration's)")
	fs.StringVar(&cfg.store, "store", "", "vault: read the credential from HashiCorp Vault (with -vault-role)")
	fs.StringVar(&cfg.vaultRole, "vault-role", "", "with -store vault: static:NAME, dynamic:NAME or kv:MOUNT/PATH")
	fs.StringVar(&cfg.vaultMount, "vault-mount", "", "with -store vault: the secrets engine's mount (default database; for kv, the mount, the value being the path)")
	fs.DurationVar(&cfg.timeout, "timeout", 15*time.Second, "bound for each fetch and login")
	fs.BoolVar(&cfg.verbose, "v", false, "debug logging (never a secret value)")
	if code, stop := parseFlags(fs, args); stop {
		return code
	}
	switch {
	case cfg.store != "" && cfg.store != storeVault && cfg.store != storeAWS:
		fmt.Fprintf(std.err, "pgrotate check: -store %q: want vault (or aws, for -secret-id and -iam)\n", cfg.store)
		return exitUsage
	case cfg.store == storeVault && cfg.vaultRole == "":
		fmt.Fprintln(std.err, "pgrotate check: -store vault needs -vault-role static:NAME, dynamic:NAME or kv:MOUNT/PATH")
		return exitUsage
	case cfg.vaultRole != "" && cfg.store != storeVault:
		fmt.Fprintln(std.err, "pgrotate check: -vault-role goes with -store vault")
		return exitUsage
	case cfg.vaultMount != "" && cfg.vaultRole == "":
		fmt.Fprintln(std.err, "pgrotate check: -vault-mount goes with -store vault and -vault-role")
		return exitUsage
	}
	n := 0
	for _, set := range []bool{cfg.secretID != "", cfg.file != "", cfg.env, cfg.envJSON != "", cfg.iam, cfg.vaultRole != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		fmt.Fprintln(std.err, "pgrotate check: give one source: -secret-id ID, -file PATH, -env, -env-json VAR, -iam or -store vault -vault-role ...")
		return exitUsage
	}
	if cfg.vaultRole != "" {
		if _, _, _, err := parseVaultRole(cfg.vaultRole, cfg.vaultMount); err != nil {
			fmt.Fprintf(std.err, "pgrotate check: -vault-role %q: %v\n", cfg.vaultRole, err)
			return exitUsage
		}
	}
	if cfg.region != "" && !cfg.iam {
		fmt.Fprintln(std.err, "pgrotate check: -region goes with -iam")
		return exitUsage
	}
	if cfg.timeout <= 0 {
		fmt.Fprintln(std.err, "pgrotate check: -timeout must be positive")
		return exitUsage
	}
	var ok bool
	if cfg.driver, ok = parseDriver(*drv); !ok {
		fmt.Fprintf(std.err, "pgrotate check: "+badDriver+"\n", *drv)
		return exitUsage
	}
	c := &checker{cfg: cfg, out: std.out, errw: std.err}
	return c.run(ctx)
}

// checker runs one check and prints its findings.
type checker struct {
	cfg  checkConfig
	out  io.Writer
	errw io.Writer

	region string
	client *secretsmanager.Client
	vault  *vaultCheck // -store vault
}

func (c *checker) say(label, format string, args ...any) {
	fmt.Fprintf(c.out, "  %-10s  %s\n", label, fmt.Sprintf(format, args...))
}

func (c *checker) more(format string, args ...any) {
	fmt.Fprintf(c.out, "  %-10s  %s\n", "", fmt.Sprintf(format, args...))
}

func (c *checker) fail(code int, label, format string, args ...any) int {
	c.say(label, "FAIL: "+format, args...)
	fmt.Fprintln(c.out)
	fmt.Fprintf(c.out, "  result      exit %d: %s\n", code, exitMeaning[code])
	return code
}

var exitMeaning = map[int]string{
	exitOK:          "the application can log in with the current credential",
	exitSource:      "the credential could not be read from the source",
	exitDatabase:    "no credential from the source logs in to the database",
	exitPendingOnly: "only the pending credential (AWSPENDING) logs in",
}

func (c *checker) run(ctx context.Context) int {
	fmt.Fprintln(c.out, "pgrotate check")
	fmt.Fprintln(c.out)
	conn, err := rotating.NewConnector(c.cfg.dsn, secrets.Static(secrets.Credential{Password: "x"}), c.cfg.driver.option()...)
	if err != nil {
		var de *rotating.DSNError
		if errors.As(err, &de) {
			fmt.Fprintf(c.errw, "pgrotate check: -dsn: %s\n", de.Reason)
		} else {
			// The driver's own error may quote the DSN, password included.
			fmt.Fprintf(c.errw, "pgrotate check: -dsn: %s cannot parse it (or a PG* environment variable)\n", c.cfg.driver)
		}
		return exitUsage
	}
	conn.Close()
	c.say("driver", "%s", c.cfg.driver.describe())

	src, code := c.source(ctx)
	if code != exitOK {
		return code
	}
	c.say("source", "%s", secrets.Describe(src))

	fctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	begin := time.Now()
	cred, err := src.Fetch(fctx)
	cancel()
	if err != nil {
		if c.vault != nil {
			return c.fail(exitSource, "credential", "%s", c.vault.explain(err))
		}
		return c.fail(exitSource, "credential", "%s", explainSourceError(err, c.region))
	}
	if c.vault != nil {
		// A dynamic role's read made a database user: revoke it whatever
		// the login's outcome.
		defer c.vault.revoke(ctx, c, cred)
		c.vault.describe(c, cred, begin)
	} else if c.cfg.iam {
		c.say("credential", "username %q, IAM token signed at %s, built in %s (the token is never shown)",
			cred.Username, cred.Version, ms(time.Since(begin)))
		c.more("the token expires at %s (in %s), %s", cred.Expires.UTC().Format(time.RFC3339),
			time.Until(cred.Expires).Round(time.Second), c.expiryBound(cred))
		c.more("the connector builds the next one ahead of that (rotating.WithRefreshBeforeExpiry)")
	} else {
		c.say("credential", "username %q, %s, fetched in %s", cred.Username, versionText(cred.Version), ms(time.Since(begin)))
	}
	var has []string
	for _, f := range []struct {
		name string
		set  bool
	}{{"host", cred.Host != ""}, {"port", cred.Port != 0}, {"dbname", cred.Database != ""}} {
		if f.set {
			has = append(has, f.name)
		}
	}
	if len(has) > 0 && !c.cfg.iam {
		c.more("the secret also holds: %s", strings.Join(has, ", "))
	}

	merged, err := mergedLogin(c.cfg.driver, c.cfg.dsn, cred, c.cfg.timeout)
	if err != nil {
		return c.fail(exitSource, "credential", "the connector would refuse it: %v", err)
	}
	c.printOrigins(cred, merged)

	current := c.login(ctx, "connect", merged)
	pendingWorks := false
	// A Vault dynamic role's FetchPending reads another lease: not a
	// pending version to report.
	if ps, ok := src.(secrets.PendingSource); ok && c.vault == nil {
		pendingWorks = c.checkPending(ctx, ps, cred, current)
	}
	if c.client != nil {
		c.describe(ctx)
	}
	if c.vault != nil {
		c.vault.revoke(ctx, c, cred)
	}
	fmt.Fprintln(c.out)
	code = exitOK
	switch {
	case current == nil:
	case isAuthFailure(current) && pendingWorks:
		code = exitPendingOnly
	default:
		code = exitDatabase
	}
	fmt.Fprintf(c.out, "  result      exit %d: %s\n", code, exitMeaning[code])
	if code == exitPendingOnly {
		fmt.Fprintln(c.out, "              the rotating connector bridges this with AWSPENDING, but clients that read only")
		fmt.Fprintln(c.out, "              AWSCURRENT fail until the rotation's finishSecret step runs: finish or fix the rotation")
	}
	return code
}

// source builds the credential source the flags name.
func (c *checker) source(ctx context.Context) (secrets.Source, int) {
	switch {
	case c.cfg.file != "":
		return secrets.File(c.cfg.file), exitOK
	case c.cfg.env:
		return secrets.Env(secrets.EnvVars{}), exitOK
	case c.cfg.envJSON != "":
		return secrets.Env(secrets.EnvVars{JSON: c.cfg.envJSON}), exitOK
	case c.cfg.iam:
		return c.iamSource(ctx)
	case c.cfg.vaultRole != "":
		return c.vaultSource(ctx)
	}
	lctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	awsCfg, err := config.LoadDefaultConfig(lctx)
	if err != nil {
		return nil, c.fail(exitSource, "source", "loading the AWS configuration: %v", err)
	}
	if awsCfg.Region == "" {
		return nil, c.fail(exitSource, "source", "no AWS region: set AWS_REGION, or a region in the AWS profile in use")
	}
	c.region = awsCfg.Region
	c.client = secretsmanager.NewFromConfig(awsCfg)
	src, err := awssm.New(c.client, c.cfg.secretID)
	if err != nil {
		return nil, c.fail(exitUsage, "source", "%v", err)
	}
	where := "region " + c.region
	if ep := os.Getenv("AWS_ENDPOINT_URL_SECRETS_MANAGER"); ep != "" {
		where += ", endpoint " + ep
	} else if ep := os.Getenv("AWS_ENDPOINT_URL"); ep != "" {
		where += ", endpoint " + ep
	}
	fmt.Fprintf(c.out, "  %-10s  AWS Secrets Manager, %s\n", "aws", where)
	return src, exitOK
}

// iamSource builds the RDS IAM source for the DSN's host, port and user.
func (c *checker) iamSource(ctx context.Context) (secrets.Source, int) {
	db, err := rdsiam.DBFromDSN(c.cfg.dsn)
	if err != nil {
		return nil, c.fail(exitUsage, "source", "%v", err)
	}
	db.Region = c.cfg.region
	lctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	src, err := rdsiam.NewFromConfig(lctx, db)
	if err != nil {
		hint := ""
		if strings.Contains(err.Error(), "no AWS region") {
			hint = " (or give -region)"
		}
		return nil, c.fail(exitSource, "source", "%v%s", err, hint)
	}
	c.region = src.DB().Region
	fmt.Fprintf(c.out, "  %-10s  RDS IAM authentication, region %s\n", "aws", c.region)
	return src, exitOK
}

// expiryBound says what bounds an IAM token's life: RDS's 15 minutes, or
// the AWS credentials' expiry.
func (c *checker) expiryBound(cred secrets.Credential) string {
	signed, err := time.Parse(time.RFC3339, cred.Version)
	if err == nil && cred.Expires.Sub(signed) < rdsiam.TokenLifetime {
		return "when the AWS credentials that signed it expire (sooner than RDS's 15 minutes)"
	}
	return "15 minutes after it was signed"
}

// printOrigins says where each login field comes from, by the connector's
// own rule of which keys the DSN sets (internal/dsnkeys).
func (c *checker) printOrigins(cred secrets.Credential, merged loginTarget) {
	keys := dsnkeys.Of(c.cfg.dsn)
	sets := map[string]bool{"user": keys.User, "host": keys.Host, "port": keys.Port, "dbname": keys.DBName, "sslmode": keys.SSLMode}
	// setBy is the environment variable that sets key where the DSN does
	// not, "" if none does.
	setBy := func(key string) string {
		name := map[string]string{"user": "PGUSER", "sslmode": "PGSSLMODE"}[key]
		if name == "" {
			return dsnkeys.EnvSetting(key)
		}
		if os.Getenv(name) == "" {
			return ""
		}
		return name
	}
	notSecret := func(key, def string) string {
		switch {
		case sets[key]:
			return "from the DSN"
		case setBy(key) != "":
			return "from the environment (" + setBy(key) + ")"
		}
		return def
	}
	fromSecret := func(key, def string, secretHas bool, secretVal, mergedVal string) string {
		switch {
		case !secretHas:
			return notSecret(key, def) + " (not in the secret)"
		case secretVal == mergedVal && sets[key]:
			return "from the DSN (the secret says the same)"
		case secretVal == mergedVal:
			return "from the secret (the DSN leaves it unset)"
		}
		return fmt.Sprintf("%s: the secret's %q is not used, the DSN wins", notSecret(key, "from the DSN"), secretVal)
	}
	defaults := string(c.cfg.driver) + "'s default"
	user := "from the secret"
	if c.vault != nil {
		user = "from Vault"
	}
	if cred.Username == "" {
		user = notSecret("user", defaults+" (the operating system user)") + " (the secret has no username)"
	}
	port := ""
	if cred.Port != 0 {
		port = fmt.Sprint(cred.Port)
	}
	sslmode := merged.sslmode
	if sslmode == "" {
		sslmode = "(unset)"
	}
	rows := [][3]string{
		{"user", merged.user, user},
		{"host", merged.host, fromSecret("host", defaults, cred.Host != "", cred.Host, merged.host)},
		{"port", fmt.Sprint(merged.port), fromSecret("port", defaults, cred.Port != 0, port, fmt.Sprint(merged.port))},
		{"dbname", merged.database, fromSecret("dbname", defaults+" (the user name)", cred.Database != "", cred.Database, merged.database)},
		{"sslmode", sslmode, notSecret("sslmode", defaults)},
		{"password", "(never shown)", c.passwordOrigin()},
	}
	for i, r := range rows {
		label := ""
		if i == 0 {
			label = "login"
		}
		c.say(label, "%-8s %-22s %s", r[0], r[1], r[2])
	}
	if keys.Password || os.Getenv("PGPASSWORD") != "" {
		where := "the DSN"
		if !keys.Password {
			where = "PGPASSWORD"
		}
		c.more("note: %s holds a password; the connector never uses it (the secret's is used): remove it", where)
	}
}

func (c *checker) passwordOrigin() string {
	switch {
	case c.cfg.iam:
		return "the IAM token"
	case c.vault != nil:
		return "from Vault"
	}
	return "from the secret"
}

// login logs in with target, prints what it found and returns the login's
// error, nil if it worked.
func (c *checker) login(ctx context.Context, label string, target loginTarget) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	begin := time.Now()
	info, err := probeLogin(ctx, target)
	if err != nil {
		if code, _, _ := serverError(err); c.cfg.iam && code == "28000" {
			c.say(label, "FAIL: %s", explainIAMRefusal(err, target, c.region))
			return err
		}
		c.say(label, "FAIL: %s", explainLoginError(err, target, c.cfg.timeout))
		return err
	}
	c.say(label, "ok as %q on database %q in %s: PostgreSQL %s", info.user, info.database, ms(time.Since(begin)), info.version)
	c.more("TLS: %s", info.tls)
	if c.cfg.iam && !strings.HasPrefix(info.tls, "on") {
		c.more("note: RDS accepts IAM tokens only over TLS; use sslmode=verify-full with the RDS CA bundle")
	}
	return nil
}

type loginInfo struct {
	user, database, version, tls string
}

// probeLogin opens one connection with target and asks who it is, the
// server version and the connection's TLS state.
func probeLogin(ctx context.Context, target loginTarget) (loginInfo, error) {
	db := sql.OpenDB(target.connector)
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return loginInfo{}, err
	}
	defer conn.Close()
	var info loginInfo
	if err := conn.QueryRowContext(ctx, "SELECT current_user, current_database(), current_setting('server_version')").
		Scan(&info.user, &info.database, &info.version); err != nil {
		return loginInfo{}, err
	}
	var (
		ssl             bool
		version, cipher sql.NullString
	)
	err = conn.QueryRowContext(ctx, "SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl, &version, &cipher)
	switch {
	case err == nil && ssl:
		info.tls = fmt.Sprintf("on (%s, %s)", version.String, cipher.String)
	case err == nil:
		info.tls = "off: this connection is not encrypted"
		if target.sslmode == string(pq.SSLModeDisable) {
			info.tls += " (sslmode=disable)"
		} else {
			info.tls += "; set sslmode=require (or verify-full) in the DSN unless the network is trusted"
		}
	default:
		var setting string
		if conn.QueryRowContext(ctx, "SHOW ssl").Scan(&setting) == nil {
			info.tls = "unknown for this connection (pg_stat_ssl unreadable); the server's ssl setting is " + setting
		} else {
			info.tls = "unknown (neither pg_stat_ssl nor SHOW ssl answered)"
		}
	}
	return info, nil
}

// checkPending fetches AWSPENDING and, if there is one, logs in with it.
// currentErr is the current credential's login error. It reports whether
// the pending credential logs in.
func (c *checker) checkPending(ctx context.Context, ps secrets.PendingSource, current secrets.Credential, currentErr error) bool {
	fctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	pending, err := ps.FetchPending(fctx, current)
	cancel()
	switch {
	case errors.Is(err, secrets.ErrNoPending):
		why := "no rotation in progress"
		var ae *awssm.Error
		if errors.As(err, &ae) && errors.Unwrap(ae.Err) != nil {
			why += ": " + strings.TrimPrefix(ae.Err.Error(), secrets.ErrNoPending.Error()+": ")
		}
		c.say("pending", "none (%s)", why)
		if currentErr != nil && isAuthFailure(currentErr) {
			c.more("the current credential is refused and the store has nothing newer: the database's password")
			c.more("was changed without updating the secret (a runbook half done, or a failed rotation);")
			c.more("put the database's password in the secret, or set the secret's in the database")
		}
		return false
	case err != nil:
		if isAccessDenied(err) {
			c.say("pending", "reading AWSPENDING is not permitted: allow secretsmanager:GetSecretValue for the")
			c.more("AWSPENDING stage too (secretsmanager:VersionStage condition); without it the connector")
			c.more("cannot bridge a single-user rotation's window and waits for finishSecret instead")
			return false
		}
		c.say("pending", "FAIL: %s", explainSourceError(err, c.region))
		return false
	}
	c.say("pending", "AWSPENDING holds username %q, %s: a rotation is in progress", pending.Username, versionText(pending.Version))
	if currentErr != nil && !isAuthFailure(currentErr) {
		c.more("(not tried: the database could not be reached with the current credential either)")
		return false
	}
	merged, err := mergedLogin(c.cfg.driver, c.cfg.dsn, pending, c.cfg.timeout)
	if err != nil {
		c.more("FAIL: the connector would refuse it: %v", err)
		return false
	}
	if err := c.login(ctx, "", merged); err != nil {
		if currentErr == nil {
			c.more("the database does not accept AWSPENDING yet: the rotation has not run setSecret, or")
			c.more("it failed there (see the rotation function's logs); the current credential works meanwhile")
		} else {
			c.more("the database accepts neither AWSCURRENT nor AWSPENDING: its password was changed outside")
			c.more("the rotation; set it to one of the two (the rotation function's setSecret does this)")
		}
		return false
	}
	if currentErr != nil {
		c.more("the database accepts AWSPENDING but not AWSCURRENT: the rotation is between setSecret and")
		c.more("finishSecret, or stopped there")
	}
	return true
}

// describe prints the secret's rotation settings, if DescribeSecret is
// permitted.
func (c *checker) describe(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	out, err := c.client.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(c.cfg.secretID)})
	if err != nil {
		if isAccessDenied(err) {
			c.say("rotation", "not permitted (secretsmanager:DescribeSecret); the connector does not need it")
			return
		}
		c.say("rotation", "DescribeSecret failed: %s", explainSourceError(err, c.region))
		return
	}
	if !aws.ToBool(out.RotationEnabled) {
		c.say("rotation", "not enabled for this secret")
	} else {
		var parts []string
		if r := out.RotationRules; r != nil {
			if r.AutomaticallyAfterDays != nil {
				parts = append(parts, fmt.Sprintf("every %d days", *r.AutomaticallyAfterDays))
			}
			if r.ScheduleExpression != nil {
				parts = append(parts, "schedule "+*r.ScheduleExpression)
			}
			if r.Duration != nil {
				parts = append(parts, "window "+*r.Duration)
			}
		}
		if len(parts) == 0 {
			parts = append(parts, "no schedule")
		}
		c.say("rotation", "enabled, %s", strings.Join(parts, ", "))
		if arn := aws.ToString(out.RotationLambdaARN); arn != "" {
			c.more("function %s", arn)
		}
	}
	if out.LastRotatedDate != nil {
		c.more("last rotated %s", out.LastRotatedDate.UTC().Format(time.RFC3339))
	}
	if out.NextRotationDate != nil {
		c.more("next rotation %s", out.NextRotationDate.UTC().Format(time.RFC3339))
	}
	ids := make([]string, 0, len(out.VersionIdsToStages))
	for id := range out.VersionIdsToStages {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		return stageRank(out.VersionIdsToStages[ids[i]]) < stageRank(out.VersionIdsToStages[ids[j]])
	})
	for _, id := range ids {
		c.more("version %s: %s", id, strings.Join(out.VersionIdsToStages[id], ", "))
	}
}

func stageRank(stages []string) int {
	for i, s := range []string{awssm.StageCurrent, awssm.StagePending, "AWSPREVIOUS"} {
		if slices.Contains(stages, s) {
			return i
		}
	}
	return 3
}

func versionText(v string) string {
	if v == "" {
		return "no version id (this source has none)"
	}
	return "version " + v
}

// loginTarget is one login as the connector would make it, whichever the
// driver: the fields of the merged configuration that check shows and
// explains failures with, and the driver's connector for it.
type loginTarget struct {
	user, host, database string
	port                 uint16
	sslmode              string // as the driver will use it; "" if unset
	connector            driver.Connector
}

// mergedLogin returns the login the connector makes for cred from dsn
// through drv, each attempt bounded by timeout. An unusable credential (an
// empty password) is an error, as in the connector.
func mergedLogin(drv driverName, dsn string, cred secrets.Credential, timeout time.Duration) (loginTarget, error) {
	if drv == driverPGX {
		cfg, err := mergedPGXConfig(dsn, cred)
		if err != nil {
			return loginTarget{}, err
		}
		if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > timeout {
			cfg.ConnectTimeout = timeout
		}
		return loginTarget{
			user: cfg.User, host: cfg.Host, port: cfg.Port, database: cfg.Database,
			sslmode: pgxSSLMode(&cfg.Config), connector: stdlib.GetConnector(*cfg),
		}, nil
	}
	cfg, err := mergedConfig(dsn, cred)
	if err != nil {
		return loginTarget{}, err
	}
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > timeout {
		cfg.ConnectTimeout = timeout
	}
	connector, err := pq.NewConnectorConfig(cfg)
	if err != nil {
		return loginTarget{}, err
	}
	return loginTarget{
		user: cfg.User, host: cfg.Host, port: cfg.Port, database: cfg.Database,
		sslmode: string(cfg.SSLMode), connector: connector,
	}, nil
}

// errCaptured ends the Connect that mergedConfig and mergedPGXConfig make.
var errCaptured = errors.New("pgrotate: configuration captured")

// mergedConfig returns the lib/pq configuration the connector builds for
// cred from dsn: the connector's own merge, captured through
// WithNewConnector, so that check logs in exactly as the application would.
func mergedConfig(dsn string, cred secrets.Credential) (pq.Config, error) {
	var got pq.Config
	err := captureLogin(dsn, cred, rotating.WithNewConnector(func(cfg pq.Config) (driver.Connector, error) {
		got = cfg
		return rotating.ConnectorFunc(func(context.Context) (driver.Conn, error) { return nil, errCaptured }), nil
	}))
	return got, err
}

// mergedPGXConfig returns the pgx configuration the connector builds for
// cred from dsn with the pgxv5 driver: captured by stdlib's BeforeConnect,
// which sees the configuration the login would use.
func mergedPGXConfig(dsn string, cred secrets.Credential) (*pgx.ConnConfig, error) {
	var got *pgx.ConnConfig
	err := captureLogin(dsn, cred, rotating.WithDriver(pgxv5.Driver(stdlib.OptionBeforeConnect(
		func(_ context.Context, cfg *pgx.ConnConfig) error {
			got = cfg.Copy()
			return errCaptured
		}))))
	return got, err
}

// captureLogin runs one Connect of a connector for dsn and cred with opts,
// whose connector must capture the configuration and end the Connect with
// errCaptured.
func captureLogin(dsn string, cred secrets.Credential, opts ...rotating.Option) error {
	c, err := rotating.NewConnector(dsn, secrets.Static(cred), opts...)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Connect(context.Background()); !errors.Is(err, errCaptured) {
		var fe *rotating.FetchError
		if errors.As(err, &fe) {
			return fe.Err
		}
		return err
	}
	return nil
}

// pgxSSLMode names the sslmode a pgx configuration amounts to for its
// first host. pgx keeps no sslmode, only the TLS configurations it derived
// from it: a fallback without TLS to the same host for prefer, one with
// TLS for allow; require without verification, verify-ca with a
// certificate check of its own, verify-full with Go's.
func pgxSSLMode(cfg *pgconn.Config) string {
	var fallbackPlain, fallbackTLS bool
	for _, f := range cfg.Fallbacks {
		if f.Host == cfg.Host && f.Port == cfg.Port {
			fallbackPlain = fallbackPlain || f.TLSConfig == nil
			fallbackTLS = fallbackTLS || f.TLSConfig != nil
		}
	}
	t := cfg.TLSConfig
	switch {
	case t == nil && fallbackTLS:
		return "allow"
	case t == nil:
		return "disable"
	case fallbackPlain:
		return "prefer"
	case !t.InsecureSkipVerify:
		return "verify-full"
	case t.VerifyPeerCertificate != nil:
		return "verify-ca"
	}
	return "require"
}

// isAccessDenied reports whether err is AWS's AccessDeniedException.
func isAccessDenied(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "AccessDeniedException"
}

// explainSourceError says what went wrong reading a credential and what to
// do about it. Source errors never contain a secret value.
func explainSourceError(err error, region string) string {
	var (
		apiErr  smithy.APIError
		signErr *v4.SigningError
		netErr  *net.OpError
		iamErr  *rdsiam.Error
	)
	switch {
	case errors.Is(err, rdsiam.ErrNoAccessKey), errors.Is(err, rdsiam.ErrCredentialsExpired),
		errors.As(err, &iamErr) && iamErr.Op == rdsiam.OpRetrieveCredentials:
		return "no usable AWS credentials to sign the IAM token with: configure them (AWS_PROFILE, AWS_ACCESS_KEY_ID and " +
			"AWS_SECRET_ACCESS_KEY, an instance or task role): " + err.Error()
	case errors.Is(err, secrets.ErrMalformed):
		return "the secret's value is malformed: " + err.Error() +
			"; want the RDS JSON format {\"username\": ..., \"password\": ..., \"host\": ..., \"port\": ..., \"dbname\": ...} or a plain password"
	case errors.Is(err, secrets.ErrEmptyPassword):
		return "the secret has no usable password: " + err.Error()
	case errors.Is(err, fs.ErrNotExist):
		return err.Error() + ": the file does not exist (is the secret mounted, and is the path right?)"
	case errors.Is(err, fs.ErrPermission):
		return err.Error() + ": this process may not read the file"
	case errors.As(err, &apiErr):
		switch apiErr.ErrorCode() {
		case "ResourceNotFoundException":
			return fmt.Sprintf("secret not found in region %s: check the name or ARN, and AWS_REGION (%s)", region, err)
		case "AccessDeniedException":
			return fmt.Sprintf("not permitted: this AWS identity may not call secretsmanager:GetSecretValue on the secret "+
				"(nor kms:Decrypt on its key, if it is a customer managed key); add them to its policy (%s)", err)
		case "DecryptionFailure":
			return fmt.Sprintf("Secrets Manager could not decrypt the secret: allow kms:Decrypt on the secret's KMS key (%s)", err)
		case "InvalidRequestException":
			return fmt.Sprintf("the request was refused; a secret scheduled for deletion answers this (%s)", err)
		case "UnrecognizedClientException", "InvalidClientTokenId", "ExpiredTokenException", "InvalidSignatureException", "SignatureDoesNotMatch":
			return fmt.Sprintf("AWS rejected this process's AWS credentials (%s): check AWS_PROFILE, the access keys or the session", apiErr.ErrorCode())
		}
		return err.Error()
	case errors.As(err, &signErr):
		return "no usable AWS credentials: configure them (AWS_PROFILE, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, " +
			"an instance or task role): " + err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out: " + err.Error()
	case errors.As(err, &netErr):
		return "cannot reach the secret store: " + err.Error()
	}
	return err.Error()
}

// explainIAMRefusal says why RDS may have refused an IAM token (SQLSTATE
// 28000, "PAM authentication failed") and what to check.
func explainIAMRefusal(err error, target loginTarget, region string) string {
	_, message, _ := serverError(err)
	return fmt.Sprintf("the server refused the IAM token (SQLSTATE 28000: %s). Check that the database user has the role "+
		"(GRANT rds_iam TO %s), that this AWS identity may rds-db:connect on "+
		"arn:aws:rds-db:%s:ACCOUNT:dbuser:DBI-RESOURCE-ID/%s, that %s:%d is the instance's (or proxy's) endpoint, "+
		"which the token is signed for, that %s is its region, and that this machine's clock is right",
		message, target.user, region, target.user, target.host, target.port, region)
}

// serverError is the server's refusal inside err, whichever driver
// returned it: its SQLSTATE and message.
func serverError(err error) (code, message string, ok bool) {
	var (
		pqErr *pq.Error
		pgErr *pgconn.PgError
	)
	switch {
	case errors.As(err, &pgErr):
		return pgErr.Code, pgErr.Message, true
	case errors.As(err, &pqErr):
		return pqErr.SQLState(), pqErr.Message, true
	}
	return "", "", false
}

// explainLoginError says why a login failed and what to do about it.
// Neither lib/pq's errors nor pgx's contain the password.
func explainLoginError(err error, target loginTarget, timeout time.Duration) string {
	var netErr *net.OpError
	addr := net.JoinHostPort(target.host, fmt.Sprint(target.port))
	if code, message, ok := serverError(err); ok {
		switch code {
		case "28P01":
			return fmt.Sprintf("password authentication failed for user %q (SQLSTATE 28P01): the database does not accept "+
				"this password, or has no such role; the secret and the database disagree", target.user)
		case "28000":
			return fmt.Sprintf("the server refused the login (SQLSTATE 28000: %s): pg_hba.conf lets no such connection in "+
				"(user %q, database %q, this address, sslmode %s), or IAM/LDAP/certificate authentication failed",
				message, target.user, target.database, target.sslmode)
		case "3D000":
			return fmt.Sprintf("database %q does not exist (SQLSTATE 3D000): fix dbname in the DSN or the secret", target.database)
		case "53300":
			return "the server has no free connection slot (SQLSTATE 53300): " + message
		}
		return fmt.Sprintf("%s (SQLSTATE %s)", message, code)
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "SSL is not enabled on the server"), // lib/pq
		strings.Contains(msg, "server refused TLS connection"): // pgx
		return fmt.Sprintf("sslmode=%s asks for TLS but the server at %s offers none: enable ssl on the server, "+
			"or use sslmode=disable on a trusted network only", target.sslmode, addr)
	case strings.Contains(msg, "x509:") || strings.Contains(msg, "tls:"):
		return "TLS failed: " + msg + " (for sslmode=verify-ca or verify-full, sslrootcert must name the server's CA)"
	case errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) || strings.Contains(msg, "i/o timeout"):
		return fmt.Sprintf("no answer from %s within %v: check the host, the port and the firewall or security groups", addr, timeout)
	case errors.As(err, &netErr):
		return fmt.Sprintf("cannot reach %s: %v: check the host and the port, and that the server listens there", addr, netErr.Err)
	}
	return msg
}
