package rotating

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors, for errors.Is. The typed errors below match them through
// their Is methods, and wrap the underlying cause for errors.As.
var (
	// ErrClosed is returned by Connect after Close.
	ErrClosed = errors.New("rotating: connector is closed")

	// ErrInvalidDSN means the application's DSN could not be parsed. The
	// error is a *DSNError.
	ErrInvalidDSN = errors.New("rotating: invalid DSN")

	// ErrInvalidOption means an Option was given an unusable value.
	ErrInvalidOption = errors.New("rotating: invalid option")

	// ErrFetchFailed means the credential source could not produce a usable
	// credential. The error is a *FetchError that wraps the source's error.
	ErrFetchFailed = errors.New("rotating: credential fetch failed")

	// ErrCredentialRejected means the database kept rejecting the login
	// and no working credential appeared within the rotation wait or the
	// caller's deadline. The error is an *AuthError; the driver's error
	// (a *pq.Error with SQLSTATE 28P01 or 28000) is reachable with
	// errors.As.
	ErrCredentialRejected = errors.New("rotating: credential rejected")
)

// DSNError reports a DSN that lib/pq could not parse. Reason is lib/pq's
// explanation with every quoted fragment of the DSN removed, since a
// fragment may be part of a password; for the same reason the error does not
// wrap lib/pq's original error.
type DSNError struct {
	Reason string
}

func (e *DSNError) Error() string { return "rotating: invalid DSN: " + e.Reason }

// Is reports whether target is ErrInvalidDSN.
func (e *DSNError) Is(target error) bool { return target == ErrInvalidDSN }

// FetchError reports that a credential source failed, or returned a
// credential that cannot be used (an empty password, say).
type FetchError struct {
	// Source describes the source (see secrets.Describe).
	Source string
	// Pending is true when the failed call asked for the pending credential.
	Pending bool
	// Err is the source's error.
	Err error
}

func (e *FetchError) Error() string {
	what := "fetching credential from "
	if e.Pending {
		what = "fetching pending credential from "
	}
	return "rotating: " + what + e.Source + ": " + e.Err.Error()
}

// Unwrap returns the source's error.
func (e *FetchError) Unwrap() error { return e.Err }

// Is reports whether target is ErrFetchFailed.
func (e *FetchError) Is(target error) bool { return target == ErrFetchFailed }

// AuthError reports that the database rejected every credential the
// connector could find while a Connect waited for a working one.
type AuthError struct {
	// Source describes the credential source.
	Source string
	// Username and Version identify the last credential that was rejected
	// (never its password).
	Username string
	Version  string
	// Waited is how long the Connect waited for a working credential.
	Waited time.Duration
	// Err is the driver's error from the last rejected login, typically a
	// *pq.Error with SQLSTATE 28P01.
	Err error
	// FetchErr, if not nil, is the last error from the source while waiting
	// (the store was down as well).
	FetchErr error
	// CtxErr, if not nil, is the caller's context error that ended the wait
	// before the rotation wait did.
	CtxErr error
}

func (e *AuthError) Error() string {
	var b strings.Builder
	b.WriteString("rotating: login rejected for user ")
	b.WriteString(strconv.Quote(e.Username))
	if e.Version != "" {
		b.WriteString(" (credential version ")
		b.WriteString(e.Version)
		b.WriteString(")")
	}
	b.WriteString(" from ")
	b.WriteString(e.Source)
	b.WriteString("; no working credential appeared")
	if e.CtxErr != nil {
		b.WriteString(" before the caller's context ended (")
		b.WriteString(e.CtxErr.Error())
		b.WriteString(")")
	} else {
		b.WriteString(" within ")
		b.WriteString(e.Waited.Round(time.Millisecond).String())
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	if e.FetchErr != nil {
		b.WriteString("; and the source failed: ")
		b.WriteString(e.FetchErr.Error())
	}
	return b.String()
}

// Unwrap returns the driver's error and, when set, the fetch and context
// errors, so that errors.As finds a *pq.Error and errors.Is finds
// context.DeadlineExceeded or ErrFetchFailed.
func (e *AuthError) Unwrap() []error {
	errs := []error{e.Err}
	if e.FetchErr != nil {
		errs = append(errs, e.FetchErr)
	}
	if e.CtxErr != nil {
		errs = append(errs, e.CtxErr)
	}
	return errs
}

// Is reports whether target is ErrCredentialRejected.
func (e *AuthError) Is(target error) bool { return target == ErrCredentialRejected }

// sqlStater is implemented by lib/pq's *pq.Error and pgx's *pgconn.PgError.
type sqlStater interface{ SQLState() string }

// hasSQLState reports whether err, or any error it wraps (including every
// branch of a joined multi-host error), carries one of codes.
func hasSQLState(err error, codes []string) bool {
	switch e := err.(type) {
	case nil:
		return false
	case sqlStater:
		state := e.SQLState()
		for _, c := range codes {
			if state == c {
				return true
			}
		}
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return hasSQLState(u.Unwrap(), codes)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if hasSQLState(e, codes) {
				return true
			}
		}
	}
	return false
}
