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
// logins are bounded by the caller's context.
func newPQConnector(cfg pq.Config) (driver.Connector, error) {
	c, err := pq.NewConnectorConfig(cfg)
	if err != nil {
		return nil, err
	}
	c.Dialer(watchedDialer{})
	return contextBoundConnector{c}, nil
}

// contextBoundConnector makes the caller's context bound the whole login.
// lib/pq passes the context to the TCP dial only; the startup and
// authentication exchange is bounded by connect_timeout alone, so a server
// that accepts the connection and then stalls would hold Connect past the
// caller's deadline. Here, when the context ends mid-login, the socket's
// deadline is moved to the past, which ends the exchange at once.
type contextBoundConnector struct{ pq *pq.Connector }

func (c contextBoundConnector) Connect(ctx context.Context) (driver.Conn, error) {
	if ctx.Done() == nil {
		conn, err := c.pq.Connect(ctx)
		if err != nil {
			return nil, err
		}
		return conn, nil
	}
	w := new(dialWatch)
	stop := context.AfterFunc(ctx, w.expire)
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
		// lib/pq returns a typed nil *conn with its errors; hand back a
		// true nil.
		return nil, err
	}
	return conn, nil
}

func (c contextBoundConnector) Driver() driver.Driver { return c.pq.Driver() }

type dialWatchKey struct{}

// dialWatch collects the sockets one login opens (several with a multi-host
// DSN) so that they can be interrupted when the caller's context ends.
type dialWatch struct {
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
