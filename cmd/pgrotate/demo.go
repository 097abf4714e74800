package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/lib/pq"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
	"github.com/pgrotate/rotating/secrets/awssm/rotation"
	"github.com/pgrotate/rotating/secrets/vault/vaulttest"
)

const demoUsage = `Usage: pgrotate demo [flags]

Shows an application staying up while its PostgreSQL credential rotates.
With no flags it starts a throwaway PostgreSQL server and a local AWS
Secrets Manager-compatible endpoint (both on 127.0.0.1), creates a role and
a secret in the RDS format, and runs workers that insert rows (at most
-rate statements per second in all) through
sql.OpenDB(rotating.NewConnector(...)) with the awssm source; each worker
logs in anew every -recycle (spread out, as in a pool) so that new logins
keep happening. Meanwhile it
rotates the credential -rotations times with AWS's four-step rotation
(holding the window between setSecret and finishSecret open for -window),
then once by a manual runbook (ALTER ROLE, the secret updated -window
later). A live progress line goes to stderr, a report to stdout: statements,
rows acknowledged vs found, secret fetches and rejected logins per rotation
(as the connector counted them and as the server logged them), login
latency and throughput per second. Everything it started is removed at the
end, also on Ctrl-C.

-driver pgx logs in through pgx v5's database/sql adapter
(rotating.WithDriver(pgxv5.Driver())) instead of lib/pq, the default.

-compare runs the same workload at the same time, each with its own role,
secret and table and the same rotations, through the approaches the library
replaces: a static DSN, the secret fetched before every login, and the pool
rebuilt after an authentication error. They log in through the same driver.

-store vault reads the credential from HashiCorp Vault's database secrets
engine instead: the demo starts a local Vault-compatible server (the
vaulttest package, on 127.0.0.1) over its throwaway PostgreSQL server and
runs the workers through sql.OpenDB(rotating.NewConnector(...)) with the
secrets/vault source of -role:

  -role static   vault.StaticRole: one user whose password Vault changes in
                 place, on the role's rotation_period (-rotation-period)
                 and, -rotations times, on demand (database/rotate-role)
                 half a period after a scheduled one. Each worker logs in
                 anew every -recycle, as above. The report shows each
                 rotation's Vault reads and rejected logins.
  -role dynamic  vault.DynamicRole (the default role): every read creates a
                 new PostgreSQL user under a lease of -ttl (default_ttl),
                 renewable up to -max-ttl (max_ttl); when a lease ends the
                 server revokes it as Vault does (REVOKE, end the sessions,
                 DROP ROLE). Each statement goes through a pool whose
                 connections live -recycle (SetConnMaxLifetime), so that
                 the connector can retire them: it renews the lease, reads
                 the next one ahead of max_ttl and retires the old lease's
                 connections before it ends, with margins that fit the TTL
                 (printed in the setup lines). The report shows every lease:
                 its renewals, its end, and the sessions still open when it
                 ended (pg_stat_activity at the revocation), which must be 0.

-dsn and -secret-id run the workload against your server and secret instead
(standard AWS configuration: AWS_REGION, AWS_PROFILE, ...). Nothing is
rotated then; rotate the secret yourself meanwhile to watch it bridged. A
table pgrotate_demo_<random> is created in the DSN's database and dropped
at the end.

Flags:
`

// demoConfig is the demo's flags.
type demoConfig struct {
	duration  time.Duration
	workers   int
	rate      int
	recycle   time.Duration
	rotations int
	strategy  rotation.Strategy
	window    time.Duration
	compare   bool
	driver    driverName
	dsn       string
	secretID  string
	verbose   bool

	// -store vault: the role kind, and its settings.
	store          string // storeAWS or storeVault
	role           string // roleStatic or roleDynamic
	rotationPeriod time.Duration
	ttl, maxTTL    time.Duration

	ignored []string // flags that -dsn/-secret-id make meaningless, if given
}

func (c demoConfig) external() bool { return c.dsn != "" || c.secretID != "" }

// demoHooks lets tests supply the servers instead of starting them.
type demoHooks struct {
	pg *pgserver.Server
	sm *awssmtest.Server
}

