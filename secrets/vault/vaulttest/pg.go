package vaulttest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Vault's default statements for PostgreSQL, with its template fields:
// {{name}} (also {{username}}), {{password}} and {{expiration}}.
const (
	defaultCreation = `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`
	defaultRenewal  = `ALTER ROLE "{{name}}" VALID UNTIL '{{expiration}}';`
	defaultRotation = `ALTER ROLE "{{name}}" WITH PASSWORD '{{password}}';`
)

// expirationFormat is how Vault's PostgreSQL plugin writes {{expiration}}.
const expirationFormat = "2006-01-02 15:04:05-0700"

// validUntilSlack is what Vault's database engine adds to a lease's end for
// the VALID UNTIL it sets: the role is dropped at the lease's end, and
// VALID UNTIL only bounds a role whose revocation failed.
const validUntilSlack = 5 * time.Second

// catalogLock is the advisory lock held by every transaction that creates
// or revokes a role. Concurrent GRANT and REVOKE statements on the same
// objects (schema public, the database, a shared table) update the same
// catalog rows and fail with "tuple concurrently updated"; the lock makes
// them take turns. It is the key the project's test helpers
// (internal/pgserver) take for the same reason, so that roles made by
// pgtest.NewRole and by this server do not collide either.
const catalogLock = 7370301

// revokeResult is what a revocation found and did.
type revokeResult struct {
	sessionsAtEnd   int // backends of the role when the revocation began
	sessionsAfter   int // backends still there after the termination
	terminated      int // backends pg_terminate_backend signalled
	roleWasAbsent   bool
	revocationError error
}

// backend is what the server does to PostgreSQL. The statements it is
// given are rendered already and may hold a password: no implementation
// may put a statement's text in an error or a log line.
type backend interface {
	// create runs a dynamic role's creation statements in one transaction.
	create(ctx context.Context, stmts []string) error
	// alter runs renewal or rotation statements in one transaction.
	alter(ctx context.Context, stmts []string) error
	// revoke ends username: it counts its sessions, runs the revocation
	// statements (Vault's default ones when stmts is empty), ends its
	// sessions unless keepSessions, and drops the role.
	revoke(ctx context.Context, username string, stmts []string, keepSessions bool) revokeResult
}

// pgBackend is the backend on a real PostgreSQL server, through a pool
// whose user may create and drop roles and end other roles' sessions (a
// superuser, or a role with CREATEROLE and pg_signal_backend).
type pgBackend struct{ db *sql.DB }

func (b *pgBackend) create(ctx context.Context, stmts []string) error { return b.locked(ctx, stmts) }

