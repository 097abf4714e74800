package faults

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/pgxv5"
)

// testDriver is one row of the suite's table of PostgreSQL drivers: how a
// case selects the driver, and how it recognises the driver's own errors.
// Every case that involves a login runs once per row (subtests "lib/pq"
// and "pgx") with the same body and assertions; where the drivers
// legitimately differ, the row says how, and the case asserts each
// driver's documented behaviour. The table lives here until the
// integration suites share one.
type testDriver struct {
	// name is the subtest's name.
	name string
	// sqlName is the name the driver is registered under with
	// database/sql, for a control login that bypasses the connector.
	sqlName string
	// errorType names the driver's server error type, for messages.
	errorType string
	// options select the driver.
	options []rotating.Option
	// serverError finds the driver's own server error type in err's
	// chain with errors.As (*pq.Error, or *pgconn.PgError inside pgx's
	// *pgconn.ConnectError, also when pgconn joined several).
	serverError func(err error) (sqlStater, bool)
	// returnedAsIs reports whether err is the error value the driver
	// itself returns for a login refused for a reason other than the
	// credential (53300): lib/pq's *pq.Error; pgx's *pgconn.ConnectError,
	// the *pgconn.PgError inside it. Connect returns such errors unwrapped.
	returnedAsIs func(err error) bool
	// loginLimits are the TestDriverLoginLimits cases, credentials that
	// PostgreSQL and libpq accept, that the driver cannot log in with.
	// lib/pq v1.12.3 does not normalise the password at all and puts the
	// username in the SCRAM initial message: every case. pgx v5.12 sends
	// an empty username, as libpq does, but normalises the password with
	// PRECIS OpaqueString (RFC 8265: NFC, non-ASCII spaces mapped to a
	// space) rather than SASLprep (RFC 4013: NFKC, and characters such as
	// the soft hyphen mapped to nothing), which PostgreSQL derives the
	// SCRAM secret with: a compatibility character (a ligature) stays, a
	// soft hyphen is disallowed and pgx then sends the raw password.
	loginLimits []string
	// hooked returns the option that selects the driver and runs h around
	// every login the connector makes.
	hooked func(h loginHooks) rotating.Option
}

// sqlStater is the interface both drivers' server errors implement.
type sqlStater interface{ SQLState() string }

// loginHooks run around each login of a connector, for the cases that
// need a login's timing to be deterministic. password is the login's.
type loginHooks struct {
	// before runs before the login begins.
	before func(ctx context.Context, password string)
	// afterSuccess runs after a login that worked, before Connect returns.
	afterSuccess func(ctx context.Context, password string)
}

// drivers is every driver, the default first.
var drivers = []testDriver{libPQ, pgxV5}

var libPQ = testDriver{
	name:      "lib/pq",
	sqlName:   "postgres",
	errorType: "*pq.Error",
	serverError: func(err error) (sqlStater, bool) {
		var e *pq.Error
		return e, errors.As(err, &e)
	},
	returnedAsIs: func(err error) bool {
		_, ok := err.(*pq.Error)
		return ok
	},
	loginLimits: []string{"saslprep-ligature", "saslprep-no-break-space", "saslprep-soft-hyphen", "saslprep-decomposed-accent", "1KiB-username"},
	hooked: func(h loginHooks) rotating.Option {
		// WithNewConnector's seam around lib/pq's own connector.
		return rotating.WithNewConnector(func(cfg pq.Config) (driver.Connector, error) {
			inner, err := pq.NewConnectorConfig(cfg)
			if err != nil {
				return nil, err
			}
			return rotating.ConnectorFunc(func(ctx context.Context) (driver.Conn, error) {
				h.before(ctx, cfg.Password)
				conn, err := inner.Connect(ctx)
				if err != nil {
					return nil, err
				}
				h.afterSuccess(ctx, cfg.Password)
				return conn, nil
			}), nil
		})
	},
}

var pgxV5 = testDriver{
	name:        "pgx",
	sqlName:     "pgx",
	errorType:   "*pgconn.PgError",
	options:     []rotating.Option{rotating.WithDriver(pgxv5.Driver())},
	loginLimits: []string{"saslprep-ligature", "saslprep-soft-hyphen"},
	serverError: func(err error) (sqlStater, bool) {
		var e *pgconn.PgError
		return e, errors.As(err, &e)
	},
	returnedAsIs: func(err error) bool {
		_, ok := err.(*pgconn.ConnectError)
		return ok
	},
	hooked: func(h loginHooks) rotating.Option {
		// pgx's own hooks, which pgxv5.Driver passes to every
		// credential's stdlib connector.
		return rotating.WithDriver(pgxv5.Driver(
			stdlib.OptionBeforeConnect(func(ctx context.Context, cfg *pgx.ConnConfig) error {
				h.before(ctx, cfg.Password)
				return nil
			}),
			stdlib.OptionAfterConnect(func(ctx context.Context, conn *pgx.Conn) error {
				h.afterSuccess(ctx, conn.Config().Password)
				return nil
			}),
		))
	},
}

// with returns the options that select the driver followed by opts.
func (d testDriver) with(opts ...rotating.Option) []rotating.Option {
	return append(slices.Clone(d.options), opts...)
}

// sqlState returns the SQLSTATE of the driver's own server error in err's
// chain, or "" if there is none, so that comparing it with a code also
// checks that the driver's error is still reachable with errors.As.
func (d testDriver) sqlState(err error) string {
	if e, ok := d.serverError(err); ok {
		return e.SQLState()
	}
	return ""
}

// control logs in through the driver alone, bypassing the connector, with
// a DSN that holds the password.
func (d testDriver) control(ctx context.Context, dsn string) error {
	db, err := sql.Open(d.sqlName, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.PingContext(ctx)
}

// forEachDriver runs f as one subtest per driver.
func forEachDriver(t *testing.T, f func(t *testing.T, d testDriver)) {
	t.Helper()
	for _, d := range drivers {
		t.Run(d.name, func(t *testing.T) { f(t, d) })
	}
}
