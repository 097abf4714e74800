package main

import (
	"context"
	"database/sql/driver"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/naive"
	"github.com/pgrotate/rotating/pgxv5"
	"github.com/pgrotate/rotating/secrets"
)

// driverName is the PostgreSQL driver demo and check log in with (-driver).
type driverName string

const (
	driverPQ  driverName = "lib/pq"
	driverPGX driverName = "pgx"
)

const driverFlagHelp = "PostgreSQL driver: lib/pq (also pq, libpq), or pgx (also pgx/v5) for pgx v5's database/sql adapter through rotating.WithDriver(pgxv5.Driver())"

// parseDriver reads -driver's value; ok is false for an unknown one.
func parseDriver(s string) (d driverName, ok bool) {
	switch s {
	case "pq", "libpq", "lib/pq":
		return driverPQ, true
	case "pgx", "pgx/v5":
		return driverPGX, true
	}
	return "", false
}

// badDriver is the usage error for an unknown -driver value.
const badDriver = "-driver %q: want lib/pq (or pq, libpq) or pgx (or pgx/v5)"

// title names the driver in reports: the package that logs in.
func (d driverName) title() string {
	if d == driverPGX {
		return "pgx v5 (github.com/jackc/pgx/v5/stdlib)"
	}
	return "lib/pq (github.com/lib/pq)"
}

// describe names the driver and how the rotating connector is given it.
func (d driverName) describe() string {
	if d == driverPGX {
		return d.title() + ", through rotating.WithDriver(pgxv5.Driver())"
	}
	return driverPQ.title() + ", the rotating connector's default"
}

// option is what a rotating.NewConnector needs to log in through d: none
// for lib/pq, the default.
func (d driverName) option() []rotating.Option {
	if d == driverPGX {
		return []rotating.Option{rotating.WithDriver(pgxv5.Driver())}
	}
	return nil
}

// probedOption is option with every login attempt counted into the
// Connect's loginProbe (see workload.go): for lib/pq through
// WithNewConnector, its seam; for pgx by wrapping the pgxv5 driver's
// connectors, which WithNewConnector cannot be combined with.
func (d driverName) probedOption() rotating.Option {
	if d == driverPGX {
		return rotating.WithDriver(probedDriver{pgxv5.Driver()})
	}
	return rotating.WithNewConnector(newProbedConnector)
}

// probedDriver is a rotating.Driver whose connectors count their login
// attempts. The connections are the driver's own, unwrapped.
type probedDriver struct{ rotating.Driver }

func (d probedDriver) ParseDSN(dsn string) (rotating.DriverConfig, error) {
	cfg, err := d.Driver.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	return probedConfig{cfg}, nil
}

type probedConfig struct{ rotating.DriverConfig }

func (c probedConfig) Connector(cred secrets.Credential, loginTimeout time.Duration) (driver.Connector, string, error) {
	conn, user, err := c.DriverConfig.Connector(cred, loginTimeout)
	if err != nil {
		return nil, user, err
	}
	return probedConnector{conn}, user, nil
}

// dialer opens the naive approaches' connections with the run's driver:
// the DSN is parsed once, and each credential gets a connector of its own,
// its user and password set as fields on a copy, login attempts counted
// and each login bounded by connectTimeout.
type dialer interface {
	connector(cred secrets.Credential) (driver.Connector, error)
	driver() driver.Driver
}

// dialOf is d as the naive connectors log in: one login with a credential.
func dialOf(d dialer) naive.Dial {
	return func(ctx context.Context, cred secrets.Credential) (driver.Conn, error) {
		c, err := d.connector(cred)
		if err != nil {
			return nil, err
		}
		return c.Connect(ctx)
	}
}

func newDialer(d driverName, dsn string) (dialer, error) {
	if d == driverPGX {
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			return nil, err
		}
		return pgxDialer{cfg}, nil
	}
	cfg, err := pq.NewConfig(dsn)
	if err != nil {
		return nil, err
	}
	return pqDialer{cfg}, nil
}

type pqDialer struct{ base pq.Config }

func (d pqDialer) connector(cred secrets.Credential) (driver.Connector, error) {
	cfg := d.base.Clone()
	if cred.Username != "" {
		cfg.User = cred.Username
	}
	cfg.Password = cred.Password
	return newProbedConnector(cfg)
}

func (pqDialer) driver() driver.Driver { return &pq.Driver{} }

type pgxDialer struct{ base *pgx.ConnConfig }

func (d pgxDialer) connector(cred secrets.Credential) (driver.Connector, error) {
	cfg := d.base.Copy()
	if cred.Username != "" {
		cfg.User = cred.Username
	}
	cfg.Password = cred.Password
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = connectTimeout
	}
	return probedConnector{stdlib.GetConnector(*cfg)}, nil
}

func (pgxDialer) driver() driver.Driver { return stdlib.GetDefaultDriver() }

// Compile-time checks.
var (
	_ rotating.Driver       = probedDriver{}
	_ rotating.DriverConfig = probedConfig{}
	_ dialer                = pqDialer{}
	_ dialer                = pgxDialer{}
	_ driver.Connector      = probedConnector{}
)
