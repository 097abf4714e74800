package rotating

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgrotate/rotating/secrets"
)

// Compile-time checks: sql.OpenDB takes a driver.Connector, and sql.DB.Close
// calls Close on a connector that is an io.Closer.
var (
	_ driver.Connector = (*Connector)(nil)
	_ io.Closer        = (*Connector)(nil)
)

// Connector is a driver.Connector that opens PostgreSQL connections with the
// credential its source currently holds, and follows the credential when it
// is rotated. Use it with sql.OpenDB; sql.DB.Close closes it.
//
// Connect uses an in-memory copy of the credential and calls the source only
// on first use, after the database rejected a login, and for background
// refreshes (see WithRefreshInterval, Credential.Expires and
// Credential.SessionsEnd). Connections already open are not touched:
// PostgreSQL keeps sessions open across a password change. Connections of a
// credential whose sessions end (Credential.SessionsEnd) are retired from
// database/sql's pool before then.
//
// A Connector is safe for concurrent use.
type Connector struct {
	dsn      DriverConfig
	endpoint endpoint // which parts of the endpoint the application set
	src      secrets.Source
	srcName  string
	cfg      config
	log      *slog.Logger

	// use is what Connect dials without a lock: the model's pick when a
	// credential is known to work now (publishLocked), nil otherwise, which
	// sends Connect to the slow path.
	use atomic.Pointer[entry]
	// gens numbers entries as they are built.
	gens atomic.Uint64

	// ctx is owned by the Connector and cancelled by Close. Store calls and
	// the background refresh run on it, never on a caller's context.
	ctx    context.Context
	cancel context.CancelFunc

	// mu guards every field below. It is never held across I/O or a wait.
	mu sync.Mutex

	// The model (model.go): the store's current credential, the store's
	// pending one, the previous one that worked, and the one a caller is
	// probing on behalf of everyone.
	current, pending, previous *entry
	probing                    *entry

	// The incident: from a rejection that leaves nothing usable to the
	// next successful login. One step clock paces it: the store may be
	// called from nextFetch on, the rejected credential re-checked from
	// nextProbe on; steps counts the store calls that brought nothing;
	// backoff is the next step's length; pendingAsked says FetchPending was
	// asked in this incident. endIncidentLocked resets all of it.
	incident             bool
	steps                int
	backoff              time.Duration
	nextFetch, nextProbe time.Time
	pendingAsked         bool

	// Store calls: one step at a time (fetching). fetchErr is the last
	// step's error (nil after a success), and askedAt the clock when the
	// last step ended. calls are the source calls in flight, which Close
	// waits for up to their fetch timeout.
	fetching bool
	fetchErr error
	askedAt  uint64
	calls    map[*sourceCall]struct{}

	// clock orders events: it ticks at every change of a credential's
	// status and at the end of every store step; rejectedAt is its value at
	// the last rejection.
	clock      uint64
	rejectedAt uint64

	// target is the last credential new logins went to (targetLocked),
	// and targetGen counts how often it changed (Stats'
	// CredentialGeneration).
	target    *entry
	targetGen uint64

	// changed is closed and replaced whenever anything above changes,
	// waking callers and the background refresh that wait.
	changed chan struct{}
	// sessions are the session-end timers of the credentials seen, stopped
	// by Close.
	sessions []*sessionEnd
	// Lifecycle: closed is set by Close; work is started (wg.Add) only
	// while it is false, so that Close's wg.Wait covers all of it.
	closed     bool
	background bool
	wg         sync.WaitGroup

	stats counters
}

