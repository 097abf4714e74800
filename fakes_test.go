package rotating

import (
	"context"
	"database/sql/driver"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"

	"github.com/pgrotate/rotating/secrets"
)

// fakeDB stands in for PostgreSQL's login check in unit tests: it accepts
// the logins it holds and answers others with 28P01, as the server does.
type fakeDB struct {
	mu       sync.Mutex
	accepted map[string]string // user -> password
	dials    atomic.Int64
	// gate, if set, is called at the start of every dial (for tests that
	// need to hold a dial open).
	gate func(cfg pq.Config)
	// failWith, if set, is returned by every dial instead.
	failWith error
}

func newFakeDB(user, password string) *fakeDB {
	return &fakeDB{accepted: map[string]string{user: password}}
}

// setPassword is ALTER ROLE user PASSWORD password.
func (db *fakeDB) setPassword(user, password string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.accepted[user] = password
}

// connector is a NewConnectorFunc whose connections check the login.
func (db *fakeDB) connector(cfg pq.Config) (driver.Connector, error) {
	return fakeConnector{db: db, cfg: cfg}, nil
}

type fakeConnector struct {
	db  *fakeDB
	cfg pq.Config
}

func (f fakeConnector) Connect(ctx context.Context) (driver.Conn, error) {
	f.db.dials.Add(1)
	if f.db.gate != nil {
		f.db.gate(f.cfg)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.db.mu.Lock()
	pw, ok := f.db.accepted[f.cfg.User]
	failWith := f.db.failWith
	f.db.mu.Unlock()
	if failWith != nil {
		return nil, failWith
	}
	if !ok || pw != f.cfg.Password {
		return nil, &pq.Error{Severity: "FATAL", Code: pqerror.InvalidPassword,
			Message: `password authentication failed for user "` + f.cfg.User + `"`}
	}
	return &fakeConn{user: f.cfg.User}, nil
}

func (f fakeConnector) Driver() driver.Driver { return &pq.Driver{} }

type fakeConn struct{ user string }

func (*fakeConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("not implemented") }
func (*fakeConn) Close() error                        { return nil }
func (*fakeConn) Begin() (driver.Tx, error)           { return nil, errors.New("not implemented") }

// fakeSource is a store that counts calls. Its current and pending
// credentials can be changed, it can fail or block.
type fakeSource struct {
	mu      sync.Mutex
	current secrets.Credential
	pending *secrets.Credential
	err     error
	// block, if not nil, makes Fetch wait for it to be closed (or ctx).
	block chan struct{}

	fetches        atomic.Int64
	pendingFetches atomic.Int64
}

func newFakeSource(user, password string) *fakeSource {
	return &fakeSource{current: secrets.Credential{Username: user, Password: password, Version: "v1"}}
}

func (s *fakeSource) Fetch(ctx context.Context) (secrets.Credential, error) {
	s.fetches.Add(1)
	s.mu.Lock()
	block, cred, err := s.block, s.current, s.err
	s.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return secrets.Credential{}, ctx.Err()
		}
	}
	if err != nil {
		return secrets.Credential{}, err
	}
	return cred, nil
}

func (s *fakeSource) Describe() string { return "fake store" }

func (s *fakeSource) set(c secrets.Credential) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.current = c
}

func (s *fakeSource) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func (s *fakeSource) setBlock(ch chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.block = ch
}

// pendingSource adds AWSPENDING-like behaviour to fakeSource.
type pendingSource struct{ *fakeSource }

func (s pendingSource) FetchPending(ctx context.Context, rejected secrets.Credential) (secrets.Credential, error) {
	s.pendingFetches.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil {
		return secrets.Credential{}, secrets.ErrNoPending
	}
	return *s.pending, nil
}

func (s pendingSource) setPending(c *secrets.Credential) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = c
}

// waitFor polls cond until it holds or the timeout passes. It is for
// waiting on background work, not a performance assertion: the timeout is
// generous.
func waitFor(cond func() bool) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cond()
}
