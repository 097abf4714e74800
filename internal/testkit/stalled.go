package testkit

import (
	"net"
	"sync"
	"testing"
)

// StalledServer accepts TCP connections on 127.0.0.1 and never answers:
// a database that hangs during the login. It is stopped at the end of the
// test, or earlier by Stop.
type StalledServer struct {
	ln       net.Listener
	done     chan struct{} // closed when the accept loop has ended
	stopOnce sync.Once

	mu       sync.Mutex // guards accepted
	accepted []net.Conn
}

// StartStalledServer starts a StalledServer for t.
func StartStalledServer(t testing.TB) *StalledServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &StalledServer{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return // the listener was closed
			}
			s.mu.Lock()
			s.accepted = append(s.accepted, nc)
			s.mu.Unlock()
		}
	}()
	t.Cleanup(s.Stop)
	return s
}

// Port is the port it listens on.
func (s *StalledServer) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Conns returns the connections accepted so far.
func (s *StalledServer) Conns() []net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]net.Conn(nil), s.accepted...)
}

// Stop closes the listener and every accepted connection (so that a login
// blocked on one ends). It is idempotent.
func (s *StalledServer) Stop() {
	s.stopOnce.Do(func() {
		_ = s.ln.Close()
		<-s.done
		for _, nc := range s.Conns() {
			_ = nc.Close()
		}
	})
}