// NewConnector returns a Connector for dsn (key=value or postgres:// URL, as
// libpq, lib/pq and pgx accept) that logs in with the credentials src
// provides, through lib/pq unless WithDriver names another driver.
//
// The credential's username and password replace any in the DSN; the DSN
// is authoritative for host, port, database and TLS settings, and the
// credential fills only what the DSN leaves unset (see
// WithEndpointFromSecret). PGPASSWORD, PGUSER's effect on a credential with a
// username, PGPASSFILE and ~/.pgpass are never used for the login.
//
// NewConnector does not call the source: the first Connect does. Errors are a
// *DSNError for a malformed DSN and ErrInvalidOption for bad options.
func NewConnector(dsn string, src secrets.Source, opts ...Option) (*Connector, error) {
	if src == nil {
		return nil, errors.New("rotating: nil secrets.Source")
	}
	cfg := defaultConfig()
	for _, opt := range opts {
		opt(&cfg)
	}
	if err := cfg.err(); err != nil {
		return nil, err
	}
	drv := cfg.driver
	if drv == nil {
		drv = libpq{newConnector: cfg.newConnector}
	}
	parsed, err := drv.ParseDSN(dsn)
	if err != nil {
		var dsnErr *DSNError
		if !errors.As(err, &dsnErr) {
			dsnErr = newDSNError(err)
		}
		return nil, dsnErr
	}
	c := &Connector{
		dsn:       parsed,
		endpoint:  endpointOf(dsn),
		src:       src,
		srcName:   secrets.Describe(src),
		cfg:       cfg,
		backoff:   cfg.minBackoff,
		nextProbe: farFuture,
		calls:     make(map[*sourceCall]struct{}),
		changed:   make(chan struct{}),
	}
	c.log = cfg.logger.With(slog.String("source", c.srcName))
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// Driver returns the driver's database/sql driver (lib/pq's, or pgx's with
// WithDriver). database/sql only uses it for DB.Driver.
func (c *Connector) Driver() driver.Driver { return c.dsn.Driver() }

// Connect opens a connection with the credential known to work and returns
// the driver's connection (unwrapped, unless the credential's sessions end:
// see DriverConn).
//
// If the database rejects the login (see WithAuthErrorCodes), Connect finds
// a working credential before giving up, sharing every step with the other
// callers: a newer credential already known; one store call for all of
// them; the store's pending credential (secrets.PendingSource); the
// previous credential, if the store got ahead of the database; then one
// store call and one re-check of the rejected credential per backoff step,
// until WithRotationWait's bound or ctx ends, when it returns an
// *AuthError. A credential nobody has logged in with yet is tried by one
// caller while the others wait for its result, and a credential known to be
// rejected is never dialed by new callers. Any other dial error is returned
// as the driver gave it.
func (c *Connector) Connect(ctx context.Context) (driver.Conn, error) {
	if e := c.use.Load(); e != nil && (e.sessions == nil || e.usableAt(time.Now())) {
		conn, err := c.dial(ctx, e)
		switch {
		case errors.Is(err, errRetiredDuringLogin):
			return c.connectSlow(ctx, nil, nil)
		case err == nil || !hasSQLState(err, c.cfg.authCodes):
			return conn, err
		}
		c.report(e, false, loginDenied, err)
		return c.connectSlow(ctx, e, err)
	}
	return c.connectSlow(ctx, nil, nil)
}

// errRetiredDuringLogin is dial's answer for a login that succeeded after
// its credential's connections were retired (a slow login near a lease's
// end): the connection would be retired at its first use, and database/sql
// would fail the statement once its retries all met the same, so dial
// closes it and the caller looks for another credential.
var errRetiredDuringLogin = errors.New("rotating: the credential's connections were retired during the login")

func (c *Connector) dial(ctx context.Context, e *entry) (driver.Conn, error) {
	c.stats.dials.Add(1)
	conn, err := e.conn.Connect(ctx)
	if err != nil {
		c.stats.dialErrors.Add(1)
		return nil, err
	}
	if e.sessions != nil {
		if e.sessions.retired() {
			_ = conn.Close()
			e.sessions.countRetired()
			return nil, errRetiredDuringLogin
		}
		return e.sessions.wrap(conn), nil
	}
	return conn, nil
}

// connectSlow is the path of every Connect that has no credential known to
// work at hand: the first use, and the rotation. failed and dialErr are
// the caller's own rejected login, if any.
func (c *Connector) connectSlow(ctx context.Context, failed *entry, dialErr error) (driver.Conn, error) {
	conn, _, err := c.slowPath(ctx, failed, dialErr, false)
	return conn, err
}

// slowPath does what decideLocked says until a login succeeds, a login
// fails for another reason, or the rotation wait or ctx ends. Every login it
// makes is bounded by both. With handOut (Credential), a credential known
// to work is returned instead of dialed, and a probe's connection is closed
// once it has answered; otherwise the login's connection is returned.
func (c *Connector) slowPath(ctx context.Context, failed *entry, dialErr error, handOut bool) (driver.Conn, *entry, error) {
	start := time.Now()
	waitCtx, cancel := context.WithTimeoutCause(ctx, c.cfg.rotationWait, errRotationWait)
	defer cancel()
	c.mu.Lock()
	sawStep := c.askedAt
	c.mu.Unlock()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		c.mu.Lock()
		a := c.decideLocked(time.Now(), sawStep)
		c.mu.Unlock()
		switch a.kind {
		case actFail:
			return nil, nil, a.err
		case actDial, actProbe:
			if handOut && a.kind == actDial {
				return nil, a.e, nil
			}
			c.mu.Lock()
			started := c.clock
			c.mu.Unlock()
			conn, err := c.dial(waitCtx, a.e)
			report := func(o outcome, err error) { c.reportSince(a.e, a.kind == actProbe, o, err, started) }
			switch {
			case err == nil:
				report(loggedIn, nil)
				if failed != nil {
					c.stats.recoveries.Add(1)
				}
				if handOut {
					_ = conn.Close()
					return nil, a.e, nil
				}
				return conn, a.e, nil
			case hasSQLState(err, c.cfg.authCodes):
				report(loginDenied, err)
				failed, dialErr = a.e, err
				if ended(waitCtx) {
					return nil, nil, c.giveUp(ctx, failed, dialErr, start, nil)
				}
			case errors.Is(err, errRetiredDuringLogin):
				// The login worked, but a.e is no longer usable: decide
				// again (another credential, or wait for the refresh).
				report(inconclusive, nil)
				if ended(waitCtx) {
					return nil, nil, c.giveUp(ctx, failed, dialErr, start, nil)
				}
			default:
				report(inconclusive, err)
				if ended(waitCtx) {
					return nil, nil, c.giveUp(ctx, failed, dialErr, start, err)
				}
				return nil, nil, err
			}
		case actWait:
			var due <-chan time.Time
			if !a.until.IsZero() {
				d := time.Until(a.until)
				if timer == nil {
					timer = time.NewTimer(d)
				} else {
					timer.Reset(d)
				}
				due = timer.C
			}
			select {
			case <-a.changed:
			case <-due:
			case <-waitCtx.Done():
				return nil, nil, c.giveUp(ctx, failed, dialErr, start, nil)
			}
			if timer != nil {
				timer.Stop()
			}
		}
	}
}

