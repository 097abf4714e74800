// Package apptest is the application side of the store integration
// suites (integration/aws, secrets/azkv/integration,
// secrets/gcpsm/integration): the connector under test on a *sql.DB, and
// the checks on the error of a Connect that found neither a working cached
// credential nor a working store. It is apart from testkit because it
// imports the root package, whose own tests import testkit.
package apptest

import (
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/internal/testkit/drivers"
	"github.com/pgrotate/rotating/secrets"
)

// Open is the application: a Connector over src for dsn that logs to
// logger (opts come after, and may override it), and sql.OpenDB on it.
// Both are closed when the test ends.
func Open(t testing.TB, dsn string, src secrets.Source, logger *slog.Logger, opts ...rotating.Option) (*rotating.Connector, *sql.DB) {
	t.Helper()
	c, err := rotating.NewConnector(dsn, src, append([]rotating.Option{rotating.WithLogger(logger)}, opts...)...)
	if err != nil {
		t.Fatalf("NewConnector: %v", err)
	}
	db := sql.OpenDB(c)
	t.Cleanup(func() { _ = db.Close() }) // closes c too
	return c, db
}

// Rejected is what the error of a Connect must show when the database has
// rejected the cached credential and the store has none that works: an
// *rotating.AuthError matching ErrCredentialRejected, with the driver's
// 28P01 reachable, naming the secret, and with no secret in any
// rendering of it.
type Rejected struct {
	// Driver is the driver whose error must be in the chain.
	Driver drivers.Driver
	// Secret is the store's name of the secret, which the error must name.
	Secret string
	// Secrets may not appear in the error's text.
	Secrets *testkit.Secrets
	// FetchFailed says the store failed too: the error must then match
	// ErrFetchFailed and its AuthError carry the FetchErr.
	FetchFailed bool
	// Store, if not nil, checks the store's own part of the error (its
	// error type, the cause): it returns what is missing.
	Store func(err error) []string
}

// Problems lists what is wrong with err, the error of a Connect; nil means
// nothing.
func (w Rejected) Problems(err error) []string {
	if err == nil {
		return []string{"succeeded, want an error"}
	}
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if !errors.Is(err, rotating.ErrCredentialRejected) {
		add("errors.Is(err, ErrCredentialRejected) = false")
	}
	if w.FetchFailed && !errors.Is(err, rotating.ErrFetchFailed) {
		add("errors.Is(err, ErrFetchFailed) = false")
	}
	var authErr *rotating.AuthError
	if !errors.As(err, &authErr) {
		add("%T is not a *rotating.AuthError", err)
	} else if w.FetchFailed && authErr.FetchErr == nil {
		add("AuthError.FetchErr is nil")
	}
	if code := w.Driver.SQLState(err); code != "28P01" {
		add("no %s with SQLSTATE 28P01 in the error (got %q)", w.Driver.ErrorType, code)
	}
	if w.Store != nil {
		problems = append(problems, w.Store(err)...)
	}
	if !strings.Contains(err.Error(), w.Secret) {
		add("the error does not name the secret %q", w.Secret)
	}
	if w.Secrets != nil && w.Secrets.In(fmt.Sprintf("%v | %+v | %#v | %s | %q", err, err, err, err, err)) {
		add("the error's text contains a secret")
	}
	return problems
}