// parseDemoFlags parses the demo's flags; stop says to return code at once.
func parseDemoFlags(args []string, std *stdio) (cfg demoConfig, code int, stop bool) {
	fs := flag.NewFlagSet("pgrotate demo", flag.ContinueOnError)
	fs.SetOutput(std.err)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), demoUsage)
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), "\n"+exitCodesHelp)
	}
	fs.DurationVar(&cfg.duration, "duration", 20*time.Second, "how long the workload runs (longer if the rotations need it)")
	fs.IntVar(&cfg.workers, "workers", 8, "concurrent workers inserting rows (1..256)")
	fs.IntVar(&cfg.rate, "rate", 2000, "statements per second for all workers together, per approach (0: as fast as they go)")
	fs.DurationVar(&cfg.recycle, "recycle", 2*time.Second, "how long each worker keeps a connection before it logs in anew (with -role dynamic: each pooled connection's lifetime)")
	fs.IntVar(&cfg.rotations, "rotations", 3, "AWS four-step rotations (0..20); one manual runbook rotation follows them. With -role static: rotations on demand (rotate-role)")
	strategy := fs.String("strategy", "single", "AWS rotation strategy: single (one user, AWSCURRENT refused during the window) or alternating (two users)")
	fs.DurationVar(&cfg.window, "window", time.Second, "how long the store stays behind the database: setSecret to finishSecret, and ALTER ROLE to the runbook's secret update")
	fs.BoolVar(&cfg.compare, "compare", false, "also run the naive approaches side by side and print a comparison")
	drv := fs.String("driver", string(driverPQ), driverFlagHelp)
	fs.StringVar(&cfg.dsn, "dsn", "", "your server: a DSN without password, key=value or postgres:// URL (needs -secret-id)")
	fs.StringVar(&cfg.secretID, "secret-id", "", "your secret in AWS Secrets Manager: name or ARN (needs -dsn)")
	fs.BoolVar(&cfg.verbose, "v", false, "debug logging: every secret fetch and rotation step (never a secret value)")
	fs.StringVar(&cfg.store, "store", storeAWS, "where the credential is kept: aws (a local Secrets Manager endpoint) or vault (a local Vault-compatible server)")
	fs.StringVar(&cfg.role, "role", roleDynamic, "with -store vault: static (vault.StaticRole) or dynamic (vault.DynamicRole)")
	fs.DurationVar(&cfg.rotationPeriod, "rotation-period", 4*time.Second, "with -role static: the static role's rotation_period (whole seconds, 3s to 1h)")
	fs.DurationVar(&cfg.ttl, "ttl", 4*time.Second, "with -role dynamic: the role's default_ttl, each lease's and renewal's length (whole seconds, 2s to 1h)")
	fs.DurationVar(&cfg.maxTTL, "max-ttl", 10*time.Second, "with -role dynamic: the role's max_ttl, a lease's longest life (whole seconds, -ttl to 24h)")
	if code, stop := parseFlags(fs, args); stop {
		return cfg, code, true
	}
	usage := func(format string, args ...any) (demoConfig, int, bool) {
		fmt.Fprintf(std.err, "pgrotate demo: "+format+"\n", args...)
		return cfg, exitUsage, true
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if msg := checkStoreFlags(&cfg, given); msg != "" {
		return usage("%s", msg)
	}
	switch *strategy {
	case "single", "single-user":
		cfg.strategy = rotation.SingleUser
	case "alternating", "alternating-users":
		cfg.strategy = rotation.AlternatingUsers
	default:
		return usage("-strategy %q: want single or alternating", *strategy)
	}
	var ok bool
	if cfg.driver, ok = parseDriver(*drv); !ok {
		return usage(badDriver, *drv)
	}
	switch {
	case cfg.duration < time.Second || cfg.duration > time.Hour:
		return usage("-duration %v: want 1s to 1h", cfg.duration)
	case cfg.workers < 1 || cfg.workers > 256:
		return usage("-workers %d: want 1 to 256", cfg.workers)
	case cfg.rate < 0:
		return usage("-rate %d: want 0 (unlimited) or more", cfg.rate)
	case cfg.recycle < 10*time.Millisecond || cfg.recycle > time.Hour:
		return usage("-recycle %v: want 10ms to 1h", cfg.recycle)
	case cfg.rotations < 0 || cfg.rotations > 20:
		return usage("-rotations %d: want 0 to 20", cfg.rotations)
	case cfg.window < 0 || cfg.window > time.Minute:
		return usage("-window %v: want 0 to 1m", cfg.window)
	case (cfg.dsn == "") != (cfg.secretID == ""):
		return usage("-dsn and -secret-id go together: the workload runs against your server with your secret")
	case cfg.external() && cfg.compare:
		return usage("-compare needs the local server and endpoint (it rotates the secrets); leave out -dsn and -secret-id")
	}
	if cfg.external() {
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "rotations", "strategy", "window":
				cfg.ignored = append(cfg.ignored, "-"+f.Name)
			}
		})
	}
	return cfg, 0, false
}

