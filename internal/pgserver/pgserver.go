// Package pgserver starts a throwaway PostgreSQL server on 127.0.0.1 for tests
// and demos, or wraps an existing one given a superuser DSN.
//
// Start runs initdb and pg_ctl from the installed PostgreSQL server binaries
// in a fresh temporary directory. When the process runs as root (initdb and
// postgres refuse to), they run as the postgres user through runuser. The
// server listens only on 127.0.0.1, on a free port, and is meant to be thrown
// away: fsync is off and the superuser password appears in SuperDSN.
//
// With Options.TLS the server also runs with ssl=on, with a certificate
// signed by a CA generated for it, and accepts TCP logins over TLS only;
// clients verify it with sslmode=verify-full (see Server.SSLParams).
//
// No error returned by this package contains a password.
package pgserver

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lib/pq"
)

// ErrNotInstalled is wrapped by the error Start returns when it cannot find
// the PostgreSQL server binaries (initdb, pg_ctl, postgres).
var ErrNotInstalled = errors.New("pgserver: PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; " +
	"install them with `apt-get install postgresql` (Debian)")

// Options configures Start. The zero value is ready to use.
type Options struct {
	// ExtraConf holds extra server settings, passed as "-c key=value"
	// (for example "max_connections": "20"). Keys are lowercase setting
	// names; port, listen_addresses and unix_socket_directories are not
	// allowed.
	ExtraConf map[string]string
	// Logf, if set, receives progress messages.
	Logf func(format string, args ...any)
	// BinDir, if set, is the only directory searched for initdb, pg_ctl and
	// postgres.
	BinDir string
	// TLS makes the server run with ssl=on, with a certificate for
	// 127.0.0.1 and localhost signed by a CA generated for this server
	// alone (its certificate is at Server.RootCertPath), and makes
	// pg_hba.conf accept TCP logins only over TLS (hostssl, scram-sha-256):
	// a login without TLS is refused with SQLSTATE 28000. SuperDSN, DSN and
	// the Admin pool then use sslmode=verify-full. ExtraConf may not set
	// ssl, ssl_cert_file, ssl_key_file or ssl_ca_file.
	TLS bool
}

// Server is a running PostgreSQL server, started by Start or wrapped by
// External. Its methods are safe for concurrent use.
type Server struct {
	// Host is the address the server listens on: "127.0.0.1" for a server
	// from Start.
	Host string
	// Port is the TCP port the server listens on.
	Port int
	// Dir is the temporary directory holding the data directory (Dir/data),
	// the server log (Dir/log) and the unix socket. Empty for an external
	// server.
	Dir string
	// Version is the server version, as reported by SHOW server_version.
	Version string
	// SuperUser is the name of the superuser role SuperDSN signs in as.
	SuperUser string

	superDSN string
	secret   string // superuser password, scrubbed from errors
	rootCert string // the CA certificate's path; set only with Options.TLS
	external bool
	binDir   string
	runAs    *user.User // non-nil when commands run through runuser
	opts     Options
	launched bool // Start ran pg_ctl start

	mu      sync.Mutex
	admin   *sql.DB
	stopped bool
	stopErr error
}

// Start initialises and starts a new server. If ctx is cancelled while the
// server is starting, the server is killed and its directory removed. The
// caller must call Stop.
func Start(ctx context.Context, opts Options) (*Server, error) {
	begin := time.Now()
	s := &Server{Host: "127.0.0.1", SuperUser: "postgres", opts: opts}
	for k := range opts.ExtraConf {
		if k == "" || strings.Trim(k, "abcdefghijklmnopqrstuvwxyz0123456789_.") != "" ||
			k == "port" || k == "listen_addresses" || k == "unix_socket_directories" {
			return nil, fmt.Errorf("pgserver: invalid ExtraConf key %q", k)
		}
		if opts.TLS && slices.Contains(tlsConfKeys, k) {
			return nil, fmt.Errorf("pgserver: ExtraConf key %q conflicts with Options.TLS", k)
		}
	}
	var err error
	if s.binDir, err = findBinDir(opts.BinDir); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		if s.runAs, err = user.Lookup("postgres"); err != nil {
			return nil, fmt.Errorf("pgserver: running as root needs a postgres user to run the server as: %w", err)
		}
		if _, err := exec.LookPath("runuser"); err != nil {
			return nil, fmt.Errorf("pgserver: running as root needs runuser: %w", err)
		}
	}
	if s.Dir, err = os.MkdirTemp("", "pgserver-"); err != nil {
		return nil, fmt.Errorf("pgserver: %w", err)
	}
	if err := s.start(ctx); err != nil {
		if s.admin != nil {
			_ = s.admin.Close()
		}
		s.kill(ctx.Err() != nil && s.launched)
		_ = os.RemoveAll(s.Dir)
		return nil, s.scrub(err)
	}
	s.logf("pgserver: PostgreSQL %s ready on %s:%d in %s (dir %s)", s.Version, s.Host, s.Port, time.Since(begin).Round(time.Millisecond), s.Dir)
	return s, nil
}

