package benchmarks

import (
	"context"
	"database/sql/driver"
	"sync"

	"github.com/lib/pq"

	"github.com/pgrotate/rotating/secrets"
)

// The two connectors rotating is compared with. Both log in through a
// dialFunc, so that they run against the same fake database (or server) as
// the rotating Connector.

// dialFunc opens a connection with one credential.
type dialFunc func(ctx context.Context, cred secrets.Credential) (driver.Conn, error)

// fetchPerConnection calls the store before every login: always current,
// one store call per connection (the "just read the secret" approach, and
// pgx's BeforeConnect or node-postgres' password function fed from a
// vault).
type fetchPerConnection struct {
	src  secrets.Source
	dial dialFunc
}

func (c *fetchPerConnection) Connect(ctx context.Context) (driver.Conn, error) {
	cred, err := c.src.Fetch(ctx)
	if err != nil {
		return nil, err
	}
	return c.dial(ctx, cred)
}

func (c *fetchPerConnection) Driver() driver.Driver { return &pq.Driver{} }

// refetchOnAuthFailure caches the credential and, when a login is rejected
// (28P01 or 28000), refetches it from the store and retries: what the peers
// do (aws-advanced-go-wrapper: one retry, no coalescing; the Java JDBC
// wrapper: more tries). Every failing dial does its own refetch; nothing
// coalesces concurrent refetches, and nothing knows about AWSPENDING.
// retries bounds the refetches per Connect; the benchmarks use 1, the most
// frugal peer, so that the comparison favours the alternative.
type refetchOnAuthFailure struct {
	src     secrets.Source
	dial    dialFunc
	retries int

	mu     sync.Mutex // guards cached; never held across I/O
	cached *secrets.Credential
}

func (c *refetchOnAuthFailure) Connect(ctx context.Context) (driver.Conn, error) {
	c.mu.Lock()
	cached := c.cached
	c.mu.Unlock()
	var cred secrets.Credential
	if cached != nil {
		cred = *cached
	} else {
		var err error
		if cred, err = c.refetch(ctx); err != nil {
			return nil, err
		}
	}
	for try := 0; ; try++ {
		conn, err := c.dial(ctx, cred)
		if err == nil || !isAuthFailure(err) || try == c.retries {
			return conn, err
		}
		if cred, err = c.refetch(ctx); err != nil {
			return nil, err
		}
	}
}

func (c *refetchOnAuthFailure) refetch(ctx context.Context) (secrets.Credential, error) {
	cred, err := c.src.Fetch(ctx)
	if err != nil {
		return secrets.Credential{}, err
	}
	c.mu.Lock()
	c.cached = &cred
	c.mu.Unlock()
	return cred, nil
}

func (c *refetchOnAuthFailure) Driver() driver.Driver { return &pq.Driver{} }
