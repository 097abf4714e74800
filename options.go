package rotating

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/lib/pq"
)

// Default values of the options.
const (
	// DefaultRotationWait bounds how long a Connect whose login was
	// rejected waits for a working credential to appear in the store.
	DefaultRotationWait = 10 * time.Second
	// DefaultFetchTimeout bounds one call to the source.
	DefaultFetchTimeout = 5 * time.Second
	// DefaultMinBackoff and DefaultMaxBackoff bound the pause between two
	// calls to the source while it keeps returning a rejected credential
	// or failing. The pause doubles from the minimum to the maximum.
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
	// DefaultRefreshBeforeExpiry is how long before a credential's Expires
	// the connector fetches its successor in the background.
	DefaultRefreshBeforeExpiry = time.Minute
	// DefaultSessionMargin is how long before a credential's SessionsEnd
	// its connections are retired from database/sql's pool.
	DefaultSessionMargin = time.Minute
)

// DefaultAuthErrorCodes are the SQLSTATEs that mean "this credential was
// rejected": 28P01 (invalid_password) and 28000
// (invalid_authorization_specification, used by pg_hba rejects, IAM, LDAP and
// RDS Proxy).
var DefaultAuthErrorCodes = []string{"28P01", "28000"}

// Option configures a Connector. Options are applied in order by
// NewConnector, which returns every invalid value as one error.
type Option func(*config)

// NewConnectorFunc builds the driver.Connector used for one credential. It is
// called once per distinct credential, with a configuration of its own that
// it may keep and modify. See WithNewConnector.
type NewConnectorFunc func(cfg pq.Config) (driver.Connector, error)

type config struct {
	logger              *slog.Logger
	rotationWait        time.Duration
	fetchTimeout        time.Duration
	minBackoff          time.Duration
	maxBackoff          time.Duration
	authCodes           []string
	refreshInterval     time.Duration
	refreshBeforeExpiry time.Duration
	sessionMargin       time.Duration
	endpointFromSecret  bool
	newConnector        NewConnectorFunc // nil: lib/pq's own
	driver              Driver           // nil: lib/pq

	errs []error
}

func defaultConfig() config {
	return config{
		logger:              slog.New(slog.DiscardHandler),
		rotationWait:        DefaultRotationWait,
		fetchTimeout:        DefaultFetchTimeout,
		minBackoff:          DefaultMinBackoff,
		maxBackoff:          DefaultMaxBackoff,
		authCodes:           DefaultAuthErrorCodes,
		refreshBeforeExpiry: DefaultRefreshBeforeExpiry,
		sessionMargin:       DefaultSessionMargin,
	}
}

func (c *config) invalid(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...))
}

func (c *config) err() error {
	if c.driver != nil && c.newConnector != nil {
		c.invalid("WithNewConnector is lib/pq's seam and cannot be used with WithDriver")
	}
	return errors.Join(c.errs...)
}

// positiveDuration is an Option that applies set if d is positive and
// records an error naming the option otherwise.
func positiveDuration(option string, d time.Duration, set func(*config)) Option {
	return func(c *config) {
		if d <= 0 {
			c.invalid("%s: %v is not positive", option, d)
			return
		}
		set(c)
	}
}

// WithLogger sends the connector's events to l: credential fetches and
// changes at Debug and Info, rejected logins and source failures at Warn, a
// Connect that gave up at Error. Secret values are never logged; credentials
// appear as username and version only. The default discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l == nil {
			c.invalid("WithLogger: nil logger")
			return
		}
		c.logger = l
	}
}

// WithRotationWait sets how long a Connect whose login was rejected keeps
// looking for a working credential (re-checking the store with backoff and
// asking for a pending credential) before it returns an *AuthError. The
// caller's context deadline always applies as well. Default
// DefaultRotationWait.
func WithRotationWait(d time.Duration) Option {
	return positiveDuration("WithRotationWait", d, func(c *config) { c.rotationWait = d })
}

// WithFetchTimeout bounds each call to the source. Shared fetches run on
// the connector's own context with this timeout, so that one caller's
// cancellation never fails the other callers waiting for the same fetch.
// Default DefaultFetchTimeout.
func WithFetchTimeout(d time.Duration) Option {
	return positiveDuration("WithFetchTimeout", d, func(c *config) { c.fetchTimeout = d })
}

