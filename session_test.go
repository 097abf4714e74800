package rotating

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// errInner is what an innerConn returns when told to fail: the wrapper must
// hand back this very value.
var errInner = errors.New("the driver's own error")

// innerConn stands in for the driver's connection: it implements every
// optional interface database/sql uses, counts calls, and notes any call
// made after Close.
type innerConn struct {
	name    string
	log     *execLog      // if set, statements are recorded in it
	err     error         // returned by every call that can fail
	invalid bool          // IsValid reports !invalid
	block   chan struct{} // if set, ExecContext waits for it to be closed

	mu       sync.Mutex
	calls    map[string]int
	inTx     bool
	closed   bool
	closedAt time.Time
	misuse   []string // calls made after Close
}

func newInnerConn(name string) *innerConn {
	return &innerConn{name: name, calls: make(map[string]int)}
}

func (c *innerConn) note(method string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[method]++
	if c.closed {
		c.misuse = append(c.misuse, method)
	}
}

func (c *innerConn) count(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[method]
}

func (c *innerConn) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, k := range c.calls {
		n += k
	}
	return n
}

func (c *innerConn) misused() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.misuse
}

func (c *innerConn) closedTime() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closedAt, c.closed
}

func (c *innerConn) record(query string) {
	if c.log == nil {
		return
	}
	c.mu.Lock()
	inTx := c.inTx
	c.mu.Unlock()
	c.log.add(execEntry{conn: c, query: query, at: time.Now(), inTx: inTx})
}

func (c *innerConn) Prepare(query string) (driver.Stmt, error) {
	c.note("Prepare")
	if c.err != nil {
		return nil, c.err
	}
	return &innerStmt{conn: c, query: query}, nil
}

func (c *innerConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	c.note("PrepareContext")
	if c.err != nil {
		return nil, c.err
	}
	return &innerStmt{conn: c, query: query}, nil
}

func (c *innerConn) Close() error {
	c.note("Close")
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed, c.closedAt = true, time.Now()
	}
	return c.err
}

func (c *innerConn) Begin() (driver.Tx, error) { return c.begin("Begin") }

func (c *innerConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return c.begin("BeginTx")
}

func (c *innerConn) begin(method string) (driver.Tx, error) {
	c.note(method)
	if c.err != nil {
		return nil, c.err
	}
	c.mu.Lock()
	c.inTx = true
	c.mu.Unlock()
	return &innerTx{c}, nil
}

func (c *innerConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	c.note("ExecContext")
	if c.block != nil {
		<-c.block
	}
	if c.err != nil {
		return nil, c.err
	}
	c.record(query)
	return driver.RowsAffected(1), nil
}

func (c *innerConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	c.note("QueryContext")
	if c.err != nil {
		return nil, c.err
	}
	c.record(query)
	return &innerRows{}, nil
}

func (c *innerConn) Ping(ctx context.Context) error {
	c.note("Ping")
	return c.err
}

func (c *innerConn) ResetSession(ctx context.Context) error {
	c.note("ResetSession")
	return c.err
}

func (c *innerConn) IsValid() bool {
	c.note("IsValid")
	return !c.invalid
}

func (c *innerConn) CheckNamedValue(nv *driver.NamedValue) error {
	c.note("CheckNamedValue")
	return c.err
}

type innerTx struct{ conn *innerConn }

func (t *innerTx) Commit() error   { return t.end("Commit") }
func (t *innerTx) Rollback() error { return t.end("Rollback") }

func (t *innerTx) end(method string) error {
	t.conn.note(method)
	t.conn.mu.Lock()
	t.conn.inTx = false
	t.conn.mu.Unlock()
	return t.conn.err
}

type innerStmt struct {
	conn  *innerConn
	query string
}

func (s *innerStmt) Close() error  { s.conn.note("Stmt.Close"); return nil }
func (s *innerStmt) NumInput() int { return -1 }

func (s *innerStmt) Exec(args []driver.Value) (driver.Result, error) {
	return s.ExecContext(context.Background(), nil)
}

func (s *innerStmt) Query(args []driver.Value) (driver.Rows, error) {
	return s.QueryContext(context.Background(), nil)
}

func (s *innerStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	s.conn.note("Stmt.ExecContext")
	s.conn.record(s.query)
	return driver.RowsAffected(1), nil
}

func (s *innerStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	s.conn.note("Stmt.QueryContext")
	s.conn.record(s.query)
	return &innerRows{}, nil
}

type innerRows struct{}

func (*innerRows) Columns() []string              { return []string{"n"} }
func (*innerRows) Close() error                   { return nil }
func (*innerRows) Next(dest []driver.Value) error { return io.EOF }