// exitError is an error that decides the exit code.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func demoCommand(ctx context.Context, args []string, std *stdio) int {
	cfg, code, stop := parseDemoFlags(args, std)
	if stop {
		return code
	}
	con := &console{w: std.err, tty: std.errTTY}
	log := newLogger(con, cfg.verbose)
	rep, err := runDemo(ctx, cfg, std.demo, con, log)
	if rep != nil {
		if std.report != nil {
			std.report(rep)
		}
		rep.write(std.out)
	}
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		fmt.Fprintf(std.err, "pgrotate demo: %s\n", ee.msg)
		return ee.code
	case err != nil && ctx.Err() != nil:
		fmt.Fprintln(std.err, "pgrotate demo: interrupted; everything it started was removed")
		return exitInterrupted
	case err != nil:
		fmt.Fprintf(std.err, "pgrotate demo: %v\n", err)
		return exitDatabase
	case rep.Interrupted:
		fmt.Fprintln(std.err, "pgrotate demo: interrupted; everything it started was removed")
		return exitInterrupted
	case !rep.Passed():
		return exitDemoFailed
	}
	return exitOK
}

// runDemo runs the demo locally or, with -dsn/-secret-id, against the
// user's server and secret.
func runDemo(ctx context.Context, cfg demoConfig, hooks *demoHooks, con *console, log *slog.Logger) (*Report, error) {
	if hooks == nil {
		hooks = &demoHooks{}
	}
	switch {
	case cfg.external():
		return runExternal(ctx, cfg, con, log)
	case cfg.store == storeVault:
		return runVault(ctx, cfg, hooks, con, log)
	}
	return runLocal(ctx, cfg, hooks, con, log)
}

// startPostgreSQL returns the server of hooks or starts a throwaway one;
// stop stops the one it started (and does nothing for the hooks' one).
func startPostgreSQL(ctx context.Context, cfg demoConfig, hooks *demoHooks, log *slog.Logger) (pg *pgserver.Server, stop func(), err error) {
	if hooks.pg != nil {
		return hooks.pg, func() {}, nil
	}
	log.Info("starting a throwaway PostgreSQL server on 127.0.0.1")
	pg, err = pgserver.Start(ctx, pgserver.Options{
		Logf:      func(format string, args ...any) { log.Debug(fmt.Sprintf(format, args...)) },
		ExtraConf: map[string]string{"max_connections": strconv.Itoa(max(100, 5*cfg.workers+40))},
	})
	if errors.Is(err, pgserver.ErrNotInstalled) {
		return nil, nil, &exitError{code: exitDatabase, msg: "PostgreSQL's server binaries (initdb, pg_ctl, postgres) were not found.\n" +
			"  Install them, on Debian or Ubuntu with: apt-get install postgresql (as root or with sudo),\n" +
			"  or run the workload against your own server and secret: pgrotate demo -dsn ... -secret-id ..."}
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, &exitError{code: exitDatabase, msg: "starting PostgreSQL: " + err.Error()}
	}
	return pg, func() {
		log.Info("stopping PostgreSQL and removing its directory")
		if err := pg.Stop(); err != nil {
			log.Error("stopping PostgreSQL", slog.Any("error", err))
		}
	}, nil
}

