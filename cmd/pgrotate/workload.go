package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"io"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lib/pq"
	"github.com/pgrotate/rotating/internal/naive"
	"github.com/pgrotate/rotating/internal/testkit"
)

// Workload settings shared by every approach, so that they are compared on
// equal terms.
const (
	// statementTimeout bounds each INSERT, login included. It is longer
	// than the connector's default rotation wait (10 s), so that a login
	// the connector is still bridging is not cut short by the workload.
	statementTimeout = 20 * time.Second
	// pauseAfterFailure is how long a worker waits after a failed
	// statement before the next one, as a client's retry would: without it
	// an approach that fails would spin and hog the server.
	pauseAfterFailure = 100 * time.Millisecond
	// connectTimeout bounds every lib/pq login (its connect_timeout) and
	// the naive approaches' pgx logins (ConnectTimeout); the pgxv5 driver
	// bounds the rotating approach's pgx logins by the connector's
	// rotation wait, 10 s as well.
	connectTimeout = 10 * time.Second
)

// ---- logins

// loginProbe counts the login attempts made within one Connect call. The
// timedConnector puts one in the context; the probedConnector, which wraps
// the driver's connector for each credential, counts into it. rotating
// passes the caller's context down to the driver, so attempts made while
// it bridges a rotation are counted against the Connect that made them.
type loginProbe struct {
	attempts, rejected atomic.Int32
}

type probeKey struct{}

// probedConnector opens connections with the driver's connector and counts
// each attempt into the Connect's loginProbe.
type probedConnector struct{ inner driver.Connector }

// newProbedConnector is a rotating.NewConnectorFunc (and the naive
// approaches' way of opening connections with lib/pq): lib/pq's connector
// for cfg, with attempts counted. connect_timeout bounds each login.
func newProbedConnector(cfg pq.Config) (driver.Connector, error) {
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = connectTimeout
	}
	c, err := pq.NewConnectorConfig(cfg)
	if err != nil {
		return nil, err
	}
	return probedConnector{c}, nil
}

func (c probedConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.inner.Connect(ctx)
	if p, ok := ctx.Value(probeKey{}).(*loginProbe); ok {
		p.attempts.Add(1)
		if isAuthFailure(err) {
			p.rejected.Add(1)
		}
	}
	if err != nil {
		return nil, err // lib/pq returns a typed nil *conn with its errors
	}
	return conn, nil
}

func (c probedConnector) Driver() driver.Driver { return c.inner.Driver() }

// isAuthFailure is the server refusing a login (28P01, 28000), as the
// naive approaches and the benchmarks tell it.
var isAuthFailure = naive.IsAuthFailure

// loginSample is one Connect call as database/sql saw it.
type loginSample struct {
	at     time.Time // when Connect was called
	took   time.Duration
	met    bool // a login attempt within it was rejected
	failed bool // it returned an error
}

// loginRecorder collects loginSamples; safe for concurrent use.
type loginRecorder struct {
	mu      sync.Mutex
	samples []loginSample
}

func (r *loginRecorder) add(s loginSample) {
	r.mu.Lock()
	r.samples = append(r.samples, s)
	r.mu.Unlock()
}

// bridged returns the durations of the successful Connects called in
// [from, to) within which a login attempt was rejected.
func (r *loginRecorder) bridged(from, to time.Time) []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ds []time.Duration
	for _, x := range r.samples {
		if x.met && !x.failed && !x.at.Before(from) && x.at.Before(to) {
			ds = append(ds, x.took)
		}
	}
	return ds
}

// summary splits the samples into successful ordinary logins, successful
// logins that met a rejection (bridged), and failed ones.
func (r *loginRecorder) summary() LoginSummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ordinary, met []time.Duration
	var s LoginSummary
	for _, x := range r.samples {
		switch {
		case x.failed:
			s.Failed++
		case x.met:
			met = append(met, x.took)
		default:
			ordinary = append(ordinary, x.took)
		}
	}
	s.Ordinary, s.MetRotation = latencies(ordinary), latencies(met)
	return s
}