// start does the work of Start after Dir exists.
func (s *Server) start(ctx context.Context) error {
	if err := os.Chmod(s.Dir, 0o700); err != nil {
		return fmt.Errorf("pgserver: %w", err)
	}
	pw := make([]byte, 18)
	if _, err := rand.Read(pw); err != nil {
		return fmt.Errorf("pgserver: %w", err)
	}
	s.secret = hex.EncodeToString(pw)
	pwfile := filepath.Join(s.Dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(s.secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("pgserver: %w", err)
	}
	if err := s.chown(s.Dir, pwfile); err != nil {
		return err
	}
	s.logf("pgserver: initdb in %s", s.Dir)
	err := s.run(ctx, "initdb", "-D", s.dataDir(), "-U", s.SuperUser, "-A", "scram-sha-256",
		"--pwfile="+pwfile, "-N", "-E", "UTF8", "--no-locale")
	_ = os.Remove(pwfile)
	if err != nil {
		return err
	}
	if s.opts.TLS {
		if err := s.writeTLSFiles(); err != nil {
			return err
		}
		if err := s.WriteHBA(tlsHBA); err != nil {
			return err
		}
	}
	for attempt := 1; ; attempt++ {
		if s.Port, err = freePort(); err != nil {
			return err
		}
		logSize := fileSize(s.logFile())
		s.launched = true
		s.logf("pgserver: starting server on port %d", s.Port)
		err = s.run(ctx, "pg_ctl", "-D", s.dataDir(), "-w", "-t", "60", "-l", s.logFile(), "-o", s.serverOpts(), "start")
		if err == nil {
			break
		}
		if ctx.Err() != nil || attempt == 3 || !portClash(s.logFile(), logSize) {
			return fmt.Errorf("%w\nserver log tail:\n%s", err, tail(s.ServerLog(), 2000))
		}
		s.logf("pgserver: port %d taken, retrying", s.Port)
	}
	s.superDSN = s.DSN(s.SuperUser, s.secret, "postgres")
	if err := s.Admin().QueryRowContext(ctx, "SHOW server_version").Scan(&s.Version); err != nil {
		return fmt.Errorf("pgserver: query server version: %w", err)
	}
	return nil
}

// External wraps an existing server given a superuser DSN in key=value or URL
// form. Stop then only closes the Admin pool; Restart and WriteHBA are not
// supported. It checks that the server answers within 30 seconds.
func External(dsn string) (*Server, error) {
	cfg, err := pq.NewConfig(dsn)
	if err != nil {
		// The parse error may quote the DSN, which holds a password.
		return nil, errors.New("pgserver: cannot parse the external server DSN")
	}
	s := &Server{Host: cfg.Host, Port: int(cfg.Port), SuperUser: cfg.User, superDSN: dsn, secret: cfg.Password, external: true}
	if s.Host == "" {
		s.Host = "localhost"
	}
	if s.Port == 0 {
		s.Port = 5432
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Admin().QueryRowContext(ctx, "SHOW server_version").Scan(&s.Version); err != nil {
		_ = s.Stop()
		return nil, s.scrub(fmt.Errorf("pgserver: connect to external server: %w", err))
	}
	return s, nil
}

// SuperDSN returns a key=value DSN that signs in as the superuser, password
// included.
func (s *Server) SuperDSN() string { return s.superDSN }

// DSN returns a key=value DSN for user and password on database dbname
// ("postgres" if empty), with every value quoted and the parameters of
// SSLParams. An empty password is left out.
func (s *Server) DSN(user, password, dbname string) string {
	if dbname == "" {
		dbname = "postgres"
	}
	kv := [][2]string{{"host", s.Host}, {"port", strconv.Itoa(s.Port)}, {"user", user}, {"password", password}, {"dbname", dbname}}
	if password == "" {
		kv = slices.Delete(kv, 3, 4)
	}
	return formatDSN(append(kv, s.sslParams()...))
}

// RootCertPath returns the path of the PEM certificate of the CA that signed
// the server's certificate, for sslrootcert; empty unless the server was
// started with Options.TLS.
func (s *Server) RootCertPath() string { return s.rootCert }

// SSLParams returns the key=value DSN parameters a client needs to reach
// the server: for a server started with Options.TLS, "sslmode='verify-full'
// sslrootcert='<RootCertPath>'", to use with host 127.0.0.1 or localhost
// (the names the certificate holds); otherwise "sslmode='disable'".
func (s *Server) SSLParams() string { return formatDSN(s.sslParams()) }

func (s *Server) sslParams() [][2]string {
	if s.rootCert == "" {
		return [][2]string{{"sslmode", "disable"}}
	}
	return [][2]string{{"sslmode", "verify-full"}, {"sslrootcert", s.rootCert}}
}

// formatDSN joins key=value pairs with every value quoted.
func formatDSN(kv [][2]string) string {
	var b strings.Builder
	for _, p := range kv {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(p[0] + "='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(p[1]) + "'")
	}
	return b.String()
}

// Admin returns a superuser connection pool, opened on first use and closed
// by Stop.
func (s *Server) Admin() *sql.DB {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admin == nil {
		// sql.Open with the registered "postgres" driver parses the DSN
		// only when connecting, so it cannot fail here.
		s.admin, _ = sql.Open("postgres", s.superDSN)
		if s.stopped {
			_ = s.admin.Close()
		}
	}
	return s.admin
}

// Exec runs query with args as the superuser. The query text is never put in
// the error.
func (s *Server) Exec(ctx context.Context, query string, args ...any) error {
	if _, err := s.Admin().ExecContext(ctx, query, args...); err != nil {
		return s.scrub(fmt.Errorf("pgserver: exec: %w", err))
	}
	return nil
}

// CreateRole creates a LOGIN role with the given password, and grants it ALL
// on schema public and CREATE on the current database so it can create
// tables.
func (s *Server) CreateRole(ctx context.Context, name, password string) error {
	var db string
	if err := s.Admin().QueryRowContext(ctx, "SELECT current_database()").Scan(&db); err != nil {
		return fmt.Errorf("pgserver: create role %q: %w", name, err)
	}
	id := pq.QuoteIdentifier(name)
	err := s.serialized(ctx,
		"CREATE ROLE "+id+" LOGIN PASSWORD "+pq.QuoteLiteral(password),
		"GRANT ALL ON SCHEMA public TO "+id,
		"GRANT CREATE ON DATABASE "+pq.QuoteIdentifier(db)+" TO "+id)
	if err != nil {
		return scrub(fmt.Errorf("pgserver: create role %q: %w", name, err), password, s.secret)
	}
	return nil
}

// DropRole drops what role owns in the current database, its privileges,
// and the role itself.
func (s *Server) DropRole(ctx context.Context, name string) error {
	id := pq.QuoteIdentifier(name)
	if err := s.serialized(ctx, "DROP OWNED BY "+id, "DROP ROLE "+id); err != nil {
		return s.scrub(fmt.Errorf("pgserver: drop role %q: %w", name, err))
	}
	return nil
}

// ExecSerialized runs stmts as the superuser in one transaction that holds
// the advisory lock CreateRole and DropRole take (see serialized). Use it
// for GRANT and REVOKE on objects other roles' grants touch too (schema
// public, the database): a Vault-style revocation, say. The statements'
// text is never put in the error.
func (s *Server) ExecSerialized(ctx context.Context, stmts ...string) error {
	if err := s.serialized(ctx, stmts...); err != nil {
		return s.scrub(fmt.Errorf("pgserver: exec: %w", err))
	}
	return nil
}

// serialized runs stmts in one transaction holding an advisory lock, so that
// concurrent CreateRole and DropRole calls, from this process or from other
// test binaries sharing an external server, do not update the same catalog
// rows (the ACLs of schema public and of the database) at once, which fails
// with "tuple concurrently updated".
func (s *Server) serialized(ctx context.Context, stmts ...string) error {
	tx, err := s.Admin().BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // a no-op after Commit
	stmts = append([]string{"SELECT pg_advisory_xact_lock(7370301)"}, stmts...)
	for _, q := range stmts {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// SetPassword changes the password of role.
func (s *Server) SetPassword(ctx context.Context, role, password string) error {
	q := "ALTER ROLE " + pq.QuoteIdentifier(role) + " PASSWORD " + pq.QuoteLiteral(password)
	if _, err := s.Admin().ExecContext(ctx, q); err != nil {
		return scrub(fmt.Errorf("pgserver: set password of role %q: %w", role, err), password, s.secret)
	}
	return nil
}

// ReloadConf makes the server reread its configuration files
// (pg_reload_conf()).
func (s *Server) ReloadConf(ctx context.Context) error {
	if _, err := s.Admin().ExecContext(ctx, "SELECT pg_reload_conf()"); err != nil {
		return s.scrub(fmt.Errorf("pgserver: reload configuration: %w", err))
	}
	return nil
}

// WriteHBA replaces the content of pg_hba.conf with lines. It takes effect
// after ReloadConf. Not supported for external servers.
func (s *Server) WriteHBA(lines []string) error {
	if s.external {
		return errors.New("pgserver: WriteHBA is not supported for external servers")
	}
	// The file exists and belongs to the server's user; rewriting it in
	// place keeps its owner and mode.
	if err := os.WriteFile(filepath.Join(s.dataDir(), "pg_hba.conf"), []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return fmt.Errorf("pgserver: write pg_hba.conf: %w", err)
	}
	return nil
}

// Restart restarts the server (fast shutdown) on the same port. Connections
// in the Admin pool are dropped; the pool reconnects. Not supported for
// external servers.
func (s *Server) Restart(ctx context.Context) error {
	if s.external {
		return errors.New("pgserver: Restart is not supported for external servers")
	}
	s.logf("pgserver: restarting server on port %d", s.Port)
	if err := s.run(ctx, "pg_ctl", "-D", s.dataDir(), "-w", "-t", "60", "-m", "fast", "-l", s.logFile(), "-o", s.serverOpts(), "restart"); err != nil {
		return s.scrub(fmt.Errorf("%w\nserver log tail:\n%s", err, tail(s.ServerLog(), 2000)))
	}
	return nil
}

// Stop closes the Admin pool, stops the server (killing it if pg_ctl fails)
// and removes Dir. For an external server it only closes the pool. Stop is
// idempotent: later calls return the first call's result.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return s.stopErr
	}
	s.stopped = true
	if s.admin != nil {
		_ = s.admin.Close()
	}
	if s.external {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := s.run(ctx, "pg_ctl", "-D", s.dataDir(), "-w", "-t", "60", "-m", "fast", "stop"); err != nil {
		s.logf("pgserver: pg_ctl stop failed, killing the server: %v", err)
		if !s.kill(false) {
			s.stopErr = s.scrub(err)
		}
	}
	if err := os.RemoveAll(s.Dir); err != nil && s.stopErr == nil {
		s.stopErr = fmt.Errorf("pgserver: %w", err)
	}
	s.logf("pgserver: stopped server on port %d", s.Port)
	return s.stopErr
}

// ServerLog returns the tail (up to 16 KiB) of the server log, for
// diagnostics. Empty for an external server.
func (s *Server) ServerLog() string {
	if s.external {
		return ""
	}
	f, err := os.Open(s.logFile())
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 16 << 10
	if st, err := f.Stat(); err == nil && st.Size() > max {
		_, _ = f.Seek(st.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, max))
	return string(b)
}

func (s *Server) dataDir() string { return filepath.Join(s.Dir, "data") }
func (s *Server) logFile() string { return filepath.Join(s.Dir, "log") }

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

// tlsConfKeys are the settings Options.TLS makes, which ExtraConf may not.
var tlsConfKeys = []string{"ssl", "ssl_cert_file", "ssl_key_file", "ssl_ca_file"}

// tlsHBA is pg_hba.conf for a server with Options.TLS: TCP logins on
// 127.0.0.1 only over TLS, an explicit reject for the others so that the
// server's message says why, and the unix socket as initdb sets it up.
var tlsHBA = []string{
	"# TYPE     DATABASE  USER  ADDRESS       METHOD",
	"local      all       all                 scram-sha-256",
	"hostssl    all       all   127.0.0.1/32  scram-sha-256",
	"hostnossl  all       all   127.0.0.1/32  reject",
}

// serverOpts returns pg_ctl's -o value; pg_ctl passes it through sh, so
// every word is shell-quoted.
func (s *Server) serverOpts() string {
	words := []string{"-p", strconv.Itoa(s.Port), "-k", s.Dir}
	conf := map[string]string{"listen_addresses": "127.0.0.1", "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
	if s.opts.TLS {
		conf["ssl"] = "on"
		conf["ssl_cert_file"] = filepath.Join(s.Dir, serverCertFile)
		conf["ssl_key_file"] = filepath.Join(s.Dir, serverKeyFile)
	}
	maps.Copy(conf, s.opts.ExtraConf)
	for _, k := range slices.Sorted(maps.Keys(conf)) {
		words = append(words, "-c", k+"="+conf[k])
	}
	for i, w := range words {
		words[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(words, " ")
}

// run runs a server binary, as the postgres user when root. On ctx
// cancellation the whole process group is signalled.
func (s *Server) run(ctx context.Context, name string, args ...string) error {
	argv := append([]string{filepath.Join(s.binDir, name)}, args...)
	if s.runAs != nil {
		argv = append([]string{"runuser", "-u", s.runAs.Username, "--"}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = s.Dir
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "PG") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// SIGKILL: runuser would wait 2s before killing on SIGTERM. The
	// postmaster pg_ctl launches is in its own session: see kill.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		if name == "pg_ctl" {
			name += " " + args[len(args)-1] // the action
		}
		return fmt.Errorf("pgserver: %s: %w\n%s", name, err, tail(out.String(), 2000))
	}
	return nil
}

func (s *Server) chown(paths ...string) error {
	if s.runAs == nil {
		return nil
	}
	uid, _ := strconv.Atoi(s.runAs.Uid)
	gid, _ := strconv.Atoi(s.runAs.Gid)
	for _, p := range paths {
		if err := os.Chown(p, uid, gid); err != nil {
			return fmt.Errorf("pgserver: %w", err)
		}
	}
	return nil
}

// kill makes sure no postmaster runs on the data directory: SIGQUIT
// (immediate shutdown) then SIGKILL. With wait, it first gives a postmaster
// being launched up to a second to write its pid file. It reports whether no
// server is left running.
func (s *Server) kill(wait bool) bool {
	pidFile := filepath.Join(s.dataDir(), "postmaster.pid")
	pid := 0
	for deadline := time.Now().Add(time.Second); ; time.Sleep(50 * time.Millisecond) {
		if b, err := os.ReadFile(pidFile); err == nil {
			pid, _ = strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
		}
		if pid > 0 || !wait || time.Now().After(deadline) {
			break
		}
	}
	if pid <= 0 {
		return true
	}
	for _, sig := range []syscall.Signal{syscall.SIGQUIT, syscall.SIGKILL} {
		_ = syscall.Kill(pid, sig)
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if !alive(pid) {
				return true
			}
		}
	}
	return false
}

// alive reports whether process pid exists and is not a zombie (the
// postmaster is not our child, so whoever adopted it reaps it).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) == syscall.ESRCH {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !os.IsNotExist(err)
	}
	// pid (comm) STATE ...; comm may hold spaces and parentheses.
	st := string(b[bytes.LastIndexByte(b, ')')+1:])
	return !strings.HasPrefix(strings.TrimSpace(st), "Z")
}

// scrub removes the superuser password from err's message.
func (s *Server) scrub(err error) error { return scrub(err, s.secret) }

// redacted is an error whose message had secrets removed.
type redacted struct {
	msg string
	err error
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.err }

// scrub returns err with every non-empty secret in its message replaced.
func scrub(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, sec := range secrets {
		if sec != "" {
			msg = strings.ReplaceAll(msg, sec, "[REDACTED]")
		}
	}
	if msg == err.Error() {
		return err
	}
	return &redacted{msg, err}
}

// findBinDir finds the directory with initdb, pg_ctl and postgres.
func findBinDir(only string) (string, error) {
	ok := func(dir string) bool {
		for _, b := range []string{"initdb", "pg_ctl", "postgres"} {
			if st, err := os.Stat(filepath.Join(dir, b)); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
				return false
			}
		}
		return true
	}
	var dirs []string
	if only != "" {
		dirs = []string{only}
	} else {
		vers, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		// Highest version first: compare "15" < "9.6" numerically.
		slices.SortFunc(vers, func(a, b string) int {
			va, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(a)), 64)
			vb, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(b)), 64)
			return cmp.Compare(vb, va)
		})
		dirs = vers
		if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
			dirs = append(dirs, strings.TrimSpace(string(out)))
		}
		if p, err := exec.LookPath("pg_ctl"); err == nil {
			dirs = append(dirs, filepath.Dir(p))
		}
	}
	for _, d := range dirs {
		if ok(d) {
			return d, nil
		}
	}
	if only != "" {
		return "", fmt.Errorf("%w (looked in %s)", ErrNotInstalled, only)
	}
	return "", ErrNotInstalled
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgserver: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func fileSize(path string) int64 {
	if st, err := os.Stat(path); err == nil {
		return st.Size()
	}
	return 0
}

// portClash reports whether the log written since offset says the port was
// taken.
func portClash(path string, offset int64) bool {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return false
	}
	return bytes.Contains(b[offset:], []byte("Address already in use"))
}

// tail returns at most the last n bytes of s, cut at a line start.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