// runLocal is the demo with everything local.
func runLocal(ctx context.Context, cfg demoConfig, hooks *demoHooks, con *console, log *slog.Logger) (rep *Report, err error) {
	pg, stopPG, err := startPostgreSQL(ctx, cfg, hooks, log)
	if err != nil {
		return nil, err
	}
	defer stopPG()
	sm := hooks.sm
	if sm == nil {
		sm = awssmtest.NewServer().Start()
		defer sm.Close()
	}
	log.Info("ready", slog.String("postgresql", pg.Version), slog.String("address", fmt.Sprintf("%s:%d", pg.Host, pg.Port)),
		slog.String("secrets_manager_endpoint", sm.URL()))
	ops := &opsClient{Client: sm.Client(ctx)}

	keys := []string{keyRotating}
	if cfg.compare {
		keys = append(keys, keyStatic, keyPerLogin, keyRebuild)
	}
	suffix := randomSuffix(6)
	setup := &localSetup{pg: pg, ops: ops, suffix: suffix, strategy: cfg.strategy}
	defer func() {
		if hooks.pg != nil { // a server that outlives the demo: remove what it made
			setup.drop(log)
		}
	}()
	targets := make([]target, len(keys))
	for i, key := range keys {
		if targets[i], err = setup.create(ctx, key); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, &exitError{code: exitDatabase, msg: "setting up: " + err.Error()}
		}
	}

	dsn := fmt.Sprintf("host=%s port=%d dbname=postgres sslmode=disable application_name=pgrotate-demo", pg.Host, pg.Port)
	st := &runState{cfg: cfg, duration: cfg.duration, log: log}
	// The rotating approach's role, and the other user the
	// alternating-users rotation makes for it.
	st.roles = []string{targets[0].role, targets[0].role + "_clone"}
	if cfg.strategy != rotation.AlternatingUsers {
		st.roles = st.roles[:1]
	}
	if st.refusals = newRefusalLog(pg, st.roles...); st.refusals != nil {
		// Before the application's first login.
		st.logStart, st.logErr = st.refusals.offset()
	}
	defer st.closeApproaches(log)
	for i, key := range keys {
		// Each approach reads its secret through a client of its own, so
		// that its calls are counted apart.
		a, err := newApproach(ctx, cfg.driver, key, dsn, targets[i].secretID, sm.Client(ctx), log, cfg.workers)
		if err != nil {
			return nil, &exitError{code: exitDatabase, msg: fmt.Sprintf("opening %s: %v", approachTitles[key], err)}
		}
		st.approaches = append(st.approaches, a)
		st.tables = append(st.tables, targets[i].table)
	}
	total := cfg.rotations + 1
	plan := &rotationPlan{pg: pg, ops: ops, strategy: cfg.strategy, window: cfg.window, log: log, verbose: cfg.verbose,
		duration: cfg.duration, total: total}
	for _, t := range targets {
		plan.secrets = append(plan.secrets, t.secretID)
	}
	for n := 1; n <= total; n++ {
		st.events = append(st.events, &rotationEvent{n: n, kind: plan.kindOf(n, total)})
	}

	log.Info("running the workload", slog.String("driver", string(cfg.driver)), slog.Int("workers", cfg.workers), slog.Duration("duration", cfg.duration),
		slog.Int("aws_rotations", cfg.rotations), slog.String("strategy", cfg.strategy.String()),
		slog.Int("runbook_rotations", 1), slog.Bool("compare", cfg.compare))
	st.execute(ctx, plan, con)

	rep = st.report(ctx, pg.Admin())
	rep.Mode = "local"
	rep.Server = fmt.Sprintf("PostgreSQL %s on %s:%d (throwaway)", pg.Version, pg.Host, pg.Port)
	rep.Endpoint = &EndpointCalls{
		GetSecretValue: sm.Calls(awssmtest.OpGetSecretValue),
		Operator:       ops.gets.Load(),
		Total:          sm.TotalCalls(),
	}
	for _, a := range st.approaches {
		rep.Endpoint.Applications += a.calls.counts().Total()
	}
	rep.SecretID = targets[0].secretID
	return rep, nil
}

// target is what one approach works on: a role, its secret and its table.
type target struct {
	role, secretID, table string
}

// localSetup creates roles, secrets and tables on the local servers.
type localSetup struct {
	pg       *pgserver.Server
	ops      *opsClient
	suffix   string
	strategy rotation.Strategy

	masterARN string
	made      []target
}

