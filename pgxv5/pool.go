package pgxv5

import (
	"context"
	"database/sql/driver"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/secrets"
)

// Compile-time checks: the tracer a new pool connection logs in with must
// be a pgx.QueryTracer (the type of ConnConfig.Tracer) and a
// pgx.ConnectTracer (to see the login's result).
var (
	_ pgx.QueryTracer   = (*loginTracer)(nil)
	_ pgx.ConnectTracer = (*loginTracer)(nil)
)

// ConfigurePool makes a pgxpool follow credential rotation with a
// rotating.Connector built for cfg's own connection settings and src, and
// returns that Connector. Call it on a config from pgxpool.ParseConfig,
// after any other change to cfg, then create the pool with
// pgxpool.NewWithConfig. Close the pool before the Connector.
//
// Every new connection of the pool logs in with the Connector's credential
// known to work (rotating.Connector.Credential): cfg.BeforeConnect sets
// the user and password on the pool's copy of cfg.ConnConfig, and the
// credential's host, port and database where they apply (the connection
// string leaves them unset, or rotating.WithEndpointFromSecret). A
// BeforeConnect already set runs after that, and must not change the user
// or password. PGPASSWORD or a passfile, which pgxpool.ParseConfig reads,
// never supply the login.
//
// What the pool cannot do is retry a connect: pgxpool returns a rejected
// login to Acquire (or drops it, in a MinConns top-up). So when the
// database rotates the password before the Connector knows, each login
// already handed the old password fails once, and pool.Exec, Query,
// QueryRow, Begin, SendBatch and CopyFrom return that error. The rejection
// is reported to the Connector from the login itself (pgx's
// ConnectTracer; the connection keeps cfg.ConnConfig.Tracer as its own),
// so no later connect is handed that password: later connects wait in
// BeforeConnect, for one store call per step shared by them all, until a
// credential works, as database/sql's Connect does. Acquire (in this
// package) retries the rejected login, and so reaches zero failed
// acquires; docs/pgxpool.md has the figures.
//
// Connections of a credential whose sessions end (Credential.SessionsEnd)
// are destroyed, rather than handed out, when acquired after their
// retirement (cfg.PrepareConn; a PrepareConn or BeforeAcquire already set
// runs after that check). pgxpool checks idle connections only by
// MaxConnIdleTime and MaxConnLifetime: set them below the credential's
// lifetime to close idle ones before its sessions end.
//
// opts are rotating's options; the Connector's driver is this package's
// pgx login over cfg.ConnConfig (its probes, which tell whether a new
// credential works, log in exactly as the pool's connections do), so
// rotating.WithDriver must not be given. The Connector is also a
// driver.Connector: sql.OpenDB(connector) shares its credential with the
// pool.
func ConfigurePool(cfg *pgxpool.Config, src secrets.Source, opts ...rotating.Option) (*rotating.Connector, error) {
	if cfg == nil || cfg.ConnConfig == nil {
		return nil, errors.New("pgxv5: ConfigurePool needs a config from pgxpool.ParseConfig")
	}
	pc := &poolConfig{conn: cfg.ConnConfig, connString: cfg.ConnString()}
	c, err := rotating.NewConnector(cfg.ConnString(), src,
		append(slices.Clip(opts), rotating.WithDriver(poolDriver{pc}))...)
	if err != nil {
		return nil, err
	}

	appBeforeConnect := cfg.BeforeConnect
	cfg.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
		l, err := c.Credential(ctx)
		if err != nil {
			return err
		}
		if err := pc.apply(cc, l.Credential); err != nil {
			return err
		}
		if appBeforeConnect != nil {
			if err := appBeforeConnect(ctx, cc); err != nil {
				return err
			}
		}
		cc.Tracer = &loginTracer{app: cc.Tracer, login: l}
		return nil
	}

	appPrepare := cfg.PrepareConn
	//lint:ignore SA1019 an application's BeforeAcquire (deprecated, but still honoured by pgxpool) must keep running once PrepareConn is set
	if appPrepare == nil && cfg.BeforeAcquire != nil {
		// pgxpool ignores BeforeAcquire once PrepareConn is set.
		//lint:ignore SA1019 see above
		before := cfg.BeforeAcquire
		appPrepare = func(ctx context.Context, conn *pgx.Conn) (bool, error) { return before(ctx, conn), nil }
	}
	cfg.PrepareConn = func(ctx context.Context, conn *pgx.Conn) (bool, error) {
		if retired(conn, time.Now()) {
			return false, nil
		}
		if appPrepare != nil {
			return appPrepare(ctx, conn)
		}
		return true, nil
	}
	return c, nil
}

