package rotating

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lib/pq"
	"golang.org/x/sync/singleflight"

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
// refreshes (see WithRefreshInterval and Credential.Expires). Connections
// already open are never touched: PostgreSQL keeps sessions open across a
// password change.
//
// A Connector is safe for concurrent use.
type Connector struct {
	base    baseConfig
	src     secrets.Source
	srcName string
	cfg     config
	log     *slog.Logger

	// cur is the credential Connect uses. It only moves forward (to a higher
	// generation); Connect reads it without a lock.
	cur atomic.Pointer[entry]
	// lastGen numbers credentials as they are built, so that "newer than the
	// one that failed" is a comparison.
	lastGen atomic.Uint64
	// flights makes concurrent refreshes one call to the source.
	flights singleflight.Group

	// ctx is owned by the Connector and cancelled by Close. Shared fetches
	// and the background refresh run on it, never on a caller's context.
	ctx    context.Context
	cancel context.CancelFunc
	// wake tells the background refresh that the credential changed.
	wake chan struct{}
	// closed mirrors the closed field for the Connect hot path.
	closed atomic.Bool

	// mu guards the fields below. It is never held across I/O or a wait.
	mu sync.Mutex
	// isClosed is set by Close; background work is started (wg.Add) only
	// while it is false, so that Close's wg.Wait covers all of it.
	isClosed        bool
	wg              sync.WaitGroup
	backgroundStart bool
	// backoff is the current pause between calls to the source while it
	// fails or keeps returning a rejected credential; nextFetch is when the
	// next call may be made.
	backoff   time.Duration
	nextFetch time.Time
	// changed is closed and replaced whenever a new credential is cached,
	// waking refreshes that wait for their turn.
	changed chan struct{}
	// noPendingGen is the generation for which the source last said it has
	// no pending credential.
	noPendingGen uint64
	// lastPending is the last pending credential offered by the source, so
	// that offering the same one again does not count as something new.
	lastPending *entry
	// staleCurrent is the store's current credential, rejected by the
	// database, that a working candidate replaced (a pending credential in
	// AWS's window between setSecret and finishSecret, or the previous
	// credential when the store got ahead of the database or broken): while
	// the store still returns it, that is not a change.
	staleCurrent *secrets.Credential

	stats counters
}

// entry is one credential with everything prebuilt to dial with it.
type entry struct {
	cred      secrets.Credential
	user      string // the user it logs in as: the credential's, or the DSN's
	gen       uint64
	fetchedAt time.Time
	pending   bool // offered by PendingSource.FetchPending
	// candidate entries (a pending credential, or a return to the previous
	// one) are cached only once a login with them has succeeded.
	candidate bool
	conn      driver.Connector
	// rejected is set when a login with this credential fails, so that a
	// refresh that finds the same credential in the store knows the store is
	// behind the database.
	rejected atomic.Bool
	// replaced is the credential this one replaced while that one still
	// worked (a background refresh found a change). If the database rejects
	// this one and the store has nothing better, the connector returns to
	// it: a store that is ahead of the database, or that now holds a broken
	// value, never takes down logins that were working.
	replaced atomic.Pointer[entry]
	// checked is when the store last returned this credential, and expires
	// its latest expiry (both Unix nanoseconds; expires 0 if none). A refresh
	// that finds the same credential updates them in place.
	checked atomic.Int64
	expires atomic.Int64
	// returnOf is the entry a return-to-previous candidate stands for; a
	// rejection of the candidate marks that entry rejected too.
	returnOf *entry
}

// NewConnector returns a Connector for dsn (key=value or postgres:// URL, as
// lib/pq accepts) that logs in with the credentials src provides.
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
	base, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	c := &Connector{
		base:    base,
		src:     src,
		srcName: secrets.Describe(src),
		cfg:     cfg,
		wake:    make(chan struct{}, 1),
		changed: make(chan struct{}),
		backoff: cfg.minBackoff,
	}
	c.log = cfg.logger.With(slog.String("source", c.srcName))
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// Driver returns lib/pq's driver. database/sql only uses it for DB.Driver.
func (c *Connector) Driver() driver.Driver { return &pq.Driver{} }

