package rotating

import (
	"database/sql/driver"
	"net/netip"
	"time"

	"github.com/lib/pq"

	"github.com/pgrotate/rotating/secrets"
)

// Driver is the PostgreSQL driver a Connector logs in with: lib/pq by
// default, or pgx v5 with WithDriver(pgxv5.Driver()) (package
// github.com/pgrotate/rotating/pgxv5). Everything else (the credential
// model, the rotation, the errors, the sessions' retirement) is the
// Connector's and the same for every driver.
type Driver interface {
	// ParseDSN parses the application's DSN. NewConnector calls it once.
	// Its errors must not contain the DSN, which may hold a password.
	ParseDSN(dsn string) (DriverConfig, error)
}

// DriverConfig is the application's DSN as a Driver parsed it.
type DriverConfig interface {
	// Connector returns the connector that logs in with cred, on a copy of
	// the configuration of its own: cred's Username (if set) and Password
	// replace the DSN's, and its Host, Port and Database, where set,
	// replace the DSN's (the Connector has already cleared those the DSN's
	// win over). The password must be the only one used: never a pgpass
	// file's or PGPASSWORD's. Every login must be bounded by the caller's
	// context and by loginTimeout, TLS and authentication included. user is
	// the user it logs in as. Connector is called once per credential.
	Connector(cred secrets.Credential, loginTimeout time.Duration) (c driver.Connector, user string, err error)
	// Driver returns the database/sql driver, for Connector.Driver.
	Driver() driver.Driver
}

// libpq is the default Driver. newConnector is WithNewConnector's function,
// or nil for lib/pq's own connector.
type libpq struct{ newConnector NewConnectorFunc }

func (d libpq) ParseDSN(dsn string) (DriverConfig, error) {
	cfg, err := pq.NewConfig(dsn)
	if err != nil {
		return nil, err
	}
	return libpqConfig{cfg: cfg, newConnector: d.newConnector}, nil
}

// libpqConfig builds every login from a clone of the parsed pq.Config with
// the credential set as fields, never by concatenating DSN strings, so any
// password works whatever it contains.
type libpqConfig struct {
	cfg          pq.Config
	newConnector NewConnectorFunc
}

func (d libpqConfig) Connector(cred secrets.Credential, loginTimeout time.Duration) (driver.Connector, string, error) {
	cfg := d.cfg.Clone()
	if cred.Username != "" {
		cfg.User = cred.Username
	}
	cfg.Password = cred.Password
	// The password is never empty here (Credential.Validate), so pq never
	// reads a pgpass file; clearing Passfile makes that explicit.
	cfg.Passfile = ""
	if cred.Host != "" {
		cfg.Host = cred.Host
		cfg.Hostaddr = netip.Addr{}
		cfg.Multi = nil
	}
	if cred.Port != 0 {
		cfg.Port = uint16(cred.Port)
	}
	if cred.Database != "" {
		cfg.Database = cred.Database
	}
	var (
		conn driver.Connector
		err  error
	)
	if d.newConnector != nil {
		conn, err = d.newConnector(cfg)
	} else {
		conn, err = newPQConnector(cfg, loginTimeout)
	}
	return conn, cfg.User, err
}

func (libpqConfig) Driver() driver.Driver { return &pq.Driver{} }
