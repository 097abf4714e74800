package rotation

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/lib/pq"

	"github.com/pgrotate/rotating/secrets"
)

// applicationName identifies the rotation's sessions in pg_stat_activity.
const applicationName = "pgrotate-rotation"

// session is one logged-in database connection.
type session struct {
	db   *sql.DB
	conn *sql.Conn
}

func (s *session) Close() {
	_ = s.conn.Close()
	_ = s.db.Close()
}

// pqConfig builds the lib/pq configuration for c field by field: no DSN
// string is ever assembled, so a password may hold any character.
func (r *Rotator) pqConfig(ctx context.Context, c secrets.Credential) pq.Config {
	timeout := r.opts.ConnectTimeout
	if deadline, ok := ctx.Deadline(); ok {
		// lib/pq bounds only the TCP dial by the context; connect_timeout
		// bounds the handshake. Round up: pq treats zero as no limit.
		timeout = min(timeout, max(time.Until(deadline), time.Millisecond))
	}
	return pq.Config{
		Host:               c.Host,
		Port:               uint16(c.Port),
		Database:           c.Database,
		User:               c.Username,
		Password:           c.Password,
		SSLMode:            r.opts.SSLMode,
		SSLSNI:             true,
		ConnectTimeout:     timeout,
		ApplicationName:    applicationName,
		ClientEncoding:     "UTF8",
		Datestyle:          "ISO, MDY",
		MinProtocolVersion: pq.ProtocolVersion30,
		MaxProtocolVersion: pq.ProtocolVersion30,
	}
}

// login opens one connection as c. what names the credential in logs and
// errors ("AWSCURRENT", "master secret ...").
func (r *Rotator) login(ctx context.Context, c secrets.Credential, what string) (*session, error) {
	connector, err := r.opts.NewConnector(r.pqConfig(ctx, c))
	if err != nil {
		return nil, fmt.Errorf("connector for %s: %w", what, redact(err, c.Password))
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		_ = db.Close()
		return nil, &loginError{what: what, user: c.Username, err: redact(err, c.Password)}
	}
	r.log.LogAttrs(ctx, slog.LevelDebug, "rotation: logged in",
		slog.String("credential", what), slog.String("username", c.Username),
		slog.String("host", c.Host), slog.Int("port", c.Port), slog.String("dbname", c.Database))
	return &session{db: db, conn: conn}, nil
}

// loginError is a login that failed; it matches ErrLoginFailed only if
// the server refused the credential, not if the server was unreachable.
type loginError struct {
	what, user string
	err        error
}

func (e *loginError) Error() string {
	return fmt.Sprintf("log in with %s as user %q: %v", e.what, e.user, e.err)
}

func (e *loginError) Unwrap() []error {
	if isAuthFailure(e.err) {
		return []error{ErrLoginFailed, e.err}
	}
	return []error{e.err}
}

// canLogin reports whether c can log in. A login the server refuses is
// false with no error; any other failure (unreachable host, cancelled
// context) is an error, since trying other credentials would not help.
func (r *Rotator) canLogin(ctx context.Context, c secrets.Credential, what string) (bool, error) {
	s, err := r.login(ctx, c, what)
	if err != nil {
		if isAuthFailure(err) {
			r.log.LogAttrs(ctx, slog.LevelDebug, "rotation: login refused",
				slog.String("credential", what), slog.String("username", c.Username))
			return false, nil
		}
		return false, err
	}
	s.Close()
	return true, nil
}

// isAuthFailure reports whether err is the server refusing a login:
// SQLSTATE 28P01 (wrong password, or no such role) or 28000 (pg_hba.conf,
// or another authentication method failing). The interface matches lib/pq's
// and pgx's errors alike.
func isAuthFailure(err error) bool {
	var st interface{ SQLState() string }
	if !errors.As(err, &st) {
		return false
	}
	code := st.SQLState()
	return code == "28P01" || code == "28000"
}

// setPassword runs ALTER USER ... WITH PASSWORD on s. DDL takes no bind
// parameters, so the name and the password are quoted by lib/pq's quoting
// functions.
func setPassword(ctx context.Context, s *session, username, password string) error {
	stmt := "ALTER USER " + pq.QuoteIdentifier(username) + " WITH PASSWORD " + pq.QuoteLiteral(password)
	if _, err := s.conn.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("ALTER USER %s: %w", pq.QuoteIdentifier(username), redact(err, password))
	}
	return nil
}

// createOrAlterUser makes pending log in with password, as the master user:
// if the role does not exist it is created as a member of current, so that
// it has current's privileges; otherwise its password is changed.
func createOrAlterUser(ctx context.Context, s *session, current, pending, password string) (created bool, err error) {
	tx, err := s.conn.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	var exists bool
	if err := tx.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", pending).Scan(&exists); err != nil {
		return false, fmt.Errorf("look up role %s: %w", pq.QuoteIdentifier(pending), err)
	}
	if exists {
		stmt := "ALTER USER " + pq.QuoteIdentifier(pending) + " WITH PASSWORD " + pq.QuoteLiteral(password)
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return false, fmt.Errorf("ALTER USER %s: %w", pq.QuoteIdentifier(pending), redact(err, password))
		}
	} else {
		stmt := "CREATE ROLE " + pq.QuoteIdentifier(pending) + " WITH LOGIN PASSWORD " + pq.QuoteLiteral(password)
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return false, fmt.Errorf("CREATE ROLE %s: %w", pq.QuoteIdentifier(pending), redact(err, password))
		}
		grant := "GRANT " + pq.QuoteIdentifier(current) + " TO " + pq.QuoteIdentifier(pending)
		if _, err := tx.ExecContext(ctx, grant); err != nil {
			return false, fmt.Errorf("%s: %w", grant, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("commit: %w", redact(err, password))
	}
	return !exists, nil
}

// sameServer reports whether two credentials name the same server. Host
// names are compared without regard to case, as DNS does.
func sameServer(a, b secrets.Credential) bool {
	return strings.EqualFold(a.Host, b.Host) && a.Port == b.Port
}