func (b *pgBackend) alter(ctx context.Context, stmts []string) error {
	// ALTER ROLE touches the role's own row only: no lock needed.
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, q := range stmts {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// locked runs stmts in one transaction that holds catalogLock.
func (b *pgBackend) locked(ctx context.Context, stmts []string) error {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", catalogLock); err != nil {
		return err
	}
	for _, q := range stmts {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// revoke follows Vault's PostgreSQL plugin: with no revocation statements
// of the role's own it revokes the role's privileges on the tables,
// sequences and schemas it was granted, and CONNECT on the database, then
// drops the role. Vault leaves the role's sessions running (they fail with
// permission errors from then on); unless told to keep them, this server
// ends them first, with ALTER ROLE NOLOGIN and pg_terminate_backend, then
// runs the revocation statements and the DROP.
func (b *pgBackend) revoke(ctx context.Context, username string, stmts []string, keepSessions bool) (res revokeResult) {
	var oid sql.NullInt64
	if err := b.db.QueryRowContext(ctx, "SELECT oid::int8 FROM pg_roles WHERE rolname = $1", username).Scan(&oid); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			res.roleWasAbsent = true
			return res
		}
		res.revocationError = fmt.Errorf("looking up role: %w", err)
		return res
	}
	count := func() (int, error) {
		var n int
		err := b.db.QueryRowContext(ctx, "SELECT count(*) FROM pg_stat_activity WHERE usesysid = $1::oid AND pid <> pg_backend_pid()", oid.Int64).Scan(&n)
		return n, err
	}
	n, err := count()
	if err != nil {
		res.revocationError = fmt.Errorf("counting sessions: %w", err)
		return res
	}
	res.sessionsAtEnd = n

	if !keepSessions {
		// The sessions end before the privileges are revoked, so that
		// only the statements running at that moment fail (with 57P01),
		// rather than every statement sent until the termination (with
		// 42501). New logins are refused first: a pool that reconnects
		// as soon as its sessions are ended would otherwise log in again
		// before the DROP ROLE, and that session would outlive the role,
		// without privileges. A backend that was already past the login
		// check when NOLOGIN committed may not have been in
		// pg_stat_activity at the first termination: a second round ends
		// it.
		if err := b.alter(ctx, []string{"ALTER ROLE " + quoteIdent(username) + " NOLOGIN"}); err != nil {
			res.revocationError = fmt.Errorf("refusing new logins: %w", err)
			return res
		}
		for round := 0; round < 2; round++ {
			// pg_terminate_backend with a timeout (PostgreSQL 14 and
			// later) waits for each backend to exit.
			var n int
			err := b.db.QueryRowContext(ctx,
				"SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE usesysid = $1::oid AND pid <> pg_backend_pid()",
				oid.Int64).Scan(&n)
			if err != nil {
				res.revocationError = fmt.Errorf("terminating sessions: %w", err)
				return res
			}
			res.terminated += n
			if n == 0 {
				break
			}
		}
	}
	if len(stmts) == 0 {
		if stmts, err = b.defaultRevocation(ctx, username); err != nil {
			res.revocationError = err
			return res
		}
	}
	if err := b.locked(ctx, stmts); err != nil {
		res.revocationError = fmt.Errorf("running revocation statements: %w", err)
		return res
	}
	if res.sessionsAfter, err = count(); err != nil {
		res.revocationError = fmt.Errorf("counting sessions: %w", err)
		return res
	}
	if err := b.locked(ctx, []string{"DROP ROLE IF EXISTS " + quoteIdent(username)}); err != nil {
		res.revocationError = fmt.Errorf("dropping role: %w", err)
	}
	return res
}

// defaultRevocation builds Vault's default revocation statements for
// username.
func (b *pgBackend) defaultRevocation(ctx context.Context, username string) ([]string, error) {
	rows, err := b.db.QueryContext(ctx, `SELECT DISTINCT table_schema FROM information_schema.role_table_grants WHERE grantee = $1
		UNION SELECT DISTINCT table_schema FROM information_schema.role_column_grants WHERE grantee = $1`, username)
	if err != nil {
		return nil, fmt.Errorf("listing the role's grants: %w", err)
	}
	defer rows.Close()
	id := quoteIdent(username)
	var stmts []string
	for rows.Next() {
		var schema string
		if err := rows.Scan(&schema); err != nil {
			return nil, fmt.Errorf("listing the role's grants: %w", err)
		}
		if schema == "public" {
			continue // below
		}
		stmts = append(stmts,
			"REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA "+quoteIdent(schema)+" FROM "+id,
			"REVOKE ALL PRIVILEGES ON ALL SEQUENCES IN SCHEMA "+quoteIdent(schema)+" FROM "+id,
			"REVOKE USAGE ON SCHEMA "+quoteIdent(schema)+" FROM "+id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing the role's grants: %w", err)
	}
	var dbname string
	if err := b.db.QueryRowContext(ctx, "SELECT current_database()").Scan(&dbname); err != nil {
		return nil, fmt.Errorf("reading the database name: %w", err)
	}
	return append(stmts,
		"REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA public FROM "+id,
		"REVOKE ALL PRIVILEGES ON ALL SEQUENCES IN SCHEMA public FROM "+id,
		"REVOKE USAGE ON SCHEMA public FROM "+id,
		"REVOKE CONNECT ON DATABASE "+quoteIdent(dbname)+" FROM "+id), nil
}

// quoteIdent quotes a PostgreSQL identifier.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// render fills Vault's template fields in each of stmts and splits the
// result into single statements.
func render(stmts []string, name, password string, expiration time.Time) []string {
	r := strings.NewReplacer(
		"{{name}}", name, "{{username}}", name,
		"{{password}}", password,
		"{{expiration}}", expiration.UTC().Format(expirationFormat))
	var out []string
	for _, s := range stmts {
		out = append(out, splitStatements(r.Replace(s))...)
	}
	return out
}

// splitStatements splits SQL text at the semicolons that are outside
// quotes (single-quoted literals, double-quoted identifiers and
// dollar-quoted strings) and comments, dropping empty statements. It lets
// one template string hold several statements, as Vault's do, whichever
// driver runs them (pgx runs one statement per Exec).
func splitStatements(sql string) []string {
	var out []string
	start := 0
	emit := func(end int) {
		if s := strings.TrimSpace(sql[start:end]); s != "" {
			out = append(out, s)
		}
	}
	for i := 0; i < len(sql); i++ {
		switch c := sql[i]; {
		case c == '\'' || c == '"':
			// Doubled quotes inside are two adjacent quoted runs: the
			// loop handles them without special cases.
			j := strings.IndexByte(sql[i+1:], c)
			if j < 0 {
				i = len(sql)
			} else {
				i += j + 1
			}
		case c == '-' && strings.HasPrefix(sql[i:], "--"):
			j := strings.IndexByte(sql[i:], '\n')
			if j < 0 {
				i = len(sql)
			} else {
				i += j
			}
		case c == '/' && strings.HasPrefix(sql[i:], "/*"):
			j := strings.Index(sql[i+2:], "*/")
			if j < 0 {
				i = len(sql)
			} else {
				i += j + 3
			}
		case c == '$':
			if tag, ok := dollarTag(sql[i:]); ok {
				j := strings.Index(sql[i+len(tag):], tag)
				if j < 0 {
					i = len(sql)
				} else {
					i += len(tag) + j + len(tag) - 1
				}
			}
		case c == ';':
			emit(i)
			start = i + 1
		}
	}
	if start < len(sql) {
		emit(len(sql))
	}
	return out
}

// dollarTag returns the dollar-quote tag ("$$" or "$name$") at the start
// of s.
func dollarTag(s string) (string, bool) {
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '$':
			return s[:i+1], true
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 1 && c >= '0' && c <= '9':
		default:
			return "", false
		}
	}
	return "", false
}

// redactedError is an error whose text had secrets replaced; the original
// stays reachable with errors.As and errors.Is.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redact returns err with every non-empty secret in its text replaced by
// "[redacted]", or nil for a nil err.
func redact(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
	return &redactedError{msg: msg, err: err}
}
