// Package loopback holds what the local store servers for tests
// (awssmtest, azkvtest, gcpsmtest, vaulttest) share: serving on a loopback
// address only, going down and coming up again on the same address,
// waiting out an injected latency or hang with the request's context, and
// the tables of injected faults and call counts.
package loopback

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// ErrNotLoopback is the error for an address that is not a loopback
// address. The servers accept any credential, or hand out database
// credentials, so they must not be reachable from other machines.
var ErrNotLoopback = errors.New("refusing to serve on a non-loopback address")

// CheckAddr returns an error wrapping [ErrNotLoopback] unless addr is a
// host:port whose host is a loopback IP address or "localhost". An addr
// that is not host:port (or has no host, which would mean every
// interface) is an error too.
func CheckAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: %q", ErrNotLoopback, addr)
	}
	return nil
}

// CheckListener closes ln and returns an error wrapping [ErrNotLoopback]
// unless ln is bound to a loopback address.
func CheckListener(ln net.Listener) error {
	tcp, ok := ln.Addr().(*net.TCPAddr)
	if !ok || !tcp.IP.IsLoopback() {
		ln.Close()
		return fmt.Errorf("%w: %s", ErrNotLoopback, ln.Addr())
	}
	return nil
}

// Listen listens on addr, which [CheckAddr] must accept, and checks the
// address it got ("localhost" could resolve to another). ctx bounds the
// listen only.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	if err := CheckAddr(addr); err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if err := CheckListener(ln); err != nil {
		return nil, err
	}
	return ln, nil
}

// ServeHTTP serves h on ln, which the caller has checked, until ctx is
// done or stop is closed; it then shuts the server down (closing ln),
// giving requests in flight 5 s, and returns nil. It returns the error if
// serving fails first. Request contexts derive from ctx, so requests that
// hang end with it.
func ServeHTTP(ctx context.Context, ln net.Listener, h http.Handler, stop <-chan struct{}) error {
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	case <-stop:
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil {
		hs.Close()
	}
	<-served // http.ErrServerClosed
	return nil
}

// Wait waits out an injected fault: latency first, then, if hang, until
// the end. It reports whether the request may go on: false if ctx ended
// or stop was closed first, and always false after a hang (which ends
// only that way).
func Wait(ctx context.Context, stop <-chan struct{}, latency time.Duration, hang bool) bool {
	if latency > 0 {
		t := time.NewTimer(latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return false
		case <-stop:
			return false
		}
	}
	if hang {
		select {
		case <-ctx.Done():
		case <-stop:
		}
		return false
	}
	return true
}