// create makes the role, table and secret for approach key.
func (s *localSetup) create(ctx context.Context, key string) (target, error) {
	if s.strategy == rotation.AlternatingUsers && s.masterARN == "" {
		// The alternating-users rotation creates and alters the other user
		// with a master secret: here the server's superuser.
		super, err := pq.NewConfig(s.pg.SuperDSN())
		if err != nil {
			return target{}, errors.New("cannot read the superuser DSN")
		}
		out, err := s.ops.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
			Name:         aws.String("pgrotate-demo-" + s.suffix + "/master"),
			SecretString: aws.String(rdsSecret(s.pg, super.User, super.Password, "")),
		})
		if err != nil {
			return target{}, fmt.Errorf("CreateSecret master: %w", err)
		}
		s.masterARN = aws.ToString(out.ARN)
	}
	short := strings.ReplaceAll(key, "-", "")
	t := target{
		role:     "demo_" + short + "_" + s.suffix,
		secretID: "pgrotate-demo-" + s.suffix + "/" + key,
	}
	t.table = t.role + "_rows"
	password := newPassword()
	if err := s.pg.CreateRole(ctx, t.role, password); err != nil {
		return target{}, err
	}
	s.made = append(s.made, t)
	table, role := pq.QuoteIdentifier(t.table), pq.QuoteIdentifier(t.role)
	for _, q := range []string{
		"CREATE TABLE " + table + " (id bigserial PRIMARY KEY, worker int NOT NULL, seq int NOT NULL, at timestamptz NOT NULL DEFAULT now())",
		"GRANT SELECT, INSERT ON " + table + " TO " + role,
		"GRANT USAGE ON SEQUENCE " + pq.QuoteIdentifier(t.table+"_id_seq") + " TO " + role,
	} {
		if err := s.pg.Exec(ctx, q); err != nil {
			return target{}, fmt.Errorf("creating table %s: %w", t.table, err)
		}
	}
	if _, err := s.ops.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name:         aws.String(t.secretID),
		Description:  aws.String("pgrotate demo: " + approachTitles[key]),
		SecretString: aws.String(rdsSecret(s.pg, t.role, password, s.masterARN)),
	}); err != nil {
		return target{}, fmt.Errorf("CreateSecret %s: %w", t.secretID, err)
	}
	return t, nil
}

// drop removes the tables and roles create made (and the roles the
// alternating-users rotation made), from a server the demo did not start.
func (s *localSetup) drop(log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, t := range s.made {
		if err := s.pg.Exec(ctx, "DROP TABLE IF EXISTS "+pq.QuoteIdentifier(t.table)); err != nil {
			log.Warn("cleaning up", slog.Any("error", err))
		}
		for _, role := range []string{t.role + "_clone", t.role} {
			var exists bool
			if err := s.pg.Admin().QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role).Scan(&exists); err != nil || !exists {
				continue
			}
			if err := s.pg.DropRole(ctx, role); err != nil {
				log.Warn("cleaning up", slog.Any("error", err))
			}
		}
	}
}

// rdsSecret is a secret value in the RDS format for the local server.
func rdsSecret(pg *pgserver.Server, user, password, masterARN string) string {
	v := fmt.Sprintf(`{"engine":"postgres","host":%q,"port":%d,"username":%q,"password":%q,"dbname":"postgres"`,
		pg.Host, pg.Port, user, password)
	if masterARN != "" {
		v += fmt.Sprintf(`,"masterarn":%q`, masterARN)
	}
	return v + "}"
}

