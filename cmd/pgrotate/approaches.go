package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/naive"
	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/awssm"
)

// storeCounter is the Secrets Manager client of one approach: it counts the
// GetSecretValue calls the approach makes, by staging label, and passes
// them on. It satisfies awssm.API.
type storeCounter struct {
	api                     awssm.API
	current, pending, other atomic.Int64
}

var _ awssm.API = (*storeCounter)(nil)

func (c *storeCounter) GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	switch stage := aws.ToString(in.VersionStage); {
	case stage == awssm.StagePending:
		c.pending.Add(1)
	case stage == awssm.StageCurrent, stage == "" && in.VersionId == nil:
		c.current.Add(1)
	default:
		c.other.Add(1)
	}
	return c.api.GetSecretValue(ctx, in, optFns...)
}

// counts returns the calls so far; none for a nil counter (an approach
// that does not read Secrets Manager).
func (c *storeCounter) counts() FetchCounts {
	if c == nil {
		return FetchCounts{}
	}
	return FetchCounts{Current: c.current.Load(), Pending: c.pending.Load(), Other: c.other.Load()}
}

// opsClient is the client of the rotation functions and of the runbook
// (the operator's side), counting its GetSecretValue calls so that the
// report can tell them from the application's.
type opsClient struct {
	*secretsmanager.Client
	gets atomic.Int64
}

func (c *opsClient) GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	c.gets.Add(1)
	return c.Client.GetSecretValue(ctx, in, optFns...)
}

// approach is one way for an application to get its database credential,
// running the same workload as the others.
type approach struct {
	key, title string
	// pool is the pool statements go through now; rebuild, if set, is
	// called when a login through it was rejected.
	pool    func() *sql.DB
	rebuild func(ctx context.Context)
	logins  *loginRecorder
	calls   *storeCounter // nil with -store vault
	vault   *vaultCounter // -store vault only
	closeFn func() error
	// pooled makes the workers run each statement on the pool rather
	// than on a connection each holds (see worker).
	pooled bool

	db   *sql.DB             // the approach's only pool, if it has one
	conn *rotating.Connector // the rotating approach only
}

func (a *approach) close() error { return a.closeFn() }

// Approach keys, in the order the comparison lists them.
const (
	keyRotating = "rotating"
	keyStatic   = "static"
	keyPerLogin = "per-login"
	keyRebuild  = "rebuild"
)

var approachTitles = map[string]string{
	keyRotating: "rotating (this library)",
	keyStatic:   "static DSN",
	keyPerLogin: "secret fetched per login",
	keyRebuild:  "pool rebuilt on auth error",
}

// newRotatingApproach is what the README recommends: the awssm source
// behind rotating.NewConnector, and sql.OpenDB, logging in through drv.
func newRotatingApproach(drv driverName, dsn, secretID string, api awssm.API, log *slog.Logger, workers int) (*approach, error) {
	calls := &storeCounter{api: api}
	src, err := awssm.New(calls, secretID, awssm.WithLogger(log))
	if err != nil {
		return nil, err
	}
	c, err := rotating.NewConnector(dsn, src, rotating.WithLogger(log), drv.probedOption())
	if err != nil {
		return nil, err
	}
	logins := new(loginRecorder)
	db := openPool(&timedConnector{inner: c, logins: logins}, workers)
	return &approach{
		key: keyRotating, title: approachTitles[keyRotating],
		pool: fixed(db), logins: logins, calls: calls, closeFn: db.Close,
		db: db, conn: c,
	}, nil
}

func fixed(db *sql.DB) func() *sql.DB { return func() *sql.DB { return db } }

// fetchCurrent reads the AWSCURRENT credential, as the naive approaches do.
func fetchCurrent(ctx context.Context, api awssm.API, secretID string) (secrets.Credential, error) {
	out, err := api.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(secretID)})
	if err != nil {
		return secrets.Credential{}, err
	}
	return secrets.ParseSecret([]byte(aws.ToString(out.SecretString)), secrets.Keys{})
}