// execLog records which connection ran which statement, when, and whether
// in a transaction (as the connection itself saw it).
type execLog struct {
	mu      sync.Mutex
	entries []execEntry
}

type execEntry struct {
	conn  *innerConn
	query string
	at    time.Time
	inTx  bool
}

func (l *execLog) add(e execEntry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, e)
}

func (l *execLog) all() []execEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]execEntry(nil), l.entries...)
}

// callCounts counts calls by method.
type callCounts struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *callCounts) add(method string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = make(map[string]int)
	}
	c.n[method]++
}

func (c *callCounts) get(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[method]
}

// bareConn implements driver.Conn and nothing else, as the oldest drivers
// do, to test the fallbacks.
type bareConn struct {
	calls callCounts
	args  []driver.Value // of the last Stmt.Exec
}

func (c *bareConn) Prepare(query string) (driver.Stmt, error) {
	c.calls.add("Prepare")
	return &bareStmt{c}, nil
}

func (c *bareConn) Close() error { c.calls.add("Close"); return nil }

func (c *bareConn) Begin() (driver.Tx, error) {
	c.calls.add("Begin")
	return &bareTx{c}, nil
}

type bareTx struct{ conn *bareConn }

func (t *bareTx) Commit() error   { t.conn.calls.add("Commit"); return nil }
func (t *bareTx) Rollback() error { t.conn.calls.add("Rollback"); return nil }

type bareStmt struct{ conn *bareConn }

func (s *bareStmt) Close() error  { s.conn.calls.add("Stmt.Close"); return nil }
func (s *bareStmt) NumInput() int { return -1 }

func (s *bareStmt) Exec(args []driver.Value) (driver.Result, error) {
	s.conn.calls.add("Stmt.Exec")
	s.conn.args = args
	return driver.RowsAffected(1), nil
}

func (s *bareStmt) Query(args []driver.Value) (driver.Rows, error) {
	s.conn.calls.add("Stmt.Query")
	return &innerRows{}, nil
}

// execerConn adds only the deprecated driver.Execer to bareConn.
type execerConn struct {
	*bareConn
	query string
	args  []driver.Value
}

func (c *execerConn) Exec(query string, args []driver.Value) (driver.Result, error) {
	c.calls.add("Exec")
	c.query, c.args = query, args
	return driver.RowsAffected(1), nil
}

// sessionConnector is a driver.Connector whose connections are
// innerConns wrapped by the current sessionEnd, as the Connector wraps
// those of a credential whose sessions end.
type sessionConnector struct {
	log *execLog

	mu    sync.Mutex
	end   *sessionEnd
	gen   int
	conns map[*innerConn]int // generation of each connection opened
}

func newSessionConnector(end *sessionEnd) *sessionConnector {
	return &sessionConnector{log: new(execLog), end: end, gen: 1, conns: make(map[*innerConn]int)}
}

func (c *sessionConnector) Connect(ctx context.Context) (driver.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	inner := newInnerConn(fmt.Sprintf("gen%d-conn%d", c.gen, len(c.conns)+1))
	inner.log = c.log
	c.conns[inner] = c.gen
	return c.end.wrap(inner), nil
}

func (c *sessionConnector) Driver() driver.Driver { return sessionConnectorDriver{} }

// rotate makes later connections use end, as the Connector does once it has
// the next credential.
func (c *sessionConnector) rotate(end *sessionEnd) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.end = end
	c.gen++
}

// opened returns the connections opened with generation gen.
func (c *sessionConnector) opened(gen int) []*innerConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	var conns []*innerConn
	for conn, g := range c.conns {
		if g == gen {
			conns = append(conns, conn)
		}
	}
	return conns
}

type sessionConnectorDriver struct{}

func (sessionConnectorDriver) Open(string) (driver.Conn, error) {
	return nil, errors.New("use the connector")
}

// connCall is one call on a driver connection, by the name of the inner
// method it reaches.
type connCall struct {
	method string
	call   func(driver.Conn) error
}

// refusableCalls are the calls a retired connection refuses outside a
// transaction.
var refusableCalls = []connCall{
	{"Prepare", func(c driver.Conn) error { _, err := c.Prepare("select 1"); return err }},
	{"PrepareContext", func(c driver.Conn) error {
		_, err := c.(driver.ConnPrepareContext).PrepareContext(context.Background(), "select 1")
		return err
	}},
	//lint:ignore SA1019 a driver.Conn's Begin is part of what the wrapper must handle.
	{"Begin", func(c driver.Conn) error { _, err := c.Begin(); return err }},
	{"BeginTx", func(c driver.Conn) error {
		_, err := c.(driver.ConnBeginTx).BeginTx(context.Background(), driver.TxOptions{})
		return err
	}},
	{"ExecContext", func(c driver.Conn) error {
		_, err := c.(driver.ExecerContext).ExecContext(context.Background(), "update t set n = 1", nil)
		return err
	}},
	{"QueryContext", func(c driver.Conn) error {
		_, err := c.(driver.QueryerContext).QueryContext(context.Background(), "select 1", nil)
		return err
	}},
	{"Ping", func(c driver.Conn) error { return c.(driver.Pinger).Ping(context.Background()) }},
	{"ResetSession", func(c driver.Conn) error {
		return c.(driver.SessionResetter).ResetSession(context.Background())
	}},
}