// runExternal runs the workload against the user's server and secret.
func runExternal(ctx context.Context, cfg demoConfig, con *console, log *slog.Logger) (*Report, error) {
	if len(cfg.ignored) > 0 {
		log.Warn("ignored with -dsn/-secret-id: nothing is rotated", slog.String("flags", strings.Join(cfg.ignored, " ")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, &exitError{code: exitSource, msg: "loading the AWS configuration: " + err.Error()}
	}
	if awsCfg.Region == "" {
		return nil, &exitError{code: exitSource, msg: "no AWS region: set AWS_REGION (or a region in your AWS profile)"}
	}
	a, err := newRotatingApproach(cfg.driver, cfg.dsn, cfg.secretID, secretsmanager.NewFromConfig(awsCfg), log, cfg.workers)
	if err != nil {
		return nil, &exitError{code: exitUsage, msg: err.Error()}
	}
	st := &runState{cfg: cfg, duration: cfg.duration, log: log, approaches: []*approach{a}}
	defer st.closeApproaches(log)

	table := "pgrotate_demo_" + randomSuffix(8)
	st.tables = []string{table}
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := a.db.ExecContext(setupCtx, "CREATE TABLE "+pq.QuoteIdentifier(table)+
		" (id bigserial PRIMARY KEY, worker int NOT NULL, seq int NOT NULL, at timestamptz NOT NULL DEFAULT now())"); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		code, msg := exitDatabase, "creating the demo's table "+table+": "+err.Error()
		if errors.Is(err, rotating.ErrFetchFailed) {
			code, msg = exitSource, "reading the secret: "+explainSourceError(err, awsCfg.Region)
		}
		return nil, &exitError{code: code, msg: msg}
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, err := a.db.ExecContext(ctx, "DROP TABLE "+pq.QuoteIdentifier(table)); err != nil {
			log.Error("dropping the demo's table; drop it yourself", slog.String("table", table), slog.Any("error", err))
		} else {
			log.Info("dropped the demo's table", slog.String("table", table))
		}
	}()
	log.Info("running the workload against your server and secret; pgrotate rotates nothing in this mode "+
		"(rotate the secret meanwhile to watch it bridged)",
		slog.String("driver", string(cfg.driver)), slog.String("secret_id", cfg.secretID), slog.String("table", table),
		slog.Int("workers", cfg.workers), slog.Duration("duration", cfg.duration))
	st.execute(ctx, nil, con)
	rep := st.report(ctx, a.db)
	rep.Mode = "external"
	rep.SecretID = cfg.secretID
	var version string
	if err := a.db.QueryRowContext(setupCtx, "SHOW server_version").Scan(&version); err == nil {
		rep.Server = "PostgreSQL " + version + " (yours)"
	}
	return rep, nil
}

// runState is one run of the workload: the approaches, their loads and
// the rotation events.
type runState struct {
	cfg        demoConfig
	duration   time.Duration
	log        *slog.Logger
	approaches []*approach
	tables     []string
	events     []*rotationEvent

	// The rotating approach's roles, and their refusals in the server log
	// (nil if the demo cannot read it) from logStart on; logErr is the
	// first error reading it.
	roles    []string
	refusals *refusalLog
	logStart int64
	logErr   error

	start       time.Time
	seconds     int // whole seconds the workload ran
	loads       []*load
	eventsDone  atomic.Int32
	interrupted bool
}

// tail is how long the workload goes on after the last rotation at least,
// so that logins after it are seen too.
const tail = 1500 * time.Millisecond

// execute runs the workload of every approach and the rotations of plan
// (none if plan is nil), shows progress on con and returns when the
// workload has stopped.
func (st *runState) execute(ctx context.Context, plan rotator, con *console) {
	st.start = time.Now()
	stop := make(chan struct{})
	var workers []*sync.WaitGroup
	for i, a := range st.approaches {
		l, wg := startLoad(ctx, a, st.tables[i], st.cfg.workers, st.cfg.rate, st.cfg.recycle, st.start, stop)
		st.loads = append(st.loads, l)
		workers = append(workers, wg)
	}

	scheduled := make(chan struct{})
	go func() {
		defer close(scheduled)
		for i, ev := range st.events {
			if testkit.Sleep(ctx, time.Until(plan.due(st.start, i))) != nil {
				return
			}
			st.runEvent(ctx, plan, ev)
			st.eventsDone.Add(1)
		}
	}()
	progressDone := make(chan struct{})
	var progressWG sync.WaitGroup
	progressWG.Go(func() { st.showProgress(con, progressDone) })

	select {
	case <-scheduled:
	case <-ctx.Done():
	}
	<-scheduled
	end := st.start.Add(st.duration)
	for _, ev := range st.events {
		ev.mu.Lock()
		if t := ev.end.Add(tail); !ev.end.IsZero() && t.After(end) {
			end = t
		}
		ev.mu.Unlock()
	}
	// Whole seconds, so that every second of the timeline is a full one.
	st.seconds = int(math.Ceil(end.Sub(st.start).Seconds()))
	_ = testkit.Sleep(ctx, time.Until(st.start.Add(time.Duration(st.seconds)*time.Second)))
	if ctx.Err() != nil {
		st.interrupted = true
		st.seconds = int(math.Ceil(time.Since(st.start).Seconds()))
	}
	close(stop)
	for _, wg := range workers {
		wg.Wait()
	}
	close(progressDone)
	progressWG.Wait()
	con.done()
}

// runEvent applies one rotation, recording its times and the rotating
// approach's counters when it starts.
func (st *runState) runEvent(ctx context.Context, plan rotator, ev *rotationEvent) {
	rot := st.approaches[0]
	ev.mu.Lock()
	ev.fetches = rot.calls.counts()
	ev.vault = rot.vault.counts()
	ev.stats = rot.conn.Stats()
	ev.failed = st.loads[0].Failed.Load()
	ev.logOffset = st.logOffset()
	ev.start = time.Now()
	ev.mu.Unlock()
	st.log.Info(fmt.Sprintf("rotation %d/%d: %s", ev.n, len(st.events), plan.describe(ev)))
	err := plan.apply(ctx, ev)
	ev.mu.Lock()
	ev.end, ev.err = time.Now(), err
	took := ev.end.Sub(ev.start)
	ev.mu.Unlock()
	switch {
	case err != nil && ctx.Err() != nil:
	case err != nil:
		st.log.Error(fmt.Sprintf("rotation %d/%d failed", ev.n, len(st.events)), slog.Any("error", err))
	default:
		st.log.Info(fmt.Sprintf("rotation %d/%d done", ev.n, len(st.events)), slog.Duration("took", took.Round(time.Millisecond)))
	}
}

// logOffset returns where the server log ends now (0 if it cannot be
// read; logErr then says why).
func (st *runState) logOffset() int64 {
	if st.refusals == nil || st.logErr != nil {
		return 0
	}
	n, err := st.refusals.offset()
	if err != nil {
		st.logErr = err
	}
	return n
}

// logged returns the refusals of the rotating approach's roles logged
// between the offsets from and to; -1 if the log cannot be read.
func (st *runState) logged(from, to int64) int64 {
	if st.refusals == nil || st.logErr != nil {
		return -1
	}
	n, err := st.refusals.count(from, to)
	if err != nil {
		st.logErr = err
		return -1
	}
	return n
}

// showProgress redraws the progress line until done is closed: every
// 200 ms on a terminal, every 5 s as a plain line elsewhere.
func (st *runState) showProgress(con *console, done <-chan struct{}) {
	every := 5 * time.Second
	if con.tty {
		every = 200 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			con.progress(st.progressLine())
		}
	}
}