// newStaticApproach reads the secret once, at start-up, and builds a
// plain connector of the driver with it: the password in the DSN.
func newStaticApproach(ctx context.Context, d dialer, secretID string, api awssm.API, workers int) (*approach, error) {
	calls := &storeCounter{api: api}
	cred, err := fetchCurrent(ctx, calls, secretID)
	if err != nil {
		return nil, err
	}
	pc, err := d.connector(cred)
	if err != nil {
		return nil, err
	}
	logins := new(loginRecorder)
	db := openPool(&timedConnector{inner: pc, logins: logins}, workers)
	return &approach{
		key: keyStatic, title: approachTitles[keyStatic],
		pool: fixed(db), logins: logins, calls: calls, closeFn: db.Close, db: db,
	}, nil
}

// newPerLoginApproach fetches the secret before every connection.
func newPerLoginApproach(d dialer, secretID string, api awssm.API, workers int) (*approach, error) {
	calls := &storeCounter{api: api}
	logins := new(loginRecorder)
	current := secrets.Func(func(ctx context.Context) (secrets.Credential, error) { return fetchCurrent(ctx, calls, secretID) })
	db := openPool(&timedConnector{inner: naive.PerLogin(current, dialOf(d), d.driver()), logins: logins}, workers)
	return &approach{
		key: keyPerLogin, title: approachTitles[keyPerLogin],
		pool: fixed(db), logins: logins, calls: calls, closeFn: db.Close, db: db,
	}, nil
}

// rebuildingPool is the fix a blog post suggests: when a login is
// rejected, read the secret again, open a new sql.DB with it if it
// changed, and retry once. The mutex keeps two rebuilds from racing; it
// does not coalesce them, so every rejected login reads the secret.
// Replaced pools stay open until the end, so that connections taken from
// them go on working (closing them at once would fail statements, which is
// not the point made here).
type rebuildingPool struct {
	dialer   dialer
	api      awssm.API
	secretID string
	workers  int
	logins   *loginRecorder

	mu      sync.Mutex
	db      *sql.DB
	cred    secrets.Credential
	retired []*sql.DB
}

func newRebuildApproach(ctx context.Context, d dialer, secretID string, api awssm.API, workers int) (*approach, error) {
	calls := &storeCounter{api: api}
	p := &rebuildingPool{dialer: d, api: calls, secretID: secretID, workers: workers, logins: new(loginRecorder)}
	var err error
	if p.cred, err = fetchCurrent(ctx, calls, secretID); err != nil {
		return nil, err
	}
	if p.db, err = p.open(p.cred); err != nil {
		return nil, err
	}
	return &approach{
		key: keyRebuild, title: approachTitles[keyRebuild],
		pool: p.current, rebuild: p.rebuild, logins: p.logins, calls: calls, closeFn: p.close,
	}, nil
}

func (p *rebuildingPool) open(cred secrets.Credential) (*sql.DB, error) {
	pc, err := p.dialer.connector(cred)
	if err != nil {
		return nil, err
	}
	return openPool(&timedConnector{inner: pc, logins: p.logins}, p.workers), nil
}

func (p *rebuildingPool) current() *sql.DB {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.db
}

// rebuild reads the secret and swaps in a new pool if the login changed.
func (p *rebuildingPool) rebuild(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cred, err := fetchCurrent(ctx, p.api, p.secretID)
	if err != nil || cred.SameLogin(p.cred) {
		return
	}
	db, err := p.open(cred)
	if err != nil {
		return
	}
	p.retired = append(p.retired, p.db)
	p.db, p.cred = db, cred
}

func (p *rebuildingPool) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, db := range append(p.retired, p.db) {
		errs = append(errs, db.Close())
	}
	return errors.Join(errs...)
}

// newApproach builds the approach named key, logging in through drv: the
// naive approaches use the same driver as the rotating one, so that the
// comparison is of the approaches alone.
func newApproach(ctx context.Context, drv driverName, key, dsn, secretID string, api awssm.API, log *slog.Logger, workers int) (*approach, error) {
	if key == keyRotating {
		return newRotatingApproach(drv, dsn, secretID, api, log, workers)
	}
	d, err := newDialer(drv, dsn)
	if err != nil {
		return nil, err
	}
	switch key {
	case keyStatic:
		return newStaticApproach(ctx, d, secretID, api, workers)
	case keyPerLogin:
		return newPerLoginApproach(d, secretID, api, workers)
	case keyRebuild:
		return newRebuildApproach(ctx, d, secretID, api, workers)
	}
	return nil, fmt.Errorf("unknown approach %q", key)
}