func callNamed(method string) connCall {
	for _, c := range refusableCalls {
		if c.method == method {
			return c
		}
	}
	panic("no call " + method)
}

// statementCalls are the refusable calls a transaction makes.
func statementCalls() []connCall {
	var calls []connCall
	for _, c := range refusableCalls {
		switch c.method {
		case "Begin", "BeginTx", "ResetSession":
		default:
			calls = append(calls, c)
		}
	}
	return calls
}

func checkNamedValue(c driver.Conn) error {
	return c.(driver.NamedValueChecker).CheckNamedValue(&driver.NamedValue{Ordinal: 1, Value: int64(1)})
}

func TestSessionConnForwardsEverythingBeforeRetireAt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		end := newSessionEnd(time.Now().Add(time.Hour))
		defer end.stop()
		inner := newInnerConn("c")
		inner.err, inner.invalid = errInner, true
		conn := end.wrap(inner)

		for _, c := range refusableCalls {
			if err := c.call(conn); err != errInner {
				t.Errorf("%s returned %v, want the driver's own error unchanged", c.method, err)
			}
			if n := inner.count(c.method); n != 1 {
				t.Errorf("%s reached the driver %d times, want 1", c.method, n)
			}
		}
		if err := checkNamedValue(conn); err != errInner {
			t.Errorf("CheckNamedValue returned %v, want the driver's own error", err)
		}
		if conn.(driver.Validator).IsValid() || inner.count("IsValid") != 1 {
			t.Errorf("IsValid did not forward the driver's false (calls %d)", inner.count("IsValid"))
		}
		if err := conn.Close(); err != errInner {
			t.Errorf("Close returned %v, want the driver's own error", err)
		}
		if err := conn.Close(); err != nil || inner.count("Close") != 1 {
			t.Errorf("second Close returned %v and the driver saw %d Closes, want nil and 1", err, inner.count("Close"))
		}
		if end.open() != 0 {
			t.Errorf("open() = %d after Close, want 0", end.open())
		}
	})
}

func TestSessionConnReturnsTheDriversOwnValues(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		end := newSessionEnd(time.Now().Add(time.Hour))
		defer end.stop()
		inner := newInnerConn("c")
		conn := end.wrap(inner)
		ctx := context.Background()

		st, err := conn.(driver.ConnPrepareContext).PrepareContext(ctx, "select 1")
		if _, ok := st.(*innerStmt); err != nil || !ok {
			t.Errorf("PrepareContext = %T, %v; want the driver's statement", st, err)
		}
		rows, err := conn.(driver.QueryerContext).QueryContext(ctx, "select 1", nil)
		if _, ok := rows.(*innerRows); err != nil || !ok {
			t.Errorf("QueryContext = %T, %v; want the driver's rows", rows, err)
		}
		res, err := conn.(driver.ExecerContext).ExecContext(ctx, "update t set n = 1", nil)
		if res != driver.RowsAffected(1) || err != nil {
			t.Errorf("ExecContext = %v, %v; want the driver's result", res, err)
		}
		if !conn.(driver.Validator).IsValid() {
			t.Error("IsValid = false, want the driver's true")
		}
		if c, ok := conn.(interface{ Unwrap() driver.Conn }); !ok || c.Unwrap() != inner {
			t.Error("Unwrap does not return the driver's connection")
		}
	})
}

func TestSessionConnRefusesCallsFromRetireAtOn(t *testing.T) {
	for _, c := range refusableCalls {
		t.Run(c.method, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				retireAt := time.Now().Add(time.Minute)
				end := newSessionEnd(retireAt)
				// Without the timer the clock alone decides, at retireAt
				// exactly; stop leaves the connections retiring.
				end.stop()
				inner := newInnerConn("c")
				inner.err = errInner // so that a forwarded Begin opens no transaction
				conn := end.wrap(inner)

				time.Sleep(time.Until(retireAt) - time.Nanosecond)
				if err := c.call(conn); err != errInner || inner.count(c.method) != 1 {
					t.Fatalf("1ns before retireAt: %v after %d calls, want the call forwarded", err, inner.count(c.method))
				}
				time.Sleep(time.Nanosecond)
				if err := c.call(conn); err != driver.ErrBadConn {
					t.Errorf("at retireAt: %v, want driver.ErrBadConn", err)
				}
				if n := inner.count(c.method); n != 1 {
					t.Errorf("at retireAt the call reached the driver (%d calls in all), want it refused", n)
				}
			})
		})
	}
}

