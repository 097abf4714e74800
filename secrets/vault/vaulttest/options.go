package vaulttest

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/pgrotate/rotating/internal/loopback"
)

// Option configures a [Server].
type Option func(*config) error

type config struct {
	addr       string
	tls        bool
	rootToken  string
	dbMount    string
	kvMount    string
	namespace  string
	requireNS  bool
	logger     *slog.Logger
	keepLeases bool
	onLeaseEnd func(Lease)
}

func defaultConfig() config {
	return config{addr: "127.0.0.1:0", dbMount: "database", kvMount: "secret"}
}

// ErrNotLoopback is returned (wrapped) for an address that is not a
// loopback address. The server hands out database credentials to any
// caller that knows a token, so it must not be reachable from other
// machines.
var ErrNotLoopback = loopback.ErrNotLoopback

// WithAddr makes [Server.Start] listen on addr, which must be a loopback
// address such as "127.0.0.1:8200", "[::1]:0" or "localhost:8200". The
// default is "127.0.0.1:0", a free port.
func WithAddr(addr string) Option {
	return func(c *config) error {
		if err := checkLoopback(addr); err != nil {
			return err
		}
		c.addr = addr
		return nil
	}
}

func checkLoopback(addr string) error {
	if err := loopback.CheckAddr(addr); err != nil {
		return fmt.Errorf("vaulttest: %w", err)
	}
	return nil
}

// WithTLS makes the server answer HTTPS only, with a certificate for
// 127.0.0.1, ::1 and localhost signed by a CA generated for this server
// alone. [Server.CACert] returns the CA's certificate (PEM) for VAULT_CACERT
// or api.TLSConfig; [Server.Client] trusts it.
func WithTLS() Option {
	return func(c *config) error { c.tls = true; return nil }
}

// WithRootToken sets the root token's id instead of a random one, as
// "vault server -dev -dev-root-token-id" does. It must not be empty.
func WithRootToken(token string) Option {
	return func(c *config) error {
		if token == "" || strings.ContainsAny(token, "\x00\r\n") {
			return errors.New("vaulttest: WithRootToken: the token must be non-empty and on one line")
		}
		c.rootToken = token
		return nil
	}
}

// WithDatabaseMount sets the path the database secrets engine is mounted
// at, "database" by default.
func WithDatabaseMount(path string) Option {
	return func(c *config) error {
		m, err := cleanMount(path)
		c.dbMount = m
		return err
	}
}

// WithKVMount sets the path the KV version 2 secrets engine is mounted at,
// "secret" by default.
func WithKVMount(path string) Option {
	return func(c *config) error {
		m, err := cleanMount(path)
		c.kvMount = m
		return err
	}
}

func cleanMount(path string) (string, error) {
	m := strings.Trim(path, "/")
	if m == "" || strings.HasPrefix(m, "sys") && (m == "sys" || strings.HasPrefix(m, "sys/")) ||
		m == "auth" || strings.HasPrefix(m, "auth/") || strings.ContainsAny(m, "?#%\x00 ") {
		return "", fmt.Errorf("vaulttest: mount path %q: want a path such as \"database\", not under sys/ or auth/", path)
	}
	return m, nil
}

// WithNamespace makes the server require the Vault Enterprise namespace
// ns: a request whose X-Vault-Namespace header (or namespace set with
// api.Client.SetNamespace) names another namespace, or none, is answered
// 403 permission denied, as a token of one namespace is in another.
// Without this option the header is accepted and recorded
// ([Server.Namespaces]) but not checked.
func WithNamespace(ns string) Option {
	return func(c *config) error {
		ns = strings.Trim(ns, "/")
		if ns == "" {
			return errors.New("vaulttest: WithNamespace: empty namespace")
		}
		c.namespace, c.requireNS = ns, true
		return nil
	}
}

// WithLogger makes the server log each request at debug level (operation,
// path, status, namespace), and lease, token and rotation events at info
// level (lease ids, usernames, token accessors). It never logs a token, a
// password or a secret value. The default is silent.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error { c.logger = l; return nil }
}

// WithKeepLeasesOnClose makes [Server.Close] leave the PostgreSQL roles of
// the leases that have not ended yet. By default Close revokes them, so
// that a test leaves no roles behind.
func WithKeepLeasesOnClose() Option {
	return func(c *config) error { c.keepLeases = true; return nil }
}

// WithOnLeaseEnd sets a function called once for every lease whose
// revocation has finished (successfully or not), with its final state. It
// runs on the goroutine that revoked the lease, without any lock of the
// server held; it may call the server's methods.
func WithOnLeaseEnd(f func(Lease)) Option {
	return func(c *config) error { c.onLeaseEnd = f; return nil }
}