// acquireAttempts bounds Acquire: the first attempt, the retry after a
// rejected login (its BeforeConnect waits until a credential works), and
// one more for a rotation that lands during the retry.
const acquireAttempts = 3

// Acquire is pool.Acquire for a pool set up by ConfigurePool, retried when
// the pool's new connection was rejected by the database (SQLSTATE 28P01
// or 28000): that rejection has been reported to the Connector before
// pool.Acquire returns it, so the retry's BeforeConnect waits until a
// credential works (one store call per step for every waiting connect,
// within the Connector's rotation wait) and logs in with it. pgxpool
// cannot retry a connect itself; this is the one place that can, so code
// that acquires through Acquire sees no failed acquire through a
// rotation, as database/sql's pool does with the Connector. Pool methods
// that acquire internally (pool.Exec, Query, QueryRow, Begin, SendBatch,
// CopyFrom) do not retry: use Acquire and the *pgxpool.Conn's methods
// where a rotation must cost no failed statement.
//
// It returns at once, without a retry, when ctx ends, for any other error,
// and for the Connector's own errors (the rotation wait ended with every
// credential rejected: a *rotating.AuthError; the store failed: a
// *rotating.FetchError; rotating.ErrClosed); it makes at most three
// attempts. With a pool not set up by ConfigurePool, the retry just
// repeats the login.
func Acquire(ctx context.Context, pool *pgxpool.Pool) (*pgxpool.Conn, error) {
	for attempt := 1; ; attempt++ {
		conn, err := pool.Acquire(ctx)
		if err == nil || attempt == acquireAttempts || ctx.Err() != nil || !rejectedLogin(err) {
			return conn, err
		}
	}
}

// rejectedLogin reports whether err is the pool's own login rejected by the
// database, not the Connector having already waited for a credential.
func rejectedLogin(err error) bool {
	if errors.Is(err, rotating.ErrCredentialRejected) || errors.Is(err, rotating.ErrFetchFailed) ||
		errors.Is(err, rotating.ErrClosed) {
		return false
	}
	return hasAuthCode(err)
}

// hasAuthCode reports whether err or any error it wraps, every branch of a
// joined multi-host error included, is a *pgconn.PgError of a rejected
// login.
func hasAuthCode(err error) bool {
	if pgErr, ok := err.(*pgconn.PgError); ok && (pgErr.Code == "28P01" || pgErr.Code == "28000") {
		return true
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return hasAuthCode(u.Unwrap())
	case interface{ Unwrap() []error }:
		return slices.ContainsFunc(u.Unwrap(), hasAuthCode)
	}
	return false
}

// loginTracer is the tracer of one new pool connection while it logs in:
// it reports the login's result to the Connector and notes the
// credential's retirement on the connection. At the start of the connect
// it puts the application's tracer back into the configuration, which pgx
// reads only after that call: the connection is traced by the
// application's tracer alone, with all its interfaces. pgx calls
// TraceConnectEnd on this tracer all the same.
type loginTracer struct {
	app   pgx.QueryTracer // the application's cfg.ConnConfig.Tracer, or nil
	login rotating.Login
}

func (t *loginTracer) TraceConnectStart(ctx context.Context, data pgx.TraceConnectStartData) context.Context {
	data.ConnConfig.Tracer = t.app
	if ct, ok := t.app.(pgx.ConnectTracer); ok {
		return ct.TraceConnectStart(ctx, data)
	}
	return ctx
}

