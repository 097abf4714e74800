package loopback

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
)

// Errors of [Switch.Start] and [Switch.Up].
var (
	ErrStarted    = errors.New("already started")
	ErrNotStarted = errors.New("not started")
	ErrClosed     = errors.New("closed")
)

// Switch keeps a server on one loopback address that outlives each run of
// the server on it: [Switch.Down] stops serving there, closing the listener
// and every open connection, as an outage would, and [Switch.Up] serves
// again on the same address, so clients keep their URL. The zero value is
// not usable; make one with [NewSwitch]. It is safe for concurrent use.
type Switch struct {
	start func(net.Listener) (stop func())

	// op is held across a whole Start, Down, Up or Close, listening and
	// stopping included, so that an Up never races a Down for the port.
	op sync.Mutex

	// mu guards the fields below; it is never held while the server
	// starts or stops.
	mu     sync.Mutex
	addr   string // set by Start, kept across Down and Up
	stop   func() // nil while down
	closed bool
}

// NewSwitch returns a Switch that serves with start: start serves on ln
// (in goroutines of its own) and returns a function that stops serving,
// closes ln and every open connection, and waits for the serving
// goroutines to return. Use [Go] to make one from a Serve method.
func NewSwitch(start func(ln net.Listener) (stop func())) *Switch {
	return &Switch{start: start}
}

// Go runs serve(ln) in a goroutine and returns a function that calls halt
// (which must make serve return) and waits for serve to return.
func Go(ln net.Listener, serve func(net.Listener) error, halt func()) (stop func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = serve(ln) // the error only says that halt was called
	}()
	return func() {
		halt()
		<-done
	}
}

// Start listens on addr (see [Listen]), fixes the address and serves. It
// returns [ErrStarted] or [ErrClosed] if the switch was started or closed
// before.
func (s *Switch) Start(ctx context.Context, addr string) error {
	s.op.Lock()
	defer s.op.Unlock()
	s.mu.Lock()
	closed, started := s.closed, s.addr != ""
	s.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case started:
		return ErrStarted
	}
	ln, err := Listen(ctx, addr)
	if err != nil {
		return err
	}
	stop := s.start(ln)
	s.mu.Lock()
	s.addr, s.stop = ln.Addr().String(), stop
	s.mu.Unlock()
	return nil
}

// Addr returns the address, such as "127.0.0.1:41234", or "" before
// [Switch.Start]. It stays the same while the server is down.
func (s *Switch) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// IsUp reports whether the server is serving.
func (s *Switch) IsUp() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stop != nil
}

// Down stops serving and waits for it to stop. It reports whether the
// server was up; Down on a server that is down does nothing.
func (s *Switch) Down() bool {
	s.op.Lock()
	defer s.op.Unlock()
	return s.downLocked()
}

func (s *Switch) downLocked() bool {
	s.mu.Lock()
	stop := s.stop
	s.stop = nil
	s.mu.Unlock()
	if stop == nil {
		return false
	}
	stop()
	return true
}

// Up serves again on the address of [Switch.Start] after [Switch.Down]. It
// does nothing if the server is up, and returns [ErrNotStarted] or
// [ErrClosed] before Start or after [Switch.Close], or the error of
// listening again.
func (s *Switch) Up(ctx context.Context) error {
	s.op.Lock()
	defer s.op.Unlock()
	s.mu.Lock()
	addr, up, closed := s.addr, s.stop != nil, s.closed
	s.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case addr == "":
		return ErrNotStarted
	case up:
		return nil
	}
	ln, err := Listen(ctx, addr)
	if err != nil {
		return fmt.Errorf("listen again on %s: %w", addr, err)
	}
	stop := s.start(ln)
	s.mu.Lock()
	s.stop = stop
	s.mu.Unlock()
	return nil
}

// Close stops serving for good: it takes the server down and makes every
// later Start and Up fail. It is idempotent.
func (s *Switch) Close() {
	s.op.Lock()
	defer s.op.Unlock()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.downLocked()
}