// WithBackoff sets the pause between two calls to the source while it keeps
// failing or keeps returning a credential the database rejects: min at first,
// doubling up to max. Across the whole connector the source is asked at most
// once per pause, however many Connect calls are waiting. Defaults
// DefaultMinBackoff and DefaultMaxBackoff.
func WithBackoff(min, max time.Duration) Option {
	return func(c *config) {
		if min <= 0 || max < min {
			c.invalid("WithBackoff: need 0 < min <= max, got %v and %v", min, max)
			return
		}
		c.minBackoff, c.maxBackoff = min, max
	}
}

// WithAuthErrorCodes replaces the SQLSTATEs that mark a login as rejected
// (default DefaultAuthErrorCodes). Errors are matched with their
// SQLState() method anywhere in the error chain, so lib/pq's and pgx's errors
// both work, as do the joined errors of a multi-host DSN.
func WithAuthErrorCodes(codes ...string) Option {
	return func(c *config) {
		if len(codes) == 0 {
			c.invalid("WithAuthErrorCodes: no codes")
			return
		}
		for _, code := range codes {
			if len(code) != 5 {
				c.invalid("WithAuthErrorCodes: %q is not a 5-character SQLSTATE", code)
				return
			}
		}
		c.authCodes = append([]string(nil), codes...)
	}
}

// WithRefreshInterval makes the connector re-fetch the credential in the
// background about every d (with ±10% jitter, so that a fleet of processes
// does not call the store in step), for stores whose credentials carry no
// expiry. Connect keeps using the cached credential meanwhile. Off by
// default: without it the store is called only on first use, after a
// rejected login, and ahead of an expiry.
func WithRefreshInterval(d time.Duration) Option {
	return positiveDuration("WithRefreshInterval", d, func(c *config) { c.refreshInterval = d })
}

// WithRefreshBeforeExpiry sets how long before a credential's Expires the
// background refresh runs (jittered by up to half of d, and never earlier
// than half-way through the credential's lifetime). Default
// DefaultRefreshBeforeExpiry.
func WithRefreshBeforeExpiry(d time.Duration) Option {
	return positiveDuration("WithRefreshBeforeExpiry", d, func(c *config) { c.refreshBeforeExpiry = d })
}

// WithSessionMargin sets how long before a credential's SessionsEnd (a
// Vault lease's end, say) the connections opened with it are retired:
// from then on database/sql closes each one when it comes back to the pool
// (or when it is next taken from it), never in the middle of a statement or
// transaction, idle ones are closed, and new logins use the credential's
// successor, which the background refresh fetches ahead of that time. The
// margin is shortened to half of the credential's remaining life for short
// lived credentials. Default DefaultSessionMargin.
func WithSessionMargin(d time.Duration) Option {
	return positiveDuration("WithSessionMargin", d, func(c *config) { c.sessionMargin = d })
}

// WithEndpointFromSecret makes the credential's Host, Port and Database win
// over the DSN's where the credential has them. By default the DSN is
// authoritative and the credential only fills what the DSN leaves unset.
func WithEndpointFromSecret() Option {
	return func(c *config) { c.endpointFromSecret = true }
}

// WithDriver makes the Connector log in through d instead of lib/pq, for
// example WithDriver(pgxv5.Driver()) for pgx v5's database/sql adapter.
// The credential handling, the rotation, the errors and the sessions'
// retirement are the same for every driver.
func WithDriver(d Driver) Option {
	return func(c *config) {
		if d == nil {
			c.invalid("WithDriver: nil driver")
			return
		}
		c.driver = d
	}
}

// WithNewConnector replaces how connections are opened: fn is called once
// per distinct credential with the merged lib/pq configuration (DSN plus
// credential) and returns the driver.Connector that opens connections with
// it. It is lib/pq's seam for unit tests (a go-sqlmock connection, say);
// other drivers come with WithDriver (the two cannot be combined). The
// default uses pq.NewConnectorConfig and makes the caller's context and the
// rotation wait bound the whole login, not only the TCP dial.
func WithNewConnector(fn NewConnectorFunc) Option {
	return func(c *config) {
		if fn == nil {
			c.invalid("WithNewConnector: nil function")
			return
		}
		c.newConnector = fn
	}
}

// ConnectorFunc adapts a function to a driver.Connector, for use in a
// NewConnectorFunc: WithNewConnector(func(cfg pq.Config) (driver.Connector,
// error) { return rotating.ConnectorFunc(...), nil }). Its Driver method
// returns lib/pq's driver.
type ConnectorFunc func(ctx context.Context) (driver.Conn, error)

// Connect calls f(ctx).
func (f ConnectorFunc) Connect(ctx context.Context) (driver.Conn, error) { return f(ctx) }

// Driver returns lib/pq's driver.
func (ConnectorFunc) Driver() driver.Driver { return &pq.Driver{} }