// Connect opens a connection with the cached credential and returns the
// driver's connection unwrapped.
//
// If the database rejects the login (see WithAuthErrorCodes), Connect finds
// a working credential before giving up: a newer one already cached by
// another Connect; else one shared refresh from the source (one call for
// all concurrent callers); else the source's pending credential (see
// secrets.PendingSource); else it re-checks the store with backoff until
// WithRotationWait's bound or ctx ends, and returns an *AuthError.
// Any other dial error is returned as the driver gave it.
func (c *Connector) Connect(ctx context.Context) (driver.Conn, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	e := c.cur.Load()
	if e == nil {
		var err error
		if e, err = c.firstCredential(ctx); err != nil {
			return nil, err
		}
	}
	conn, err := c.dial(ctx, e)
	if err == nil || !hasSQLState(err, c.cfg.authCodes) {
		return conn, err
	}
	return c.connectAfterRejection(ctx, e, err)
}

func (c *Connector) dial(ctx context.Context, e *entry) (driver.Conn, error) {
	c.stats.dials.Add(1)
	conn, err := e.conn.Connect(ctx)
	if err != nil {
		c.stats.dialErrors.Add(1)
		return nil, err
	}
	return conn, nil
}

// firstCredential fetches the first credential through the same shared
// refresh as everything else, so that many concurrent first Connects make
// one call to the source.
func (c *Connector) firstCredential(ctx context.Context) (*entry, error) {
	if _, err := c.refresh(ctx, 0); err != nil {
		return nil, err
	}
	if e := c.cur.Load(); e != nil {
		return e, nil
	}
	// Only reachable if the connector was closed during the fetch.
	return nil, ErrClosed
}

// connectAfterRejection is the rotation path: the login with failed was
// rejected with dialErr. It loops until a login succeeds, a non-auth error
// occurs, or the rotation wait or ctx ends.
func (c *Connector) connectAfterRejection(ctx context.Context, failed *entry, dialErr error) (driver.Conn, error) {
	start := time.Now()
	c.markRejected(failed, dialErr)
	waitCtx, cancel := context.WithTimeout(ctx, c.cfg.rotationWait)
	defer cancel()

	var fetchErr error
	for {
		next, err := c.credentialAfter(waitCtx, failed)
		if err != nil {
			if errors.Is(err, ErrClosed) {
				return nil, err
			}
			if waitCtx.Err() != nil {
				return nil, c.giveUp(ctx, failed, dialErr, fetchErr, start)
			}
			fetchErr = err
			continue // the next refresh waits for the backoff
		}
		conn, err := c.dial(ctx, next)
		if err == nil {
			c.stats.recoveries.Add(1)
			c.resetBackoff()
			next.rejected.Store(false)
			if next.candidate {
				c.promote(next)
			}
			return conn, nil
		}
		if !hasSQLState(err, c.cfg.authCodes) {
			return nil, err
		}
		failed, dialErr = next, err
		c.markRejected(failed, dialErr)
		if waitCtx.Err() != nil {
			return nil, c.giveUp(ctx, failed, dialErr, fetchErr, start)
		}
	}
}

func (c *Connector) markRejected(e *entry, err error) {
	c.stats.authFailures.Add(1)
	if e.returnOf != nil {
		e.returnOf.rejected.Store(true)
	}
	if !e.rejected.Swap(true) {
		c.log.Warn("rotating: login rejected; looking for a newer credential",
			slog.Uint64("generation", e.gen), slog.String("version", e.cred.Version),
			slog.String("username", e.user), slog.Bool("pending", e.pending),
			slog.String("sqlstate", sqlState(err)))
	}
}

