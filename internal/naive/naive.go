// Package naive holds the connectors that the benchmarks and pgrotate's
// demo compare the rotating Connector with: the ways applications and the
// peers get a rotated credential without it. One copy of each, so that the
// benchmarks and the demo measure the same approaches.
//
// Both log in through a Dial the caller gives, so that they run against
// whatever the rotating Connector under comparison runs against (a fake
// database, a real server, either driver).
package naive

import (
	"context"
	"database/sql/driver"
	"errors"
	"sync"

	"github.com/pgrotate/rotating/secrets"
)

// Dial opens a connection with one credential.
type Dial func(ctx context.Context, cred secrets.Credential) (driver.Conn, error)

// PerLogin returns a connector that calls src before every login: always
// current, one store call per connection (the "just read the secret"
// approach, and pgx's BeforeConnect or node-postgres' password function fed
// from a vault). Its Driver method returns drv.
func PerLogin(src secrets.Source, dial Dial, drv driver.Driver) driver.Connector {
	return &perLogin{src: src, dial: dial, drv: drv}
}

type perLogin struct {
	src  secrets.Source
	dial Dial
	drv  driver.Driver
}

func (c *perLogin) Connect(ctx context.Context) (driver.Conn, error) {
	cred, err := c.src.Fetch(ctx)
	if err != nil {
		return nil, err
	}
	return c.dial(ctx, cred)
}

func (c *perLogin) Driver() driver.Driver { return c.drv }

// RefetchOnAuthFailure returns a connector that caches the credential and,
// when a login is rejected (IsAuthFailure), fetches it from src again and
// retries, at most retries times per Connect: what the peers do
// (aws-advanced-go-wrapper: one retry, no coalescing; the Java JDBC
// wrapper: more tries). Every failing login does its own fetch; nothing
// coalesces concurrent fetches, and nothing knows about a pending
// credential. The benchmarks use 1 retry, the most frugal peer, so that the
// comparison favours the alternative. Its Driver method returns drv.
func RefetchOnAuthFailure(src secrets.Source, dial Dial, drv driver.Driver, retries int) driver.Connector {
	return &refetchOnAuthFailure{src: src, dial: dial, drv: drv, retries: retries}
}

type refetchOnAuthFailure struct {
	src     secrets.Source
	dial    Dial
	drv     driver.Driver
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
		if err == nil || !IsAuthFailure(err) || try == c.retries {
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

func (c *refetchOnAuthFailure) Driver() driver.Driver { return c.drv }

// IsAuthFailure reports whether err is the server refusing a login:
// SQLSTATE 28P01 (invalid_password) or 28000 (invalid_authorization_specification)
// anywhere in the chain, from lib/pq (*pq.Error) or pgx (*pgconn.PgError).
func IsAuthFailure(err error) bool {
	var st interface{ SQLState() string }
	if err == nil || !errors.As(err, &st) {
		return false
	}
	return st.SQLState() == "28P01" || st.SQLState() == "28000"
}