// latencies summarises ds (which it sorts).
func latencies(ds []time.Duration) LatencySummary {
	if len(ds) == 0 {
		return LatencySummary{}
	}
	slices.Sort(ds)
	return LatencySummary{N: len(ds), P50: percentile(ds, 0.50), P99: percentile(ds, 0.99), Max: ds[len(ds)-1]}
}

// percentile returns the nearest-rank p-th percentile of sorted ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	i := int(float64(len(ds))*p+0.999999) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

// timedConnector times every Connect that database/sql makes (its own
// goroutine's as well as a statement's) and records whether a login attempt
// within it was rejected. The driver's connection is passed on unwrapped,
// and Close reaches the connector underneath (sql.DB.Close calls it).
type timedConnector struct {
	inner  driver.Connector
	logins *loginRecorder
}

var (
	_ driver.Connector = (*timedConnector)(nil)
	_ io.Closer        = (*timedConnector)(nil)
)

func (t *timedConnector) Connect(ctx context.Context) (driver.Conn, error) {
	p := new(loginProbe)
	start := time.Now()
	conn, err := t.inner.Connect(context.WithValue(ctx, probeKey{}, p))
	t.logins.add(loginSample{at: start, took: time.Since(start), met: p.rejected.Load() > 0, failed: err != nil})
	return conn, err
}

func (t *timedConnector) Driver() driver.Driver { return t.inner.Driver() }

func (t *timedConnector) Close() error {
	if c, ok := t.inner.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// openPool opens a sql.DB over c for the workers, each of which holds one
// connection at a time (see worker).
func openPool(c driver.Connector, workers int) *sql.DB {
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(workers)
	db.SetMaxIdleConns(workers)
	return db
}

// openRecyclingPool opens a sql.DB over c as applications use one: the
// workers' statements take a connection from it and give it back, and each
// connection is closed once it is recycle old (SetConnMaxLifetime), so that
// new logins keep happening. The connector can then retire the connections
// of a credential whose sessions end (a Vault lease), which it cannot do to
// a connection a worker holds (see worker).
func openRecyclingPool(c driver.Connector, workers int, recycle time.Duration) *sql.DB {
	db := openPool(c, workers)
	db.SetConnMaxLifetime(recycle)
	return db
}

// worker is one of a load's workers. It holds one connection and replaces
// it every recycle, so that new logins keep happening. Its first
// connection lives (n+1)/workers of recycle, so that the workers' logins
// are spread evenly over time rather than coming in waves: like an
// application's pool, where connections are opened at different times, a
// moment without a working credential then stops only the logins that
// fall in it, not the whole workload.
//
// For an approach that is pooled, the worker holds nothing: each statement
// goes through the pool (database/sql retries one that a retired connection
// refuses before sending it on another connection, which it cannot do for a
// held *sql.Conn).
type worker struct {
	n       int
	a       *approach
	recycle time.Duration
	life    time.Duration // of the next connection

	conn    *sql.Conn
	expires time.Time
}

// insert runs one INSERT on the worker's connection, opening one first if
// it has none (and, for the approach that rebuilds its pool, rebuilding it
// if the login was rejected).
func (wk *worker) insert(ctx context.Context, query string, seq int) (int64, error) {
	if wk.a.pooled {
		var id int64
		err := wk.a.pool().QueryRowContext(ctx, query, wk.n, seq).Scan(&id)
		return id, err
	}
	if wk.conn == nil {
		c, err := wk.a.pool().Conn(ctx)
		if err != nil && wk.a.rebuild != nil && isAuthFailure(err) {
			wk.a.rebuild(ctx)
			c, err = wk.a.pool().Conn(ctx)
		}
		if err != nil {
			return 0, err
		}
		wk.conn, wk.expires, wk.life = c, time.Now().Add(wk.life), wk.recycle
	}
	var id int64
	err := wk.conn.QueryRowContext(ctx, query, wk.n, seq).Scan(&id)
	if err != nil || time.Now().After(wk.expires) {
		wk.discard()
	}
	return id, err
}

// discard closes the worker's connection instead of returning it to the
// pool: Raw's ErrBadConn makes database/sql close it.
func (wk *worker) discard() {
	if wk.conn != nil {
		_ = wk.conn.Raw(func(any) error { return driver.ErrBadConn })
		_ = wk.conn.Close()
		wk.conn = nil
	}
}

// load is one approach's workload: workers inserting rows until stopped,
// remembering every id the database acknowledged (the Ledger the tests'
// loads keep) and counting statements per second of the run.
type load struct {
	*testkit.Ledger
	start time.Time

	mu      sync.Mutex // guards the fields below
	seconds []Second
	errs    map[string]int64
}

// startLoad starts workers that insert into table through a until stop is
// closed or ctx ends; wait for them with the returned WaitGroup. Each
// worker replaces its connection every recycle (see worker). With
// rate > 0 the workers together issue at most rate statements per second:
// each waits for its next slot, and a worker that fell behind (a slow
// login) does not catch up with a burst, so a dip shows as a dip.
// Statements cut short by ctx (Ctrl-C) are not counted as failures.
func startLoad(ctx context.Context, a *approach, table string, workers, rate int, recycle time.Duration, start time.Time, stop <-chan struct{}) (*load, *sync.WaitGroup) {
	l := &load{Ledger: testkit.NewLedger(table), start: start, errs: make(map[string]int64)}
	query := "INSERT INTO " + pq.QuoteIdentifier(table) + " (worker, seq) VALUES ($1, $2) RETURNING id"
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(workers) * time.Second / time.Duration(rate)
	}
	always := make(chan time.Time) // ready at once: no pacing
	close(always)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			wk := &worker{n: w, a: a, recycle: recycle, life: recycle * time.Duration(w+1) / time.Duration(workers)}
			defer wk.discard()
			// Spread the workers' slots over the interval.
			next := start.Add(interval * time.Duration(w) / time.Duration(workers))
			for seq := 0; ; seq++ {
				pace := (<-chan time.Time)(always)
				if interval > 0 {
					if now := time.Now(); next.Before(now) {
						next = now
					}
					pace = time.After(time.Until(next))
					next = next.Add(interval)
				}
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				case <-pace:
				}
				sctx, cancel := context.WithTimeout(ctx, statementTimeout)
				id, err := wk.insert(sctx, query, seq)
				cancel()
				if err != nil && ctx.Err() != nil {
					return // interrupted: not the approach's failure
				}
				l.record(id, err)
				if err != nil {
					select {
					case <-time.After(pauseAfterFailure):
					case <-stop:
					case <-ctx.Done():
					}
				}
			}
		})
	}
	return l, &wg
}

