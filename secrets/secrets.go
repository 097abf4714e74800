// Package secrets defines where the rotating connector gets database
// credentials from: the [Source] interface, the [Credential] it returns, and
// the small sources that need no external service ([Static], [Func], [Env],
// [File]). Sources for external stores live in subpackages, one per store
// (for example secrets/awssm for AWS Secrets Manager).
//
// A Credential's Password is a secret. Every way this package formats a
// Credential (String, GoString, Format with any verb, slog's LogValue,
// MarshalJSON) prints "[REDACTED]" in its place, and no error returned by this
// package contains a secret value.
package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Source fetches the credential that is current in some store.
//
// Fetch is called rarely: once on first use, once per rotation, and when a
// proactive refresh is due. It must honour ctx (the connector bounds every
// call with its fetch timeout) and be safe for concurrent use. It must not
// put secret values in the errors it returns.
type Source interface {
	Fetch(ctx context.Context) (Credential, error)
}

// PendingSource is implemented by sources whose store can hold a credential
// that is not current yet but may already be live in the database, such as
// the version labelled AWSPENDING during an AWS Secrets Manager rotation,
// between the step that changes the password in the database and the step
// that promotes the new version to AWSCURRENT.
//
// The connector calls FetchPending only after the database rejected the
// current credential and a fresh Fetch returned that same rejected
// credential. rejected is the credential that failed. FetchPending returns
// [ErrNoPending] (possibly wrapped) when the store holds no pending
// credential. It may return a credential that became current after that
// Fetch (AWS leaves AWSPENDING on the version finishSecret promotes), which
// the connector treats as it treats a pending one. The connector uses a
// pending credential only after a login with it succeeded.
type PendingSource interface {
	Source
	FetchPending(ctx context.Context, rejected Credential) (Credential, error)
}

// Describer is implemented by sources that can name themselves for errors
// and logs, for example "file /var/run/secrets/db.json" or
// "aws-secretsmanager prod/app/db". The description must not contain a
// secret value.
type Describer interface {
	Describe() string
}

// Describe returns a description of src for errors and logs: its Describe
// method if it has one, or its Go type otherwise.
func Describe(src Source) string {
	if d, ok := src.(Describer); ok {
		return d.Describe()
	}
	return fmt.Sprintf("%T", src)
}

var (
	// ErrNoPending is returned by [PendingSource.FetchPending] when the store
	// has no pending credential.
	ErrNoPending = errors.New("secrets: no pending credential")

	// ErrEmptyPassword means a credential has no password. The connector
	// refuses such a credential rather than letting the driver fall back to a
	// pgpass file or the PGPASSWORD environment variable.
	ErrEmptyPassword = errors.New("secrets: credential has an empty password")

	// ErrMalformed means a secret's contents could not be parsed into a
	// credential. Errors that wrap it name the problem and the field, never
	// the value.
	ErrMalformed = errors.New("secrets: malformed secret")
)

// Credential is one set of login details for PostgreSQL.
//
// Username and Password are the login. Host, Port and Database are optional:
// the connector uses them only where the application's DSN leaves them
// unset (or always, with rotating.WithEndpointFromSecret). Version is an
// opaque, non-secret identifier of this credential in its store (an AWS
// VersionId, a Vault lease id), used in logs and stats. Expires, when not
// zero, is when the store will stop honouring the credential; the connector
// refreshes ahead of it.
//
// The zero value is not a usable credential: see [Credential.Validate].
type Credential struct {
	Username string
	Password string

	Host     string
	Port     int
	Database string

	Version string
	Expires time.Time

	// SessionsEnd, when not zero, is when the database ends the sessions
	// opened with this credential (a HashiCorp Vault lease's revocation runs
	// REVOKE and DROP ROLE; an operator may terminate them). It is distinct
	// from Expires, which only bounds new logins: an RDS IAM token's sessions
	// live on after it expires. The connector stops using connections opened
	// with the credential before then (see rotating.WithSessionMargin) and
	// fetches its successor ahead of it.
	SessionsEnd time.Time

	// NextRotation, when not zero, is when the store will replace this
	// credential on a schedule of its own (a HashiCorp Vault static role's
	// next rotation). The credential works until then, so the connector
	// does not refresh ahead of it, as it does for Expires: it asks the
	// store again just after it, once for the whole process, so that new
	// logins move to the new credential without first being rejected.
	NextRotation time.Time
}

// Validate reports whether c can be used to log in: it must have a non-empty
// password ([ErrEmptyPassword]), no NUL byte in Username, Password, Host or
// Database, and a port, if set, in 1..65535 (both [ErrMalformed], naming the
// field but not its value). An empty Username is allowed: the DSN's user is
// used then.
func (c Credential) Validate() error {
	if c.Password == "" {
		return ErrEmptyPassword
	}
	for _, f := range [...]struct{ name, value string }{
		{"username", c.Username},
		{"password", c.Password},
		{"host", c.Host},
		{"database", c.Database},
	} {
		if err := refuseNUL(f.value, f.name); err != nil {
			return err
		}
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("%w: port %d is out of range 1..65535", ErrMalformed, c.Port)
	}
	return nil
}

