// Package drivers is the table of PostgreSQL drivers that the integration
// suites run against, so that each suite is written once and proves the
// same guarantees for lib/pq (the default) and for pgx v5:
//
//	for _, d := range drivers.All {
//		t.Run(d.Name, func(t *testing.T) {
//			c, err := rotating.NewConnector(dsn, src, d.With(rotating.WithLogger(logger))...)
//			...
//			if d.SQLState(err) != "28P01" { ... }
//		})
//	}
//
// It is a package of its own, not part of testkit, because it imports the
// root package (and pgxv5), whose own tests import testkit.
package drivers

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"reflect"
	"slices"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/pgxv5"
)

// Driver is one row of the table: how a test selects the driver, and how
// it recognises the driver's own errors and connections.
type Driver struct {
	// Name is the subtest's name: "lib/pq" or "pgx".
	Name string
	// SQLName is the name the driver is registered under with
	// database/sql, for a test's control login that bypasses the
	// connector (sql.Open(d.SQLName, dsn)).
	SQLName string
	// ErrorType names the driver's server error type, for messages.
	ErrorType string

	options []rotating.Option
	// serverError returns the SQLSTATE of the driver's own server error
	// type in err's chain, found with errors.As.
	serverError func(err error) (code string, ok bool)
	checkConn   func(dc any) error
}

// All is every driver, the default first.
var All = []Driver{LibPQ, PGX}

// LibPQ is github.com/lib/pq, the Connector's default driver.
var LibPQ = Driver{
	Name:      "lib/pq",
	SQLName:   "postgres",
	ErrorType: "*pq.Error",
	serverError: func(err error) (string, bool) {
		var e *pq.Error
		if !errors.As(err, &e) {
			return "", false
		}
		return string(e.Code), true
	},
	checkConn: func(dc any) error {
		if typ := reflect.TypeOf(dc); typ == nil || typ.Kind() != reflect.Pointer || typ.Elem().PkgPath() != "github.com/lib/pq" {
			return fmt.Errorf("driver connection is a %T, want lib/pq's own connection", dc)
		}
		// database/sql uses these to reset, validate and check arguments;
		// a wrapper that hid them would change the pool's behaviour.
		if _, ok := dc.(driver.SessionResetter); !ok {
			return fmt.Errorf("driver connection %T does not implement driver.SessionResetter", dc)
		}
		if _, ok := dc.(driver.Validator); !ok {
			return fmt.Errorf("driver connection %T does not implement driver.Validator", dc)
		}
		if _, ok := dc.(driver.NamedValueChecker); !ok {
			return fmt.Errorf("driver connection %T does not implement driver.NamedValueChecker", dc)
		}
		return nil
	},
}

// PGX is github.com/jackc/pgx/v5 through its database/sql adapter,
// selected with rotating.WithDriver(pgxv5.Driver()).
var PGX = Driver{
	Name:      "pgx",
	SQLName:   "pgx/v5",
	ErrorType: "*pgconn.PgError",
	options:   []rotating.Option{rotating.WithDriver(pgxv5.Driver())},
	serverError: func(err error) (string, bool) {
		var e *pgconn.PgError
		if !errors.As(err, &e) {
			return "", false
		}
		return e.Code, true
	},
	checkConn: func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("driver connection is a %T, want pgx's *stdlib.Conn", dc)
		}
		// What pgx users use pgx for (CopyFrom, batches, pgtype) is on
		// the *pgx.Conn inside.
		if sc.Conn() == nil || sc.Conn().IsClosed() {
			return errors.New("(*stdlib.Conn).Conn() is nil or closed")
		}
		return nil
	},
}

// With returns the options that select the driver followed by opts, for
// rotating.NewConnector.
func (d Driver) With(opts ...rotating.Option) []rotating.Option {
	return append(slices.Clone(d.options), opts...)
}

// SQLState returns the SQLSTATE of the server error in err's chain if it
// is the driver's own type (*pq.Error or *pgconn.PgError, found with
// errors.As), and "" otherwise, so that a test comparing it with "28P01"
// also checks that the driver's error is still reachable.
func (d Driver) SQLState(err error) string {
	code, _ := d.serverError(err)
	return code
}

// CheckConn returns why dc, the connection (*sql.Conn).Raw passes (through
// rotating.DriverConn for a credential whose sessions end), is not the
// driver's own, or nil if it is.
func (d Driver) CheckConn(dc any) error { return d.checkConn(dc) }