func TestSessionConnIsInvalidFromRetireAtOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		retireAt := time.Now().Add(time.Minute)
		end := newSessionEnd(retireAt)
		defer end.stop()
		inner := newInnerConn("c")
		v := end.wrap(inner).(driver.Validator)

		time.Sleep(time.Until(retireAt) - time.Nanosecond)
		if !v.IsValid() {
			t.Fatal("IsValid = false 1ns before retireAt")
		}
		time.Sleep(time.Nanosecond)
		if v.IsValid() {
			t.Error("IsValid = true at retireAt")
		}
		if n := inner.count("IsValid"); n != 1 {
			t.Errorf("the driver's IsValid was called %d times, want once (before retireAt)", n)
		}
		c := end.wrap(newInnerConn("d"))
		if err := checkNamedValue(c); err != nil {
			t.Errorf("CheckNamedValue after retireAt = %v, want it forwarded", err)
		}
	})
}

func TestSessionTransactionSpansRetireAt(t *testing.T) {
	for _, begin := range []string{"Begin", "BeginTx"} {
		for _, finish := range []string{"Commit", "Rollback"} {
			t.Run(begin+"+"+finish, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					retireAt := time.Now().Add(time.Minute)
					end := newSessionEnd(retireAt)
					defer end.stop()
					inner := newInnerConn("c")
					conn := end.wrap(inner)

					var tx driver.Tx
					var err error
					if begin == "Begin" {
						//lint:ignore SA1019 Begin is tested as well as BeginTx.
						tx, err = conn.Begin()
					} else {
						tx, err = conn.(driver.ConnBeginTx).BeginTx(context.Background(), driver.TxOptions{})
					}
					if err != nil {
						t.Fatal(err)
					}
					time.Sleep(2 * time.Minute)
					for _, c := range statementCalls() {
						if err := c.call(conn); err != nil || inner.count(c.method) != 1 {
							t.Errorf("%s in a transaction after retireAt: %v, %d calls; want it forwarded", c.method, err, inner.count(c.method))
						}
					}
					if finish == "Commit" {
						err = tx.Commit()
					} else {
						err = tx.Rollback()
					}
					if err != nil || inner.count(finish) != 1 {
						t.Errorf("%s: %v, %d calls; want it forwarded", finish, err, inner.count(finish))
					}
					if err := callNamed("ExecContext").call(conn); err != driver.ErrBadConn {
						t.Errorf("ExecContext after the transaction ended: %v, want driver.ErrBadConn", err)
					}
					if conn.(driver.Validator).IsValid() {
						t.Error("IsValid = true after the transaction ended past retireAt")
					}
				})
			})
		}
	}
}

