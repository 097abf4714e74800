package awssmtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"

	"github.com/pgrotate/rotating/internal/loopback"
)

// endpoint is where a Server or an Agent listens: httptest's server from
// Start, or the listener of a running Serve. It serves h; closed is its
// owner's channel, closed by the owner's Close before stop, which ends
// Serve and the requests that hang.
type endpoint struct {
	name   string // "Server" or "Agent", for panics
	h      http.Handler
	closed <-chan struct{}

	// mu guards the fields below; it is never held while serving or
	// stopping.
	mu      sync.Mutex
	stopped bool
	ts      *httptest.Server
	url     string
}

// start serves on a random port of 127.0.0.1. It panics if the endpoint
// is started or stopped already.
func (e *endpoint) start() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		panic("awssmtest: " + e.name + ".Start after Close")
	}
	if e.ts != nil {
		panic("awssmtest: " + e.name + " already started")
	}
	// httptest listens on 127.0.0.1:0 (or [::1]:0 where IPv4 is missing).
	e.ts = httptest.NewServer(e.h)
	e.url = e.ts.URL
}

// URL returns the base URL, or "" before start or serve.
func (e *endpoint) URL() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.url
}

// serve serves on ln, which must be bound to a loopback address, until ctx
// is done or closed is closed, then closes ln and returns nil. While it
// serves, URL names ln's address, unless start has set it already.
func (e *endpoint) serve(ctx context.Context, ln net.Listener) error {
	if err := loopback.CheckListener(ln); err != nil {
		return fmt.Errorf("awssmtest: %w", err)
	}
	url := "http://" + ln.Addr().String()
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		ln.Close()
		return nil
	}
	setURL := e.url == ""
	if setURL {
		e.url = url
	}
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		if setURL && e.url == url {
			e.url = ""
		}
		e.mu.Unlock()
	}()
	if err := loopback.ServeHTTP(ctx, ln, e.h, e.closed); err != nil {
		return fmt.Errorf("awssmtest: %w", err)
	}
	return nil
}

// stop ends serving for good and waits for httptest's handlers, which the
// owner released by closing closed first.
func (e *endpoint) stop() {
	e.mu.Lock()
	e.stopped = true
	ts := e.ts
	e.mu.Unlock()
	if ts != nil {
		ts.Close()
	}
}
