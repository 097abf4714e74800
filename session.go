package rotating

import (
	"context"
	"database/sql/driver"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// This file retires the connections of a credential whose sessions end at a
// known time (secrets.Credential.SessionsEnd: a HashiCorp Vault lease ends
// with REVOKE and DROP ROLE, and its open sessions then fail with permission
// errors). database/sql has no way to be told "stop using this connection",
// but it discards a connection that answers in three ways, and a wrapper
// answers in all three from retireAt on:
//
//   - Validator.IsValid false: database/sql closes the connection when it is
//     returned to the pool (putConn).
//   - SessionResetter.ResetSession driver.ErrBadConn: database/sql closes it
//     when it takes it from the pool (conn) and uses another one.
//   - driver.ErrBadConn from a call that sent nothing (Prepare, Begin, Exec,
//     Query, Ping) outside a transaction: database/sql retries the statement
//     on another connection (DB.retry).
//
// Calls inside a transaction are always forwarded: a transaction is never
// failed halfway. Idle connections, which database/sql would only discard on
// their next use, are closed by a timer at retireAt.

// Compile-time checks: every optional interface database/sql looks for on a
// driver.Conn, except the deprecated Execer and Queryer (whose inner
// implementations are still used, as database/sql would use them).
var (
	_ driver.Conn               = (*sessionConn)(nil)
	_ driver.Pinger             = (*sessionConn)(nil)
	_ driver.ExecerContext      = (*sessionConn)(nil)
	_ driver.QueryerContext     = (*sessionConn)(nil)
	_ driver.ConnPrepareContext = (*sessionConn)(nil)
	_ driver.ConnBeginTx        = (*sessionConn)(nil)
	_ driver.SessionResetter    = (*sessionConn)(nil)
	_ driver.Validator          = (*sessionConn)(nil)
	_ driver.NamedValueChecker  = (*sessionConn)(nil)
	_ driver.Tx                 = (*sessionTx)(nil)
)

// DriverConn returns the driver's own connection for a value that
// (*sql.Conn).Raw hands its function: the value itself, or, for a connection
// the Connector wraps (credentials with secrets.Credential.SessionsEnd set),
// the driver's connection inside it. Use it wherever code type-asserts the
// raw connection, so that the assertion keeps working whichever credential
// the connection was opened with:
//
//	err := conn.Raw(func(raw any) error {
//		// lib/pq's connection type (*pq.conn) is not exported: assert the
//		// interface you need. With pgx, assert *stdlib.Conn and call its
//		// Conn method for the *pgx.Conn.
//		v, ok := rotating.DriverConn(raw).(driver.Validator)
//		if !ok {
//			return errors.New("not a driver.Validator")
//		}
//		fmt.Println("session usable:", v.IsValid())
//		return nil
//	})
//
// The driver's connection must not be used after the function returns, and
// calls made on it directly bypass the retirement of connections whose
// sessions end: they still work up to the end of the session.
func DriverConn(rawConn any) any {
	if c, ok := rawConn.(*sessionConn); ok {
		return c.inner
	}
	return rawConn
}

// sessionEnd is shared by the connections opened with one credential whose
// sessions end at a known time; from retireAt on, database/sql is made to
// stop using them.
type sessionEnd struct {
	// retireAt (Unix nanoseconds) is when connections retire, measured with
	// time.Now, or once timer has fired (fired), whichever is first: a wall
	// clock set back does not keep a connection past the timer. moveTo
	// changes it (a renewed lease) until the timer has fired; it is called
	// with the Connector's mutex held, so never concurrently.
	retireAt atomic.Int64
	timer    *time.Timer
	fired    atomic.Bool
	// retiredConns, if set, counts the connections closed once retired.
	retiredConns *atomic.Uint64

	// mu guards conns, the wrapped connections not closed yet. It is held
	// only to add, remove or copy entries, never with a sessionConn.mu.
	mu    sync.Mutex
	conns map[*sessionConn]struct{}
}

// newSessionEnd returns a sessionEnd whose connections retire at retireAt.
// Its timer runs no goroutine until it fires.
func newSessionEnd(retireAt time.Time) *sessionEnd {
	s := &sessionEnd{conns: make(map[*sessionConn]struct{})}
	s.retireAt.Store(retireAt.UnixNano())
	s.timer = time.AfterFunc(time.Until(retireAt), s.closeIdle)
	return s
}

// retireTime returns when s's connections retire.
func (s *sessionEnd) retireTime() time.Time { return time.Unix(0, s.retireAt.Load()) }

// moveTo moves the retirement to t (later for a renewed lease, earlier if
// the store says the sessions end sooner) and reports whether it could:
// not once the timer has fired, since the idle connections are closed
// then.
func (s *sessionEnd) moveTo(t time.Time) bool {
	if t.UnixNano() == s.retireAt.Load() {
		return true
	}
	if !s.timer.Stop() {
		return false // fired, or stopped by Close
	}
	s.retireAt.Store(t.UnixNano())
	s.timer.Reset(time.Until(t))
	return true
}

// wrap returns conn wrapped so that it retires at s's time. conn is the
// driver's connection (lib/pq's today, pgx's *stdlib.Conn later).
func (s *sessionEnd) wrap(conn driver.Conn) driver.Conn {
	_, resets := conn.(driver.SessionResetter)
	_, validates := conn.(driver.Validator)
	c := &sessionConn{
		end:                 s,
		inner:               conn,
		discardsCancelledTx: !(resets && validates),
	}
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	return c
}

// stop stops s's timer (called when the Connector closes); it never closes
// connections. Wrapped connections still retire on their next call.
func (s *sessionEnd) stop() {
	s.timer.Stop()
}

// open reports how many wrapped connections are not closed yet (for tests
// and stats).
func (s *sessionEnd) open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// retired reports whether s's connections must no longer be used.
func (s *sessionEnd) retired() bool {
	return s.fired.Load() || time.Now().UnixNano() >= s.retireAt.Load()
}

// closeIdle runs once, at retireAt: it closes the connections that sit idle
// in database/sql's pool. The others retire on their next call.
func (s *sessionEnd) closeIdle() {
	s.fired.Store(true)
	s.mu.Lock()
	conns := make([]*sessionConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		if c.closeIfIdle() {
			s.forget(c)
			s.countRetired()
			_ = c.inner.Close() // database/sql would ignore it too
		}
	}
}

func (s *sessionEnd) countRetired() {
	if s.retiredConns != nil {
		s.retiredConns.Add(1)
	}
}

func (s *sessionEnd) forget(c *sessionConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// connState is where a wrapped connection is in database/sql's hands.
type connState uint8

const (
	// connInUse: out of database/sql's pool, or never put in it yet (a
	// fresh connection). Only its user may close it.
	connInUse connState = iota
	// connIdle: the last call was IsValid returning true, which database/sql
	// makes in putConn before the connection joins the pool; its next use
	// starts with ResetSession. The timer may close it.
	connIdle
	// connClosed: Close was called or the timer closed it; every call
	// returns driver.ErrBadConn without reaching the inner connection.
	connClosed
)

// sessionConn is a driver connection that retires at its sessionEnd's time.
//
// database/sql makes one call at a time on a connection (driverConn's
// mutex), as the driver.Conn contract allows it to. The only other caller is
// the timer, which closes the inner connection of an idle one. So that it
// never waits for, or closes under, a call that blocks on the network, the
// inner calls are made without any lock: mu guards only the state, and
// every call first marks the connection in use (or finds it closed) under
// it.
type sessionConn struct {
	end   *sessionEnd
	inner driver.Conn
	// discardsCancelledTx is set when inner lacks SessionResetter or
	// Validator: database/sql then discards the connection after rolling
	// back a transaction whose context ended (Tx.awaitDone with
	// keepConnOnRollback false), and the wrapper, which has both, must
	// make it do the same.
	discardsCancelledTx bool

	// mu guards the fields below; it is never held across a call to inner.
	mu    sync.Mutex
	state connState
	// inTx is set from a successful Begin or BeginTx until the Commit or
	// Rollback of the sessionTx it returned: statements in it are forwarded
	// even after retireAt.
	inTx bool
	// prepared is set once a statement was prepared on inner. database/sql
	// may close a driver.Stmt while its connection is idle (Stmt.Close via
	// noteUnusedDriverStatement, or closing the connection), without a call
	// to the connection, so the timer leaves such a connection to
	// database/sql rather than close inner beside that statement.
	prepared bool
	// discard is set when a cancelled transaction was rolled back and
	// discardsCancelledTx is set: IsValid then reports false.
	discard bool
}

// Unwrap returns the driver's connection that c wraps.
func (c *sessionConn) Unwrap() driver.Conn { return c.inner }

// use marks c in use for a call to inner. It returns driver.ErrBadConn if c
// is closed, or if c is retired, the call is one that retirement refuses
// (refusable) and no transaction is open: database/sql then retries the
// statement on another connection, since nothing was sent.
func (c *sessionConn) use(refusable bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == connClosed {
		return driver.ErrBadConn
	}
	c.state = connInUse
	if refusable && !c.inTx && c.end.retired() {
		return driver.ErrBadConn
	}
	return nil
}

// closeIfIdle marks c closed if it is idle and the timer may close it; the
// caller then closes inner.
func (c *sessionConn) closeIfIdle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != connIdle || c.prepared {
		return false
	}
	c.state = connClosed
	return true
}

// Close closes the inner connection once; later calls return nil.
func (c *sessionConn) Close() error {
	c.mu.Lock()
	if c.state == connClosed {
		c.mu.Unlock()
		return nil
	}
	c.state = connClosed
	c.mu.Unlock()
	c.end.forget(c)
	if c.end.retired() {
		c.end.countRetired()
	}
	return c.inner.Close()
}

// IsValid reports false from retireAt on, so that database/sql closes c
// when it is returned to the pool; otherwise it asks inner. True makes c
// idle.
func (c *sessionConn) IsValid() bool {
	c.mu.Lock()
	if c.state == connClosed || c.discard || c.end.retired() {
		c.mu.Unlock()
		return false
	}
	c.state = connInUse
	c.mu.Unlock()

	valid := true
	if v, ok := c.inner.(driver.Validator); ok {
		valid = v.IsValid()
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	// Retirement is checked again: a timer that fired during the inner call
	// found c in use and left it, and nothing else would close it in the pool.
	if !valid || c.state != connInUse || c.end.retired() {
		return false
	}
	c.state = connIdle
	return true
}

// ResetSession returns driver.ErrBadConn from retireAt on, so that
// database/sql discards c when it takes it from the pool and uses another.
func (c *sessionConn) ResetSession(ctx context.Context) error {
	if err := c.use(true); err != nil {
		return err
	}
	if r, ok := c.inner.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

// Prepare is driver.Conn's; database/sql calls PrepareContext.
func (c *sessionConn) Prepare(query string) (driver.Stmt, error) {
	if err := c.use(true); err != nil {
		return nil, err
	}
	st, err := c.inner.Prepare(query)
	c.notePrepared(err)
	return st, err
}

// PrepareContext falls back to inner's Prepare as database/sql would
// (ctxDriverPrepare), checking ctx before as well, to save a round trip.
func (c *sessionConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if err := c.use(true); err != nil {
		return nil, err
	}
	if p, ok := c.inner.(driver.ConnPrepareContext); ok {
		st, err := p.PrepareContext(ctx, query)
		c.notePrepared(err)
		return st, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st, err := c.inner.Prepare(query)
	c.notePrepared(err)
	if err == nil && ctx.Err() != nil {
		st.Close()
		return nil, ctx.Err()
	}
	return st, err
}

func (c *sessionConn) notePrepared(err error) {
	if err != nil {
		return
	}
	c.mu.Lock()
	c.prepared = true
	c.mu.Unlock()
}

// Begin is driver.Conn's; database/sql calls BeginTx.
func (c *sessionConn) Begin() (driver.Tx, error) {
	if err := c.use(true); err != nil {
		return nil, err
	}
	//lint:ignore SA1019 driver.Conn requires Begin, and inner's is the one to call.
	tx, err := c.inner.Begin()
	if err != nil {
		return nil, err
	}
	return c.startTx(context.Background(), tx), nil
}

// BeginTx falls back to inner's Begin as database/sql would
// (ctxDriverBegin), with the same errors for options Begin cannot honour.
func (c *sessionConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if err := c.use(true); err != nil {
		return nil, err
	}
	if b, ok := c.inner.(driver.ConnBeginTx); ok {
		tx, err := b.BeginTx(ctx, opts)
		if err != nil {
			return nil, err
		}
		return c.startTx(ctx, tx), nil
	}
	if opts.Isolation != driver.IsolationLevel(0) {
		return nil, errors.New("sql: driver does not support non-default isolation level")
	}
	if opts.ReadOnly {
		return nil, errors.New("sql: driver does not support read-only transactions")
	}
	//lint:ignore SA1019 the fallback database/sql itself uses without ConnBeginTx.
	tx, err := c.inner.Begin()
	if err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		tx.Rollback()
		return nil, ctx.Err()
	}
	return c.startTx(ctx, tx), nil
}

func (c *sessionConn) startTx(ctx context.Context, tx driver.Tx) driver.Tx {
	c.mu.Lock()
	c.inTx = true
	c.mu.Unlock()
	return &sessionTx{conn: c, inner: tx, ctx: ctx}
}

// ExecContext falls back as database/sql would (execDC): to inner's
// deprecated Execer, else driver.ErrSkip, after which database/sql prepares
// the statement through PrepareContext.
func (c *sessionConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if err := c.use(true); err != nil {
		return nil, err
	}
	if e, ok := c.inner.(driver.ExecerContext); ok {
		return e.ExecContext(ctx, query, args)
	}
	//lint:ignore SA1019 database/sql uses a driver's Execer when it has no ExecerContext.
	if e, ok := c.inner.(driver.Execer); ok {
		values, err := namedValuesToValues(args)
		if err != nil {
			return nil, err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return e.Exec(query, values)
	}
	return nil, driver.ErrSkip
}

// QueryContext falls back as database/sql would (queryDC): to inner's
// deprecated Queryer, else driver.ErrSkip.
func (c *sessionConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if err := c.use(true); err != nil {
		return nil, err
	}
	if q, ok := c.inner.(driver.QueryerContext); ok {
		return q.QueryContext(ctx, query, args)
	}
	//lint:ignore SA1019 database/sql uses a driver's Queryer when it has no QueryerContext.
	if q, ok := c.inner.(driver.Queryer); ok {
		values, err := namedValuesToValues(args)
		if err != nil {
			return nil, err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return q.Query(query, values)
	}
	return nil, driver.ErrSkip
}

// namedValuesToValues is database/sql's namedValueToValue, for the
// deprecated Execer and Queryer.
func namedValuesToValues(named []driver.NamedValue) ([]driver.Value, error) {
	values := make([]driver.Value, len(named))
	for i, nv := range named {
		if nv.Name != "" {
			return nil, errors.New("sql: driver does not support the use of Named Parameters")
		}
		values[i] = nv.Value
	}
	return values, nil
}

// Ping returns driver.ErrBadConn from retireAt on outside a transaction.
func (c *sessionConn) Ping(ctx context.Context) error {
	if err := c.use(true); err != nil {
		return err
	}
	if p, ok := c.inner.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

// CheckNamedValue is forwarded whatever the time: it sends nothing, and
// database/sql calls it just before ExecContext or QueryContext, which
// decide. driver.ErrSkip, when inner has no checker, makes database/sql
// convert the value as it would without one.
func (c *sessionConn) CheckNamedValue(nv *driver.NamedValue) error {
	if err := c.use(false); err != nil {
		return err
	}
	if n, ok := c.inner.(driver.NamedValueChecker); ok {
		return n.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

// sessionTx tells its connection when the transaction ends, from which on
// its statements are subject to retirement again.
type sessionTx struct {
	conn  *sessionConn
	inner driver.Tx
	// ctx is BeginTx's, which database/sql's Tx.awaitDone watches: ended at
	// Rollback, the rollback is (most likely) that one.
	ctx context.Context
}

func (t *sessionTx) Commit() error {
	err := t.inner.Commit()
	t.conn.endTx(false)
	return err
}

func (t *sessionTx) Rollback() error {
	err := t.inner.Rollback()
	t.conn.endTx(t.ctx.Err() != nil)
	return err
}

func (c *sessionConn) endTx(cancelled bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inTx = false
	if cancelled && c.discardsCancelledTx {
		c.discard = true
	}
}