func TestSessionEndClosesIdleConnsAtRetireAt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		retireAt := time.Now().Add(10 * time.Second)
		end := newSessionEnd(retireAt)
		defer end.stop()

		wrapped := func(name string) (*innerConn, driver.Conn) {
			inner := newInnerConn(name)
			return inner, end.wrap(inner)
		}
		idleInner, idle := wrapped("idle") // returned to the pool
		idle.(driver.Validator).IsValid()
		freshInner, fresh := wrapped("fresh") // never returned to the pool
		takenInner, taken := wrapped("taken") // returned, then taken again
		taken.(driver.Validator).IsValid()
		taken.(driver.SessionResetter).ResetSession(ctx)
		txInner, inTx := wrapped("tx") // in a transaction
		if _, err := inTx.(driver.ConnBeginTx).BeginTx(ctx, driver.TxOptions{}); err != nil {
			t.Fatal(err)
		}
		preparedInner, prepared := wrapped("prepared") // idle, with a statement database/sql may close
		if _, err := prepared.(driver.ConnPrepareContext).PrepareContext(ctx, "select 1"); err != nil {
			t.Fatal(err)
		}
		prepared.(driver.Validator).IsValid()
		closedInner, closed := wrapped("closed")
		closed.Close()
		if n := end.open(); n != 5 {
			t.Fatalf("open() = %d, want 5", n)
		}

		time.Sleep(time.Until(retireAt) - time.Nanosecond)
		synctest.Wait()
		for _, c := range []*innerConn{idleInner, freshInner, takenInner, txInner, preparedInner} {
			if _, isClosed := c.closedTime(); isClosed {
				t.Errorf("%s closed before retireAt", c.name)
			}
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if at, isClosed := idleInner.closedTime(); !isClosed || !at.Equal(retireAt) {
			t.Errorf("idle connection: closed %v at %v, want closed at retireAt %v", isClosed, at, retireAt)
		}
		for _, c := range []*innerConn{freshInner, takenInner, txInner, preparedInner} {
			if _, isClosed := c.closedTime(); isClosed {
				t.Errorf("%s closed by the timer, want it left to its user", c.name)
			}
		}
		if n := end.open(); n != 4 {
			t.Errorf("open() = %d after the timer, want 4", n)
		}

		// The pool's next use of the closed idle connection discards it.
		if err := idle.(driver.SessionResetter).ResetSession(ctx); err != driver.ErrBadConn {
			t.Errorf("ResetSession of the closed idle connection = %v, want driver.ErrBadConn", err)
		}
		if err := idle.Close(); err != nil || idleInner.count("Close") != 1 {
			t.Errorf("Close after the timer: %v, %d driver Closes; want nil and 1", err, idleInner.count("Close"))
		}
		// The others retire on their next call.
		if err := callNamed("ExecContext").call(fresh); err != driver.ErrBadConn || freshInner.count("ExecContext") != 0 {
			t.Errorf("fresh connection's ExecContext = %v, want driver.ErrBadConn without a driver call", err)
		}
		if fresh.(driver.Validator).IsValid() || prepared.(driver.Validator).IsValid() {
			t.Error("a connection is still valid after retireAt")
		}
		for _, c := range []driver.Conn{fresh, taken, inTx, prepared} {
			c.Close()
		}
		if n := end.open(); n != 0 {
			t.Errorf("open() = %d after every connection was closed, want 0", n)
		}
		for _, c := range []*innerConn{idleInner, freshInner, takenInner, txInner, preparedInner, closedInner} {
			if n := c.count("Close"); n != 1 {
				t.Errorf("%s: driver Close called %d times, want 1", c.name, n)
			}
			if m := c.misused(); len(m) > 0 {
				t.Errorf("%s used after Close: %v", c.name, m)
			}
		}
	})
}

func TestSessionEndTimerDoesNotWaitForACallInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		retireAt := time.Now().Add(time.Second)
		end := newSessionEnd(retireAt)
		defer end.stop()
		inner := newInnerConn("c")
		inner.block = make(chan struct{})
		conn := end.wrap(inner)
		conn.(driver.Validator).IsValid() // idle, then taken for a long query:

		errc := make(chan error, 1)
		go func() {
			_, err := conn.(driver.ExecerContext).ExecContext(context.Background(), "select pg_sleep(60)", nil)
			errc <- err
		}()
		time.Sleep(time.Minute) // past retireAt, with the query still running
		synctest.Wait()         // returns only if the timer's goroutine finished
		if !end.fired.Load() {
			t.Fatal("the timer has not run")
		}
		if _, isClosed := inner.closedTime(); isClosed {
			t.Fatal("the timer closed a connection with a query running")
		}
		close(inner.block)
		if err := <-errc; err != nil {
			t.Errorf("the query running across retireAt failed: %v", err)
		}
		if conn.(driver.Validator).IsValid() {
			t.Error("IsValid = true after the query, past retireAt")
		}
	})
}

func TestSessionConnAfterCloseRefusesEverything(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		end := newSessionEnd(time.Now().Add(time.Hour))
		defer end.stop()
		inner := newInnerConn("c")
		conn := end.wrap(inner)
		conn.Close()
		before := inner.total()
		for _, c := range append(refusableCalls, connCall{"CheckNamedValue", checkNamedValue}) {
			if err := c.call(conn); err != driver.ErrBadConn {
				t.Errorf("%s after Close = %v, want driver.ErrBadConn", c.method, err)
			}
		}
		if conn.(driver.Validator).IsValid() {
			t.Error("IsValid = true after Close")
		}
		if n := inner.total() - before; n != 0 {
			t.Errorf("%d calls reached the driver after Close, want 0", n)
		}
	})
}

