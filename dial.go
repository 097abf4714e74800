package rotating

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/lib/pq"
)

// newPQConnector is the default NewConnectorFunc: a lib/pq connector whose
// logins are bounded by the caller's context and by loginTimeout (the
// rotation wait).
func newPQConnector(cfg pq.Config, loginTimeout time.Duration) (driver.Connector, error) {
	c, err := pq.NewConnectorConfig(cfg)
	if err != nil {
		return nil, err
	}
	c.Dialer(watchedDialer{})
	return contextBoundConnector{c, loginTimeout}, nil
}

// contextBoundConnector makes the caller's context and a login timeout
// (the rotation wait) bound the whole login. lib/pq passes the context to
// the TCP dial only; the startup, TLS and authentication exchange is
// bounded by connect_timeout alone, so a server that accepts the connection
// and then stalls would hold Connect past the caller's deadline, or
// forever. Here every socket of the login gets the login's deadline, and
// when the context ends mid-login the deadline is moved to the past, which
// ends the exchange at once. The deadline is cleared once logged in.
type contextBoundConnector struct {
	pq           *pq.Connector
	loginTimeout time.Duration
}

func (c contextBoundConnector) Connect(ctx context.Context) (driver.Conn, error) {
	w := &dialWatch{deadline: time.Now().Add(c.loginTimeout)}
	stop := func() bool { return true }
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, w.expire)
	}
	conn, err := c.pq.Connect(context.WithValue(ctx, dialWatchKey{}, w))
	if !stop() {
		// The context ended during the login: a connection that made it
		// has a dead deadline and is unusable.
		if err == nil {
			_ = conn.Close()
		}
		return nil, fmt.Errorf("rotating: login interrupted: %w", errors.Join(context.Cause(ctx), err))
	}
	if err != nil {
		if !time.Now().Before(w.deadline) {
			err = fmt.Errorf("rotating: login did not finish within %v: %w", c.loginTimeout, err)
		}
		// lib/pq returns a typed nil *conn with its errors; hand back a
		// true nil.
		return nil, err
	}
	w.clear()
	return conn, nil
}

func (c contextBoundConnector) Driver() driver.Driver { return c.pq.Driver() }

type dialWatchKey struct{}

// dialWatch collects the sockets one login opens (several with a multi-host
// DSN) so that they can be interrupted when the caller's context ends.
type dialWatch struct {
	deadline time.Time // set before the login starts

	mu      sync.Mutex
	conns   []net.Conn
	expired bool
}

var longAgo = time.Unix(1, 0)

func (w *dialWatch) add(nc net.Conn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.conns = append(w.conns, nc)
	if w.expired {
		_ = nc.SetDeadline(longAgo)
	} else {
		_ = nc.SetDeadline(w.deadline)
	}
}

// clear removes the login's deadline from its sockets once logged in.
func (w *dialWatch) clear() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, nc := range w.conns {
		_ = nc.SetDeadline(time.Time{})
	}
}

func (w *dialWatch) expire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.expired = true
	for _, nc := range w.conns {
		_ = nc.SetDeadline(longAgo)
	}
}

// watchedDialer is lib/pq's default dialer plus registration of each socket
// with the dialWatch in the context, if any.
type watchedDialer struct{}

func (watchedDialer) Dial(network, address string) (net.Conn, error) {
	return watchedDialer{}.DialContext(context.Background(), network, address)
}

func (watchedDialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return watchedDialer{}.DialContext(ctx, network, address)
}

func (watchedDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	if w, ok := ctx.Value(dialWatchKey{}).(*dialWatch); ok {
		w.add(nc)
	}
	return nc, nil
}