func (l *load) record(id int64, err error) {
	l.Record(id, err)
	sec := int(time.Since(l.start) / time.Second)
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.seconds) <= sec {
		l.seconds = append(l.seconds, Second{})
	}
	if err != nil {
		l.seconds[sec].Failed++
		l.errs[errorKind(err)]++
		return
	}
	l.seconds[sec].OK++
}

// errorKind is a short description of a statement's error for the report.
// Errors from lib/pq, pgx, database/sql and rotating never hold a password.
func errorKind(err error) string {
	msg := err.Error()
	if len(msg) > 160 {
		msg = msg[:160] + "…"
	}
	return msg
}

// verify reads the ids stored in the load's table through db and compares
// them with the acknowledged ones: acknowledged, found in the table, and
// acknowledged but missing.
func (l *load) verify(ctx context.Context, db *sql.DB) (acked, found, missing int64, err error) {
	r, err := l.Verify(ctx, db)
	return r.Acknowledged, r.Found, r.Lost, err
}

// perSecond returns the statements counted in each whole second of the
// run, up to n seconds.
func (l *load) perSecond(n int) []Second {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Second, n)
	copy(out, l.seconds)
	return out
}

// topErrors returns the most frequent errors, most frequent first.
func (l *load) topErrors(n int) []ErrorCount {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]ErrorCount, 0, len(l.errs))
	for msg, c := range l.errs {
		out = append(out, ErrorCount{Error: msg, Count: c})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Error < out[j].Error
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}