func (t *loginTracer) TraceConnectEnd(ctx context.Context, data pgx.TraceConnectEndData) {
	t.login.Report(data.Err)
	if data.Err == nil && data.Conn != nil && !t.login.RetireAt.IsZero() {
		data.Conn.PgConn().CustomData()[retireKey] = t.login.RetireAt
	}
	if ct, ok := t.app.(pgx.ConnectTracer); ok {
		ct.TraceConnectEnd(ctx, data)
	}
}

// TraceQueryStart and TraceQueryEnd forward to the application's tracer.
// pgx takes the connection's query tracer from the configuration after
// TraceConnectStart has put the application's back, so they are not
// called; they are there for the interface.
func (t *loginTracer) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if t.app != nil {
		return t.app.TraceQueryStart(ctx, conn, data)
	}
	return ctx
}

func (t *loginTracer) TraceQueryEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryEndData) {
	if t.app != nil {
		t.app.TraceQueryEnd(ctx, conn, data)
	}
}

// retireKey is the key of a connection's retirement time in its
// pgconn.PgConn.CustomData.
const retireKey = "github.com/pgrotate/rotating/pgxv5.retireAt"

func retired(conn *pgx.Conn, now time.Time) bool {
	at, ok := conn.PgConn().CustomData()[retireKey].(time.Time)
	return ok && !now.Before(at)
}

// poolDriver is the rotating.Driver of a Connector made by ConfigurePool:
// its configuration is the pool's, already parsed.
type poolDriver struct{ cfg *poolConfig }

func (d poolDriver) ParseDSN(string) (rotating.DriverConfig, error) { return d.cfg, nil }

// poolConfig applies a credential to a pool's connection configuration,
// one rule for the pool's logins (BeforeConnect) and the Connector's own
// (its probes, through Connector).
type poolConfig struct {
	conn       *pgx.ConnConfig // the pool's cfg.ConnConfig
	connString string          // the pool's connection string, for a credential with an endpoint

	// mu guards the endpoint configuration last parsed, reused while
	// credentials keep the same host, port and database.
	mu         sync.Mutex
	epKey      endpointKey
	epConnConf *pgx.ConnConfig
}

type endpointKey struct {
	host, database string
	port           int
}

// apply sets cred on cc, a copy of the pool's configuration: the user (if
// the credential has one) and the password as fields, and, for a
// credential whose endpoint applies, the host, port, database, TLS and
// fallback settings pgx derives from them, parsed from the connection
// string with the endpoint set (pgx derives the TLS server name and the
// fallbacks from the host when it parses).
func (p *poolConfig) apply(cc *pgx.ConnConfig, cred secrets.Credential) error {
	if cred.Host != "" || cred.Port != 0 || cred.Database != "" {
		ep, err := p.endpoint(cred)
		if err != nil {
			return err
		}
		cc.Host, cc.Port, cc.Database = ep.Host, ep.Port, ep.Database
		cc.TLSConfig, cc.Fallbacks = ep.TLSConfig, ep.Fallbacks
	}
	if cred.Username != "" {
		cc.User = cred.Username
	}
	cc.Password = cred.Password
	return nil
}

// endpoint returns a fresh copy of the pool's configuration parsed with
// cred's endpoint.
func (p *poolConfig) endpoint(cred secrets.Credential) (*pgx.ConnConfig, error) {
	key := endpointKey{host: cred.Host, database: cred.Database, port: cred.Port}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.epConnConf == nil || p.epKey != key {
		parsed, err := pgxpool.ParseConfig(withEndpoint(p.connString, cred))
		if err != nil {
			return nil, err
		}
		p.epKey, p.epConnConf = key, parsed.ConnConfig
	}
	return p.epConnConf.Copy(), nil
}

// Connector builds the Connector's own login for cred: the pool's
// configuration with cred applied, through pgx's database/sql adapter.
func (p *poolConfig) Connector(cred secrets.Credential, loginTimeout time.Duration) (driver.Connector, string, error) {
	cc := p.conn.Copy()
	if err := p.apply(cc, cred); err != nil {
		return nil, "", err
	}
	return boundConnector{stdlib.GetConnector(*cc), loginTimeout}, cc.User, nil
}

func (*poolConfig) Driver() driver.Driver { return stdlib.GetDefaultDriver() }