// ended reports whether ctx is done or its deadline has passed: a dial can
// fail with its deadline a moment before ctx's own timer marks it done.
func ended(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// errRotationWait is the cause of a wait ended by WithRotationWait's bound.
var errRotationWait = errors.New("rotating: rotation wait ended")

// report records the result of a login of the fast path in the model.
func (c *Connector) report(e *entry, probe bool, o outcome, err error) {
	c.reportSince(e, probe, o, err, ^uint64(0))
}

// reportSince records a login's result in the model; started is the clock
// when the login began.
func (c *Connector) reportSince(e *entry, probe bool, o outcome, err error, started uint64) {
	if o == loginDenied {
		c.stats.authFailures.Add(1)
	}
	c.mu.Lock()
	c.loginResultLocked(e, probe, o, err, started)
	c.mu.Unlock()
}

// giveUp builds the error of a Connect whose wait ended. A caller that saw
// no rejection itself (it waited for another caller's probe) reports the
// last rejection of the credential it waited for.
func (c *Connector) giveUp(ctx context.Context, failed *entry, dialErr error, start time.Time, loginErr error) error {
	c.mu.Lock()
	if failed == nil && c.current != nil && c.current.status == rejected {
		failed, dialErr = c.current, c.current.rejectErr
	}
	fetchErr := c.fetchErr
	closed := c.closed
	c.mu.Unlock()
	switch {
	case failed == nil && loginErr != nil:
		return loginErr // this caller's own login, ended by its context
	case closed:
		return ErrClosed
	case failed == nil && ctx.Err() != nil:
		return ctx.Err()
	case failed == nil && fetchErr != nil:
		return fetchErr
	case failed == nil:
		return &FetchError{Source: c.srcName, Err: fmt.Errorf("no usable credential within the rotation wait (%v)", c.cfg.rotationWait)}
	}
	c.stats.recoveryFailures.Add(1)
	err := &AuthError{
		Source:   c.srcName,
		Username: failed.user,
		Version:  failed.cred.Version,
		Waited:   time.Since(start),
		Err:      dialErr,
		FetchErr: fetchErr,
		CtxErr:   ctx.Err(),
	}
	c.log.Error("rotating: no working credential", slog.Any("error", err))
	return err
}

// newEntry builds the entry for a credential: its own copy of the DSN's
// configuration with the credential applied, and the driver's connector.
func (c *Connector) newEntry(cred secrets.Credential, pending bool) (e *entry, err error) {
	defer func() {
		if r := recover(); r != nil {
			e, err = nil, &FetchError{Source: c.srcName, Pending: pending, Err: panicError("the connector function", r)}
			c.log.Error("rotating: building the driver's connector panicked", slog.Any("error", err), slog.String("stack", string(debug.Stack())))
		}
	}()
	conn, user, err := c.dsn.Connector(c.endpoint.applies(cred, c.cfg.endpointFromSecret), c.cfg.rotationWait)
	if err != nil {
		return nil, &FetchError{Source: c.srcName, Pending: pending, Err: err}
	}
	now := time.Now()
	e = &entry{
		cred:        cred,
		user:        user,
		gen:         c.gens.Add(1),
		fetchedAt:   now,
		fromPending: pending,
		conn:        conn,
	}
	if !cred.SessionsEnd.IsZero() {
		e.sessions = newSessionEnd(c.retireAt(now, cred.SessionsEnd))
		e.sessions.retiredConns = &c.stats.retiredConns
	}
	return e, nil
}

// retireAt is when connections of a credential whose sessions end at end
// are retired: WithSessionMargin before the end, but not before half of the
// credential's remaining life.
func (c *Connector) retireAt(fetched, end time.Time) time.Time {
	return latest(end.Add(-c.cfg.sessionMargin), fetched.Add(end.Sub(fetched)/2))
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Close stops background refreshes, cancels store calls in flight and
// makes later Connect calls fail with ErrClosed. It waits for a store call
// in flight until that call's fetch timeout at most: a source that ignores
// its context is abandoned then, and its goroutine is the one that may
// outlive Close (until the source returns). Open connections are not
// closed (sql.DB.Close does that). Close is idempotent and returns nil.
func (c *Connector) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	calls := make([]*sourceCall, 0, len(c.calls))
	for sc := range c.calls {
		calls = append(calls, sc)
	}
	sessions := c.sessions
	c.changedLocked()
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	for _, sc := range calls {
		if !sc.wait() {
			c.log.Warn("rotating: the source ignores its context; abandoning its call at the fetch timeout",
				slog.Bool("pending", sc.pending))
		}
	}
	for _, s := range sessions {
		s.stop()
	}
	c.log.Debug("rotating: connector closed")
	return nil
}

func sqlState(err error) string {
	var s sqlStater
	if errors.As(err, &s) {
		return s.SQLState()
	}
	return ""
}

// jitter returns d scaled by a random factor in [1-f, 1+f].
func jitter(d time.Duration, f float64) time.Duration {
	return time.Duration(float64(d) * (1 - f + 2*f*rand.Float64()))
}