func (st *runState) progressLine() string {
	rot, l := st.approaches[0], st.loads[0]
	fetches := rot.calls.counts()
	var b strings.Builder
	fmt.Fprintf(&b, "pgrotate demo %5.1fs/%.0fs  ok %d  failed %d", time.Since(st.start).Seconds(), st.duration.Seconds(), l.OK.Load(), l.Failed.Load())
	if len(st.events) > 0 {
		fmt.Fprintf(&b, "  rotations %d/%d", st.eventsDone.Load(), len(st.events))
		for _, ev := range st.events {
			if ev.inWindow() {
				fmt.Fprintf(&b, " (#%d running)", ev.n)
			}
		}
	}
	if rot.vault != nil {
		v := rot.vault.counts()
		fmt.Fprintf(&b, "  vault reads %d, renewals %d", v.Reads, v.Renewals)
		if rot.vault.readOp == vaulttest.OpCreds {
			fmt.Fprintf(&b, ", leases ended %d", rot.vault.leasesEnded())
		}
	} else {
		fmt.Fprintf(&b, "  secret fetches %d", fetches.Total())
		if fetches.Pending > 0 {
			fmt.Fprintf(&b, " (%d AWSPENDING)", fetches.Pending)
		}
	}
	if len(st.approaches) > 1 {
		b.WriteString("  | naive failed:")
		for i, a := range st.approaches[1:] {
			fmt.Fprintf(&b, " %s %d", a.key, st.loads[i+1].Failed.Load())
		}
	}
	return b.String()
}

// closeApproaches closes every approach's pools (and the connector).
func (st *runState) closeApproaches(log *slog.Logger) {
	for _, a := range st.approaches {
		if err := a.close(); err != nil {
			log.Warn("closing "+a.title, slog.Any("error", err))
		}
	}
}