func (c *Connector) giveUp(ctx context.Context, failed *entry, dialErr, fetchErr error, start time.Time) error {
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

// credentialAfter returns a credential to try after failed was rejected:
// the cached one if it is newer than failed; a pending one an earlier
// refresh offered and nobody has seen rejected; otherwise, after one shared
// refresh, the newly cached one or a pending one; otherwise the credential
// the rejected one replaced while that still worked; otherwise the cached
// one again (the refresh found nothing new, and the next refresh will wait
// for the backoff, so trying the cached one again costs one login per
// backoff step and recovers when the database, not the store, was behind).
func (c *Connector) credentialAfter(ctx context.Context, failed *entry) (*entry, error) {
	if cur := c.cur.Load(); cur.gen > failed.gen {
		return cur, nil
	}
	if p := c.untriedPending(failed.gen); p != nil {
		return p, nil
	}
	pending, err := c.refresh(ctx, failed.gen)
	if err != nil {
		return nil, err
	}
	if cur := c.cur.Load(); cur.gen > failed.gen {
		return cur, nil
	}
	if pending != nil && pending.gen > failed.gen {
		return pending, nil
	}
	cur := c.cur.Load()
	if old := cur.replaced.Load(); old != nil && cur.rejected.Load() && !old.rejected.Load() {
		return c.returnTo(old), nil
	}
	return cur, nil
}

// refresh joins or starts the one shared refresh and waits for it or for
// ctx. It returns a pending credential when the refresh found one.
//
// The refresh calls the source only if the cached credential's generation
// is still at most upTo when it starts: a caller whose login failed with
// generation g passes g, so that a refresh started just after another one
// cached a newer credential costs no store call. The background refresh
// passes refreshAlways.
func (c *Connector) refresh(ctx context.Context, upTo uint64) (*entry, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err // a caller that has already given up starts no store call
	}
	ch := c.flights.DoChan("refresh", func() (any, error) { return c.sharedRefresh(upTo) })
	select {
	case r := <-ch:
		pending, _ := r.Val.(*entry)
		return pending, r.Err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// refreshAlways makes refresh call the source whatever is cached.
const refreshAlways = ^uint64(0)

// sharedRefresh is the body of the one refresh all callers share. It runs on
// the connector's context, so no caller's cancellation affects it.
func (c *Connector) sharedRefresh(upTo uint64) (any, error) {
	if !c.enter() {
		return nil, ErrClosed
	}
	defer c.wg.Done()

	if moot, err := c.waitForTurn(upTo); moot || err != nil {
		return nil, err
	}
	if p := c.untriedPending(upTo); p != nil {
		return p, nil // offered by the refresh just before this one
	}
	cur := c.cur.Load()
	cred, err := c.fetch(false, func(ctx context.Context) (secrets.Credential, error) { return c.src.Fetch(ctx) })
	if err != nil {
		// A failed fetch never evicts the cached credential: it may well
		// still work.
		c.paceAfter(false)
		return nil, err
	}
	if cur == nil || !c.sameAsCached(cur, cred) {
		err := c.install(cred, cur)
		c.paceAfter(err == nil)
		return nil, err
	}
	// No change: a check all the same, for the background refresh's timing.
	cur.checked.Store(time.Now().UnixNano())
	if cred.SameLogin(cur.cred) {
		cur.expires.Store(unixNano(cred.Expires))
	}
	if !cur.rejected.Load() {
		c.paceAfter(true)
		return nil, nil
	}

	// The store returned the very credential the database just rejected:
	// the store is behind the database (a manual ALTER ROLE before the vault
	// was updated, or AWS's window between setSecret and finishSecret).
	c.paceAfter(false)
	ps, ok := c.src.(secrets.PendingSource)
	if !ok {
		return nil, nil
	}
	// A store that had no pending credential when this one was first
	// rejected will not grow one for it: AWS creates AWSPENDING before it
	// changes the database. Asking again on every backoff step would double
	// the store calls while a vault lags.
	c.mu.Lock()
	askedBefore := c.noPendingGen == cur.gen
	c.mu.Unlock()
	if askedBefore {
		return nil, nil
	}
	pcred, err := c.fetch(true, func(ctx context.Context) (secrets.Credential, error) { return ps.FetchPending(ctx, cur.cred) })
	if err != nil {
		if errors.Is(err, secrets.ErrNoPending) {
			c.mu.Lock()
			c.noPendingGen = cur.gen
			c.mu.Unlock()
			return nil, nil
		}
		return nil, err
	}
	if pcred.SameLogin(cur.cred) {
		return nil, nil
	}
	return c.pendingEntry(pcred)
}

// fetch calls the source with the connector's context and fetch timeout,
// validates the result and counts it.
func (c *Connector) fetch(pending bool, call func(context.Context) (secrets.Credential, error)) (secrets.Credential, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.fetchTimeout)
	defer cancel()
	if pending {
		c.stats.pendingFetches.Add(1)
	} else {
		c.stats.fetches.Add(1)
	}
	c.log.Debug("rotating: fetching credential", slog.Bool("pending", pending))
	cred, err := call(ctx)
	if err == nil {
		err = cred.Validate()
	}
	if err != nil && c.ctx.Err() != nil {
		return secrets.Credential{}, ErrClosed // the call was cancelled by Close
	}
	if err != nil {
		if pending && errors.Is(err, secrets.ErrNoPending) {
			return secrets.Credential{}, err
		}
		c.stats.fetchErrors.Add(1)
		ferr := &FetchError{Source: c.srcName, Pending: pending, Err: err}
		c.log.Warn("rotating: credential fetch failed", slog.Any("error", ferr))
		return secrets.Credential{}, ferr
	}
	return cred, nil
}

// sameAsCached reports whether a freshly fetched current credential is no
// change: the same login as the cached one, or the stale current one that a
// working pending credential has already replaced. The second rule holds
// only while the pending credential works: if the database rejects it (the
// rotation was rolled back, say), the store's current credential is taken.
func (c *Connector) sameAsCached(cur *entry, cred secrets.Credential) bool {
	if cred.SameLogin(cur.cred) {
		return true
	}
	if cur.rejected.Load() {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.staleCurrent != nil && cred.SameLogin(*c.staleCurrent)
}

func (c *Connector) newEntry(cred secrets.Credential, pending bool) (*entry, error) {
	cfg := c.base.withCredential(cred, c.cfg.endpointFromSecret)
	user := cfg.User
	conn, err := c.cfg.newConnector(cfg)
	if err != nil {
		return nil, &FetchError{Source: c.srcName, Pending: pending, Err: err}
	}
	e := &entry{
		cred:      cred,
		user:      user,
		gen:       c.lastGen.Add(1),
		fetchedAt: time.Now(),
		pending:   pending,
		candidate: pending,
		conn:      conn,
	}
	e.checked.Store(e.fetchedAt.UnixNano())
	e.expires.Store(unixNano(cred.Expires))
	return e, nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// returnTo returns a candidate entry for going back to old, the credential
// the rejected cached one replaced while old still worked.
func (c *Connector) returnTo(old *entry) *entry {
	e := &entry{
		cred:      old.cred,
		user:      old.user,
		gen:       c.lastGen.Add(1),
		fetchedAt: old.fetchedAt,
		pending:   old.pending,
		candidate: true,
		conn:      old.conn,
		returnOf:  old,
	}
	e.checked.Store(old.checked.Load())
	e.expires.Store(old.expires.Load())
	return e
}

// install makes cred the cached credential, replacing prev.
func (c *Connector) install(cred secrets.Credential, prev *entry) error {
	e, err := c.newEntry(cred, false)
	if err != nil {
		return err
	}
	if prev != nil && !prev.rejected.Load() {
		e.replaced.Store(prev)
		prev.replaced.Store(nil) // keep one step of history, not a chain
	}
	c.mu.Lock()
	c.staleCurrent = nil
	c.mu.Unlock()
	c.store(e)
	if prev != nil {
		c.stats.changes.Add(1)
	}
	c.log.Info("rotating: credential changed", slog.Uint64("generation", e.gen),
		slog.Any("credential", e.cred))
	return nil
}

// pendingEntry returns an entry for a pending credential, reusing the one
// built for the same login last time so that it does not count as new.
func (c *Connector) pendingEntry(cred secrets.Credential) (*entry, error) {
	c.mu.Lock()
	last := c.lastPending
	c.mu.Unlock()
	if last != nil && last.cred.SameLogin(cred) {
		return last, nil
	}
	e, err := c.newEntry(cred, true)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.lastPending = e
	c.mu.Unlock()
	c.log.Info("rotating: trying pending credential", slog.Uint64("generation", e.gen),
		slog.Any("credential", e.cred))
	return e, nil
}

// untriedPending returns the last pending credential the source offered if
// it is newer than generation after and no login with it has been rejected:
// a caller rejected between the refresh that found it and its promotion
// tries it instead of starting another refresh.
func (c *Connector) untriedPending(after uint64) *entry {
	c.mu.Lock()
	p := c.lastPending
	c.mu.Unlock()
	if p == nil || p.gen <= after || p.rejected.Load() {
		return nil
	}
	return p
}

// promote makes a candidate (a pending credential, or a return to the
// previous one) that just logged in the cached one, unless something newer
// is cached already. Candidates that have not worked are never cached.
func (c *Connector) promote(p *entry) {
	for {
		cur := c.cur.Load()
		if cur.gen >= p.gen || (cur.cred.SameLogin(p.cred) && !cur.rejected.Load()) {
			return
		}
		if c.cur.CompareAndSwap(cur, p) {
			stale := cur.cred
			c.mu.Lock()
			c.staleCurrent = &stale
			c.mu.Unlock()
			c.stats.changes.Add(1)
			if p.pending {
				c.stats.promotions.Add(1)
				c.log.Info("rotating: pending credential works; using it", slog.Uint64("generation", p.gen),
					slog.Any("credential", p.cred))
			} else {
				c.log.Warn("rotating: the store's credential is rejected but the previous one works; using the previous one",
					slog.Uint64("generation", p.gen), slog.Any("credential", p.cred), slog.Any("rejected", stale))
			}
			c.startBackground(p)
			c.credentialChanged()
			c.poke()
			return
		}
	}
}

// store publishes e as the current credential. Generations only grow, so a
// late result never replaces a newer credential.
func (c *Connector) store(e *entry) {
	for {
		cur := c.cur.Load()
		if cur != nil && cur.gen >= e.gen {
			return
		}
		if c.cur.CompareAndSwap(cur, e) {
			break
		}
	}
	c.startBackground(e)
	c.credentialChanged()
	c.poke()
}

// waitForTurn waits until the source may be called again (at most one call
// per backoff step). It reports moot when a credential newer than upTo is
// cached before or while it waits: the call would find nothing new.
func (c *Connector) waitForTurn(upTo uint64) (moot bool, err error) {
	for {
		if cur := c.cur.Load(); cur != nil && cur.gen > upTo {
			return true, nil
		}
		c.mu.Lock()
		wait := time.Until(c.nextFetch)
		changed := c.changed
		c.mu.Unlock()
		if wait <= 0 {
			return false, nil
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-changed:
			t.Stop()
		case <-c.ctx.Done():
			t.Stop()
			return false, ErrClosed
		}
	}
}

// credentialChanged wakes refreshes waiting for their turn.
func (c *Connector) credentialChanged() {
	c.mu.Lock()
	defer c.mu.Unlock()
	close(c.changed)
	c.changed = make(chan struct{})
}

// resetBackoff ends an incident: the next time the store is behind, the
// pause between calls starts from the minimum again.
func (c *Connector) resetBackoff() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.backoff = c.cfg.minBackoff
}

// paceAfter sets when the source may next be called: after the minimum
// backoff if the last call went well, or after a doubled backoff if it
// failed or returned a rejected credential again.
func (c *Connector) paceAfter(ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ok {
		c.backoff = c.cfg.minBackoff
		c.nextFetch = time.Now().Add(c.backoff)
		return
	}
	c.nextFetch = time.Now().Add(c.backoff)
	c.backoff = min(2*c.backoff, c.cfg.maxBackoff)
}

// enter registers background work with Close. It reports false once the
// connector is closed.
func (c *Connector) enter() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isClosed {
		return false
	}
	c.wg.Add(1)
	return true
}

// Close stops background refreshes, waits for shared fetches in progress to
// end (they are cancelled) and makes later Connect calls fail with
// ErrClosed. Open connections are not affected. Close is idempotent and
// always returns nil.
func (c *Connector) Close() error {
	c.mu.Lock()
	if c.isClosed {
		c.mu.Unlock()
		return nil
	}
	c.isClosed = true
	c.closed.Store(true)
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	c.log.Debug("rotating: connector closed")
	return nil
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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