func TestSessionConnFallsBackAsDatabaseSQLWould(t *testing.T) {
	end := newSessionEnd(time.Now().Add(time.Hour))
	defer end.stop()
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()

	t.Run("no optional interface", func(t *testing.T) {
		inner := &bareConn{}
		conn := end.wrap(inner)
		if _, err := conn.(driver.ExecerContext).ExecContext(ctx, "q", nil); err != driver.ErrSkip {
			t.Errorf("ExecContext = %v, want driver.ErrSkip", err)
		}
		if _, err := conn.(driver.QueryerContext).QueryContext(ctx, "q", nil); err != driver.ErrSkip {
			t.Errorf("QueryContext = %v, want driver.ErrSkip", err)
		}
		if err := checkNamedValue(conn); err != driver.ErrSkip {
			t.Errorf("CheckNamedValue = %v, want driver.ErrSkip", err)
		}
		if err := conn.(driver.Pinger).Ping(ctx); err != nil {
			t.Errorf("Ping = %v, want nil", err)
		}
		if err := conn.(driver.SessionResetter).ResetSession(ctx); err != nil {
			t.Errorf("ResetSession = %v, want nil", err)
		}
		if !conn.(driver.Validator).IsValid() {
			t.Error("IsValid = false, want true")
		}
	})

	t.Run("PrepareContext", func(t *testing.T) {
		inner := &bareConn{}
		p := end.wrap(inner).(driver.ConnPrepareContext)
		if st, err := p.PrepareContext(ctx, "q"); err != nil || st == nil || inner.calls.get("Prepare") != 1 {
			t.Errorf("PrepareContext = %v, %v; want the driver's Prepare", st, err)
		}
		if _, err := p.PrepareContext(cancelled, "q"); err != context.Canceled || inner.calls.get("Prepare") != 1 {
			t.Errorf("PrepareContext(cancelled) = %v with %d Prepares, want context.Canceled and no Prepare", err, inner.calls.get("Prepare"))
		}
	})

	t.Run("BeginTx", func(t *testing.T) {
		inner := &bareConn{}
		b := end.wrap(inner).(driver.ConnBeginTx)
		tx, err := b.BeginTx(ctx, driver.TxOptions{})
		if err != nil || inner.calls.get("Begin") != 1 {
			t.Fatalf("BeginTx = %v, want the driver's Begin", err)
		}
		if err := tx.Commit(); err != nil || inner.calls.get("Commit") != 1 {
			t.Errorf("Commit = %v, want the driver's", err)
		}
		for _, tc := range []struct {
			opts driver.TxOptions
			want string
		}{
			{driver.TxOptions{Isolation: driver.IsolationLevel(sql.LevelSerializable)}, "sql: driver does not support non-default isolation level"},
			{driver.TxOptions{ReadOnly: true}, "sql: driver does not support read-only transactions"},
		} {
			if _, err := b.BeginTx(ctx, tc.opts); err == nil || err.Error() != tc.want {
				t.Errorf("BeginTx(%+v) = %v, want %q", tc.opts, err, tc.want)
			}
		}
		if n := inner.calls.get("Begin"); n != 1 {
			t.Errorf("the driver's Begin was called %d times, want 1 (options it cannot honour are refused first)", n)
		}
		if _, err := b.BeginTx(cancelled, driver.TxOptions{}); err != context.Canceled {
			t.Errorf("BeginTx(cancelled) = %v, want context.Canceled", err)
		}
		if inner.calls.get("Begin") != 2 || inner.calls.get("Rollback") != 1 {
			t.Errorf("BeginTx(cancelled): %d Begins and %d Rollbacks, want database/sql's Begin then Rollback", inner.calls.get("Begin"), inner.calls.get("Rollback"))
		}
	})

	t.Run("deprecated Execer", func(t *testing.T) {
		inner := &execerConn{bareConn: &bareConn{}}
		e := end.wrap(inner).(driver.ExecerContext)
		args := []driver.NamedValue{{Ordinal: 1, Value: int64(7)}}
		if _, err := e.ExecContext(ctx, "update t set n = $1", args); err != nil || inner.calls.get("Exec") != 1 {
			t.Fatalf("ExecContext = %v, want the driver's Exec", err)
		}
		if inner.query != "update t set n = $1" || len(inner.args) != 1 || inner.args[0] != int64(7) {
			t.Errorf("Exec got %q %v", inner.query, inner.args)
		}
		named := []driver.NamedValue{{Name: "n", Ordinal: 1, Value: int64(7)}}
		if _, err := e.ExecContext(ctx, "q", named); err == nil || inner.calls.get("Exec") != 1 {
			t.Errorf("ExecContext with a named argument = %v, want database/sql's error", err)
		}
		if _, err := e.ExecContext(cancelled, "q", args); err != context.Canceled || inner.calls.get("Exec") != 1 {
			t.Errorf("ExecContext(cancelled) = %v, want context.Canceled", err)
		}
	})

	// database/sql discards a connection after rolling back a cancelled
	// transaction unless the driver can reset and validate it.
	t.Run("cancelled transaction", func(t *testing.T) {
		for _, tc := range []struct {
			name      string
			inner     driver.Conn
			wantValid bool
		}{
			{"driver without SessionResetter", &bareConn{}, false},
			{"driver with SessionResetter and Validator", newInnerConn("c"), true},
		} {
			conn := end.wrap(tc.inner)
			txCtx, cancelTx := context.WithCancel(ctx)
			tx, err := conn.(driver.ConnBeginTx).BeginTx(txCtx, driver.TxOptions{})
			if err != nil {
				t.Fatal(err)
			}
			cancelTx()
			tx.Rollback()
			if got := conn.(driver.Validator).IsValid(); got != tc.wantValid {
				t.Errorf("%s: IsValid after a cancelled transaction = %v, want %v", tc.name, got, tc.wantValid)
			}
		}
	})

	t.Run("through database/sql", func(t *testing.T) {
		inner := &bareConn{}
		db := sql.OpenDB(ConnectorFunc(func(context.Context) (driver.Conn, error) { return end.wrap(inner), nil }))
		defer db.Close()
		if _, err := db.ExecContext(ctx, "update t set n = $1", 1); err != nil {
			t.Fatal(err)
		}
		if inner.calls.get("Prepare") != 1 || inner.calls.get("Stmt.Exec") != 1 || inner.calls.get("Stmt.Close") != 1 {
			t.Errorf("db.Exec did not prepare, execute and close a statement: %v", inner.calls.n)
		}
		if len(inner.args) != 1 || inner.args[0] != int64(1) {
			t.Errorf("the statement got %v, want database/sql's default conversion [1]", inner.args)
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil || inner.calls.get("Commit") != 1 {
			t.Errorf("Commit = %v", err)
		}
	})
}

// TestSessionEndThroughDatabaseSQL runs statements from several goroutines
// across retireAt, as an application would: database/sql must move to new
// connections without a single failed statement.
func TestSessionEndThroughDatabaseSQL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		start := time.Now()
		retireAt := start.Add(10 * time.Second)
		stopAt := start.Add(12 * time.Second)
		first := newSessionEnd(retireAt)
		defer first.stop()
		connector := newSessionConnector(first)
		db := sql.OpenDB(connector)
		defer db.Close()
		db.SetMaxIdleConns(64)

		var failed atomic.Int64
		var wg sync.WaitGroup
		// Periods that never divide 10 s: at retireAt every worker is between
		// statements, so all their connections are idle in the pool.
		for i, period := range []time.Duration{7, 11, 13, 17, 19, 23} {
			wg.Go(func() {
				for n := 0; time.Now().Before(stopAt); n++ {
					if _, err := db.ExecContext(ctx, fmt.Sprintf("worker%d-%d", i, n)); err != nil {
						failed.Add(1)
						t.Errorf("worker %d statement %d at retireAt%+v: %v", i, n, time.Since(retireAt), err)
					}
					time.Sleep(period * time.Millisecond)
				}
			})
		}
		// A transaction begun before retireAt and committed after it.
		var txErr error
		wg.Go(func() {
			time.Sleep(8 * time.Second)
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				txErr = err
				return
			}
			if _, err := tx.ExecContext(ctx, "tx-before"); err != nil {
				txErr = err
				tx.Rollback()
				return
			}
			time.Sleep(3 * time.Second)
			if _, err := tx.ExecContext(ctx, "tx-after"); err != nil {
				txErr = err
				tx.Rollback()
				return
			}
			txErr = tx.Commit()
		})
		// The Connector has the next credential before retireAt.
		time.Sleep(9 * time.Second)
		second := newSessionEnd(start.Add(time.Hour))
		defer second.stop()
		connector.rotate(second)

		time.Sleep(time.Until(retireAt) - time.Nanosecond)
		synctest.Wait()
		gen1 := connector.opened(1)
		if len(gen1) < 2 {
			t.Fatalf("%d connections opened before retireAt, want several", len(gen1))
		}
		for _, c := range gen1 {
			if _, isClosed := c.closedTime(); isClosed {
				t.Errorf("%s closed before retireAt", c.name)
			}
		}
		if n := first.open(); n != len(gen1) {
			t.Errorf("open() = %d 1ns before retireAt, want %d", n, len(gen1))
		}

		time.Sleep(time.Nanosecond)
		synctest.Wait()
		var txConn *innerConn
		for _, e := range connector.log.all() {
			if e.query == "tx-before" {
				txConn = e.conn
			}
		}
		if txConn == nil {
			t.Fatal("the transaction did not start before retireAt")
		}
		for _, c := range gen1 {
			at, isClosed := c.closedTime()
			switch {
			case c == txConn && isClosed:
				t.Errorf("%s closed at retireAt in the middle of a transaction", c.name)
			case c != txConn && (!isClosed || !at.Equal(retireAt)):
				t.Errorf("%s, idle in the pool: closed %v at %v, want closed at retireAt", c.name, isClosed, at)
			}
		}
		if n := first.open(); n != 1 {
			t.Errorf("open() = %d at retireAt, want 1 (the transaction's)", n)
		}

		wg.Wait()
		if txErr != nil {
			t.Errorf("the transaction across retireAt failed: %v", txErr)
		}
		if n := failed.Load(); n != 0 {
			t.Errorf("%d statements failed, want 0", n)
		}
		if n := first.open(); n != 0 {
			t.Errorf("open() = %d after the pool moved on, want 0", n)
		}

		var afterTx, afterOnNew int
		for _, e := range connector.log.all() {
			retired := connector.generation(e.conn) == 1
			switch {
			case e.query == "tx-after":
				afterTx++
				if e.conn != txConn || !e.inTx || e.at.Before(retireAt) {
					t.Errorf("tx-after ran on %s (in a transaction: %v) at %v", e.conn.name, e.inTx, e.at)
				}
			case retired && !e.at.Before(retireAt):
				t.Errorf("%q ran on retired %s at retireAt%+v outside a transaction", e.query, e.conn.name, e.at.Sub(retireAt))
			case !retired && !e.at.Before(retireAt):
				afterOnNew++
			}
		}
		if afterTx != 1 || afterOnNew < 100 {
			t.Errorf("after retireAt: %d statements in the transaction (want 1), %d on new connections (want hundreds)", afterTx, afterOnNew)
		}
		if txConn.count("Commit") != 1 {
			t.Errorf("the transaction's connection saw %d Commits, want 1", txConn.count("Commit"))
		}

		db.Close() // discards the pool's closed connections too: no second driver Close
		for _, c := range append(gen1, connector.opened(2)...) {
			if n := c.count("Close"); n != 1 {
				t.Errorf("%s: driver Close called %d times, want 1", c.name, n)
			}
			if m := c.misused(); len(m) > 0 {
				t.Errorf("%s used after Close: %v", c.name, m)
			}
		}
	})
}