// report verifies the rows through checker and builds the report. It
// runs after the workload stopped, also after Ctrl-C (on a context of its
// own, bounded in time).
func (st *runState) report(ctx context.Context, checker *sql.DB) *Report {
	vctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	rep := &Report{
		Driver:      string(st.cfg.driver),
		Strategy:    st.cfg.strategy.String(),
		Workers:     st.cfg.workers,
		Rate:        st.cfg.rate,
		Seconds:     st.seconds,
		Window:      st.cfg.window,
		Recycle:     st.cfg.recycle,
		Interrupted: st.interrupted,
	}
	for i, a := range st.approaches {
		l := st.loads[i]
		r := ApproachResult{
			Key:       a.key,
			Name:      a.title,
			OK:        l.OK.Load(),
			Failed:    l.Failed.Load(),
			Fetches:   a.calls.counts(),
			Vault:     a.vault.counts(),
			Logins:    a.logins.summary(),
			PerSecond: l.perSecond(st.seconds),
			Errors:    l.topErrors(3),
		}
		var err error
		if r.RowsAcked, r.RowsFound, r.RowsMissing, err = l.verify(vctx, checker); err != nil {
			r.VerifyError = err.Error()
		}
		if a.conn != nil {
			s := a.conn.Stats()
			r.Stats = &s
		}
		if i == 0 {
			rep.Rotating = r
		} else {
			rep.Naive = append(rep.Naive, r)
		}
	}

	// Per rotation: the rotating approach's counters from the start of the
	// rotation to the start of the next one (or the end of the run).
	type snapshot struct {
		fetches   FetchCounts
		vault     VaultCalls
		stats     rotating.Stats
		failed    int64
		logOffset int64
	}
	final := snapshot{fetches: rep.Rotating.Fetches, vault: rep.Rotating.Vault, failed: rep.Rotating.Failed, logOffset: st.logOffset()}
	if rep.Rotating.Stats != nil {
		final.stats = *rep.Rotating.Stats
	}
	var (
		snaps  []snapshot
		starts []time.Time
	)
	for _, ev := range st.events {
		ev.mu.Lock()
		if !ev.start.IsZero() {
			snaps = append(snaps, snapshot{ev.fetches, ev.vault, ev.stats, ev.failed, ev.logOffset})
			starts = append(starts, ev.start)
		}
		ev.mu.Unlock()
	}
	snaps = append(snaps, final)
	starts = append(starts, time.Now())
	rep.StartupFetches = snaps[0].fetches
	rep.StartupVault = snaps[0].vault
	rep.StartupRejected = snaps[0].stats.AuthFailures
	rep.StartupLogged = st.logged(st.logStart, snaps[0].logOffset)
	offset := func(t time.Time) time.Duration {
		if t.IsZero() {
			return -1
		}
		return t.Sub(st.start)
	}
	for i, ev := range st.events[:len(snaps)-1] {
		ev.mu.Lock()
		from, to := snaps[i], snaps[i+1]
		r := RotationResult{
			N:               ev.n,
			Kind:            ev.kind,
			Start:           offset(ev.start),
			End:             offset(ev.end),
			Open:            offset(ev.open),
			Close:           offset(ev.close),
			Fetches:         to.fetches.minus(from.fetches),
			Vault:           to.vault.minus(from.vault),
			Rejected:        to.stats.AuthFailures - from.stats.AuthFailures,
			Logged:          st.logged(from.logOffset, to.logOffset),
			RotationRefused: ev.rotationRefused.Load(),
			Recovered:       to.stats.Recoveries - from.stats.Recoveries,
			GaveUp:          to.stats.RecoveryFailures - from.stats.RecoveryFailures,
			Failed:          to.failed - from.failed,
			Bridged:         latencies(st.approaches[0].logins.bridged(starts[i], starts[i+1])),
		}
		switch {
		case ev.end.IsZero() || ev.err != nil && st.interrupted && errors.Is(ev.err, context.Canceled):
			r.Err = "interrupted"
		case ev.err != nil:
			r.Err = ev.err.Error()
		}
		ev.mu.Unlock()
		rep.Rotations = append(rep.Rotations, r)
	}
	rep.PlannedRotations = len(st.events)
	rep.Roles = st.roles
	switch {
	case st.cfg.external():
		rep.ServerLogNote = "the demo cannot read your server's log"
	case st.refusals == nil:
		rep.ServerLogNote = "the demo cannot read the log of a server it did not start"
	case st.logErr != nil:
		rep.ServerLogNote = "reading the server log failed: " + st.logErr.Error()
	}
	return rep
}
