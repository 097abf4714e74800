package testkit

import (
	"context"
	"database/sql/driver"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
)

// FakeDB stands in for PostgreSQL's login check in unit tests: it accepts
// the logins it holds and answers others with 28P01, as the server does.
// Plug it in with rotating.WithNewConnector(db.Connector).
type FakeDB struct {
	// Gate, if set, is called at the start of every dial (for tests that
	// need to hold a dial open). Set it before dials start.
	Gate func(cfg pq.Config)
	// FailWith, if set, is returned by every dial instead. Set it before
	// dials start.
	FailWith error

	mu         sync.Mutex
	accepted   map[string]string // user -> password
	dials      atomic.Int64
	rejections atomic.Int64
}

// NewFakeDB returns a FakeDB that accepts user with password.
func NewFakeDB(user, password string) *FakeDB {
	return &FakeDB{accepted: map[string]string{user: password}}
}

// SetPassword is ALTER ROLE user PASSWORD password (or CREATE ROLE).
func (db *FakeDB) SetPassword(user, password string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.accepted[user] = password
}

// Dials returns how many logins were attempted.
func (db *FakeDB) Dials() int64 { return db.dials.Load() }

// Rejections returns how many logins were rejected with 28P01.
func (db *FakeDB) Rejections() int64 { return db.rejections.Load() }

// Connector is a rotating.NewConnectorFunc whose connections check the
// login.
func (db *FakeDB) Connector(cfg pq.Config) (driver.Connector, error) {
	return fakeConnector{db: db, cfg: cfg}, nil
}

type fakeConnector struct {
	db  *FakeDB
	cfg pq.Config
}

func (f fakeConnector) Connect(ctx context.Context) (driver.Conn, error) {
	f.db.dials.Add(1)
	if f.db.Gate != nil {
		f.db.Gate(f.cfg)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if f.db.FailWith != nil {
		return nil, f.db.FailWith
	}
	f.db.mu.Lock()
	pw, ok := f.db.accepted[f.cfg.User]
	f.db.mu.Unlock()
	if !ok || pw != f.cfg.Password {
		f.db.rejections.Add(1)
		return nil, &pq.Error{Severity: "FATAL", Code: pqerror.InvalidPassword,
			Message: `password authentication failed for user "` + f.cfg.User + `"`}
	}
	return &FakeConn{User: f.cfg.User}, nil
}

func (fakeConnector) Driver() driver.Driver { return &pq.Driver{} }

// FakeConn is the connection a FakeDB login returns.
type FakeConn struct{ User string }

// Prepare is not implemented.
func (*FakeConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("not implemented") }

// Close does nothing.
func (*FakeConn) Close() error { return nil }

// Begin is not implemented.
func (*FakeConn) Begin() (driver.Tx, error) { return nil, errors.New("not implemented") }