// refuseNUL returns an error wrapping ErrMalformed that names what if s
// holds a NUL byte. The PostgreSQL protocol ends its strings at a NUL, so
// such a value cannot reach the server as it is.
func refuseNUL(s, what string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%w: %s contains a NUL byte", ErrMalformed, what)
	}
	return nil
}

// SameLogin reports whether c and o log in the same way: the same username,
// password, host, port and database. Version, Expires and SessionsEnd are
// not compared, so a store that re-issues the same password under a new
// version id, or extends a lease, is not a rotation.
func (c Credential) SameLogin(o Credential) bool {
	return c.Username == o.Username && c.Password == o.Password &&
		c.Host == o.Host && c.Port == o.Port && c.Database == o.Database
}

const redacted = "[REDACTED]"

// String returns a description of c with the password redacted.
func (c Credential) String() string {
	b := make([]byte, 0, 96)
	b = append(b, "{Username:"...)
	b = strconv.AppendQuote(b, c.Username)
	b = append(b, " Password:"+redacted...)
	if c.Host != "" {
		b = append(b, " Host:"...)
		b = strconv.AppendQuote(b, c.Host)
	}
	if c.Port != 0 {
		b = append(b, " Port:"...)
		b = strconv.AppendInt(b, int64(c.Port), 10)
	}
	if c.Database != "" {
		b = append(b, " Database:"...)
		b = strconv.AppendQuote(b, c.Database)
	}
	if c.Version != "" {
		b = append(b, " Version:"...)
		b = strconv.AppendQuote(b, c.Version)
	}
	if !c.Expires.IsZero() {
		b = append(b, " Expires:"...)
		b = c.Expires.UTC().AppendFormat(b, time.RFC3339)
	}
	if !c.SessionsEnd.IsZero() {
		b = append(b, " SessionsEnd:"...)
		b = c.SessionsEnd.UTC().AppendFormat(b, time.RFC3339)
	}
	if !c.NextRotation.IsZero() {
		b = append(b, " NextRotation:"...)
		b = c.NextRotation.UTC().AppendFormat(b, time.RFC3339)
	}
	b = append(b, '}')
	return string(b)
}

// GoString implements fmt.GoStringer for %#v, with the password redacted.
func (c Credential) GoString() string { return "secrets.Credential" + c.String() }

// Format implements fmt.Formatter so that every verb and flag (%v, %+v, %#v,
// %s, %q, %x, ...) prints the redacted form.
func (c Credential) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'v' && f.Flag('#'):
		fmt.Fprint(f, c.GoString())
	case verb == 'q':
		fmt.Fprint(f, strconv.Quote(c.String()))
	default:
		fmt.Fprint(f, c.String())
	}
}

// LogValue implements slog.LogValuer: the credential logs as a group of its
// non-secret fields.
func (c Credential) LogValue() slog.Value {
	attrs := make([]slog.Attr, 0, 6)
	attrs = append(attrs, slog.String("username", c.Username))
	if c.Version != "" {
		attrs = append(attrs, slog.String("version", c.Version))
	}
	if c.Host != "" {
		attrs = append(attrs, slog.String("host", c.Host))
	}
	if !c.Expires.IsZero() {
		attrs = append(attrs, slog.Time("expires", c.Expires))
	}
	if !c.SessionsEnd.IsZero() {
		attrs = append(attrs, slog.Time("sessions_end", c.SessionsEnd))
	}
	if !c.NextRotation.IsZero() {
		attrs = append(attrs, slog.Time("next_rotation", c.NextRotation))
	}
	return slog.GroupValue(attrs...)
}

// MarshalJSON implements json.Marshaler with the password redacted, so that
// a Credential inside a value that is encoded as JSON (a slice or struct
// logged through slog's JSONHandler, which does not apply LogValue to the
// elements of a slice, or a debug endpoint) does not carry the secret. The
// result is an object with the field names of Credential and the password
// "[REDACTED]", so encoding/json cannot store a Credential for later use.
func (c Credential) MarshalJSON() ([]byte, error) {
	type withoutMethods Credential
	r := withoutMethods(c)
	r.Password = redacted
	return json.Marshal(r)
}

// Static returns a Source that always returns c. It is meant for tests and
// for credentials that never rotate; c is validated on every Fetch.
func Static(c Credential) Source { return staticSource{c} }

type staticSource struct{ c Credential }

func (s staticSource) Fetch(context.Context) (Credential, error) {
	if err := s.c.Validate(); err != nil {
		return Credential{}, fmt.Errorf("static credential: %w", err)
	}
	return s.c, nil
}

func (staticSource) Describe() string { return "static" }

// Func adapts a function to a Source, like http.HandlerFunc.
type Func func(ctx context.Context) (Credential, error)

// Fetch calls f(ctx).
func (f Func) Fetch(ctx context.Context) (Credential, error) { return f(ctx) }

// Describe returns "func".
func (Func) Describe() string { return "func" }