// TestSessionEndPreparedStatementsAcrossRetireAt: a prepared statement is
// re-prepared on new connections, and database/sql's closing of a statement
// on an idle retired connection never finds the driver's connection closed.
func TestSessionEndPreparedStatementsAcrossRetireAt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		start := time.Now()
		retireAt := start.Add(10 * time.Second)
		first := newSessionEnd(retireAt)
		defer first.stop()
		connector := newSessionConnector(first)
		db := sql.OpenDB(connector)
		defer db.Close()

		stmt, err := db.PrepareContext(ctx, "prepared")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i, period := range []time.Duration{7, 11, 13} {
			wg.Go(func() {
				for n := 0; time.Now().Before(start.Add(12 * time.Second)); n++ {
					if _, err := stmt.ExecContext(ctx); err != nil {
						t.Errorf("worker %d statement %d: %v", i, n, err)
					}
					time.Sleep(period * time.Millisecond)
				}
			})
		}
		time.Sleep(9 * time.Second)
		second := newSessionEnd(start.Add(time.Hour))
		defer second.stop()
		connector.rotate(second)
		wg.Wait()
		stmt.Close() // closes the driver statements, some on idle retired connections

		for _, e := range connector.log.all() {
			if connector.generation(e.conn) == 1 && !e.at.Before(retireAt) {
				t.Errorf("%q ran on retired %s at retireAt%+v", e.query, e.conn.name, e.at.Sub(retireAt))
			}
		}
		db.Close()
		for _, c := range append(connector.opened(1), connector.opened(2)...) {
			if m := c.misused(); len(m) > 0 {
				t.Errorf("%s used after Close: %v", c.name, m)
			}
			if c.count("Close") != 1 {
				t.Errorf("%s: driver Close called %d times, want 1", c.name, c.count("Close"))
			}
		}
		if n := first.open(); n != 0 {
			t.Errorf("open() = %d after db.Close, want 0", n)
		}
	})
}

func (c *sessionConnector) generation(conn *innerConn) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conns[conn]
}

func TestDriverConn(t *testing.T) {
	end := newSessionEnd(time.Now().Add(time.Hour))
	defer end.stop()
	inner := newInnerConn("c")
	db := sql.OpenDB(ConnectorFunc(func(context.Context) (driver.Conn, error) { return end.wrap(inner), nil }))
	defer db.Close()
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = conn.Raw(func(raw any) error {
		if _, ok := raw.(*sessionConn); !ok {
			return fmt.Errorf("Raw handed %T, want the wrapper", raw)
		}
		if got := DriverConn(raw); got != inner {
			return fmt.Errorf("DriverConn = %T %p, want the driver's connection %p", got, got, inner)
		}
		if _, ok := DriverConn(raw).(driver.Validator); !ok {
			return errors.New("the driver's connection is not reachable with an interface assertion")
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	if got := DriverConn(inner); got != inner {
		t.Errorf("DriverConn of an unwrapped connection = %v, want it unchanged", got)
	}
	if got := DriverConn(nil); got != nil {
		t.Errorf("DriverConn(nil) = %v", got)
	}
}
