// Package pgxv5 lets a rotating.Connector log in through pgx v5's
// database/sql adapter (github.com/jackc/pgx/v5/stdlib) instead of lib/pq,
// with the same guarantees: the credential model, the rotation, the errors
// and the sessions' retirement are the Connector's.
//
//	connector, err := rotating.NewConnector(dsn, src, rotating.WithDriver(pgxv5.Driver()))
//	db := sql.OpenDB(connector)
//
// The DSN is parsed once with pgx.ParseConfig; each credential gets a copy
// of that configuration (pgx.ConnConfig.Copy) with its user and password
// set as fields, so any password works, and PGPASSWORD or a passfile never
// supplies the login. Connections are pgx's own *stdlib.Conn, so
// (*sql.Conn).Raw still reaches *pgx.Conn (through rotating.DriverConn for a
// credential whose sessions end). The driver's errors stay reachable:
// errors.As(err, &pgErr) finds the *pgconn.PgError (28P01, 28000) inside
// pgx's *pgconn.ConnectError, also when several hosts' errors are joined;
// the ConnectError's Config no longer holds the password.
package pgxv5

import (
	"context"
	"database/sql/driver"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/secrets"
)

// Compile-time check.
var _ rotating.Driver = pgxDriver{}

// Driver returns the rotating.Driver for pgx v5. opts are passed to
// stdlib.GetConnector for every credential: stdlib.OptionAfterConnect,
// OptionResetSession, OptionShouldPing, and OptionBeforeConnect, which runs
// after the credential is applied (it sees, and may change, the
// configuration the login uses).
func Driver(opts ...stdlib.OptionOpenDB) rotating.Driver {
	return pgxDriver{opts: opts}
}

// NewConnector is rotating.NewConnector with WithDriver(Driver()).
func NewConnector(dsn string, src secrets.Source, opts ...rotating.Option) (*rotating.Connector, error) {
	return rotating.NewConnector(dsn, src, append([]rotating.Option{rotating.WithDriver(Driver())}, opts...)...)
}

type pgxDriver struct{ opts []stdlib.OptionOpenDB }

// ParseDSN parses dsn with pgx.ParseConfig. pgx's parse errors redact the
// password; the Connector removes every quoted fragment as well.
func (d pgxDriver) ParseDSN(dsn string) (rotating.DriverConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	return config{dsn: dsn, cfg: cfg, opts: d.opts}, nil
}

// config is the parsed DSN. It keeps the DSN itself for the rare credential
// that supplies an endpoint: pgx derives the TLS server name and the
// fallback hosts from the host when it parses, so those logins are parsed
// again with the endpoint set (host, port and database are not secrets; the
// password is always set as a field).
type config struct {
	dsn  string
	cfg  *pgx.ConnConfig
	opts []stdlib.OptionOpenDB
}

func (c config) Connector(cred secrets.Credential, loginTimeout time.Duration) (driver.Connector, string, error) {
	cfg := c.cfg
	if cred.Host != "" || cred.Port != 0 || cred.Database != "" {
		var err error
		if cfg, err = pgx.ParseConfig(withEndpoint(c.dsn, cred)); err != nil {
			return nil, "", err
		}
	}
	cfg = cfg.Copy()
	if cred.Username != "" {
		cfg.User = cred.Username
	}
	cfg.Password = cred.Password
	if len(cfg.Fallbacks) == 0 {
		// One host: pgx's ConnectTimeout bounds the whole login (dial, TLS,
		// authentication) on top of the caller's context, at no cost of
		// ours per login.
		if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > loginTimeout {
			cfg.ConnectTimeout = loginTimeout
		}
		return redacting{stdlib.GetConnector(*cfg, c.opts...)}, cfg.User, nil
	}
	// Several hosts (or TLS with a plain fallback): ConnectTimeout applies
	// per host, so the login as a whole is bounded here.
	return boundConnector{redacting{stdlib.GetConnector(*cfg, c.opts...)}, loginTimeout}, cfg.User, nil
}

// redacting removes the password from pgx's login errors: a
// *pgconn.ConnectError carries the configuration of the attempt, password
// included, in its exported Config field, where code that reflects into
// errors (or calls errors.As) could find it. Each ConnectError of the
// error's tree gets a copy of its Config without the password; the
// configuration pgx used is its own copy and is not touched.
type redacting struct{ inner driver.Connector }

func (r redacting) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := r.inner.Connect(ctx)
	if err != nil {
		redactTree(err)
		return nil, err
	}
	return conn, nil
}

func (r redacting) Driver() driver.Driver { return r.inner.Driver() }

func redactTree(err error) {
	switch e := err.(type) {
	case *pgconn.ConnectError:
		if e.Config != nil && e.Config.Password != "" {
			cfg := *e.Config
			cfg.Password = ""
			e.Config = &cfg
		}
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		if next := u.Unwrap(); next != nil {
			redactTree(next)
		}
	case interface{ Unwrap() []error }:
		for _, next := range u.Unwrap() {
			redactTree(next)
		}
	}
}

func (config) Driver() driver.Driver { return stdlib.GetDefaultDriver() }

// boundConnector bounds every login by loginTimeout as well as the
// caller's context. pgx honours the context for the whole login (dial,
// TLS, authentication), so a timeout on it is enough.
type boundConnector struct {
	inner        driver.Connector
	loginTimeout time.Duration
}

func (b boundConnector) Connect(ctx context.Context) (driver.Conn, error) {
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > b.loginTimeout {
		// The caller's context ends later, or never: bound the login. (A
		// caller whose context ends first needs no timer of ours.)
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.loginTimeout)
		defer cancel()
	}
	conn, err := b.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return conn, nil
}

func (b boundConnector) Driver() driver.Driver { return b.inner.Driver() }

// withEndpoint returns dsn with the credential's host, port and database
// set: as query parameters of a URL, or as keywords appended to a
// key=value DSN (a later keyword wins).
func withEndpoint(dsn string, cred secrets.Credential) string {
	set := map[string]string{}
	if cred.Host != "" {
		set["host"] = cred.Host
	}
	if cred.Port != 0 {
		set["port"] = strconv.Itoa(cred.Port)
	}
	if cred.Database != "" {
		set["dbname"] = cred.Database
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return dsn // pgx parsed it once: it parses
		}
		q := u.Query()
		for k, v := range set {
			q.Set(k, v)
		}
		if _, ok := set["host"]; ok {
			// The URL's own host list would come first; the parameter
			// replaces it only if the authority has none.
			u.Host = ""
		}
		if _, ok := set["dbname"]; ok {
			u.Path = ""
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	var b strings.Builder
	b.WriteString(dsn)
	for _, k := range []string{"host", "port", "dbname"} {
		if v, ok := set[k]; ok {
			b.WriteString(" " + k + "='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'")
		}
	}
	return b.String()
}
