package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/api/auth/approle"
	"github.com/hashicorp/vault/api/auth/kubernetes"

	"github.com/pgrotate/rotating/secrets"
)

// ClientOption configures a [Client].
type ClientOption func(*clientConfig)

type clientConfig struct {
	logger    *slog.Logger
	tokenFile string
	auth      *authMethod

	errs []error
}

func (c *clientConfig) invalid(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...))
}

func (c *clientConfig) setAuth(a *authMethod) {
	if c.auth != nil {
		c.invalid("two logins given (%s and %s)", c.auth.name, a.name)
		return
	}
	c.auth = a
}

// WithLogger sends the Client's and its sources' events to l at Debug
// level (Warn for a token that will expire before a lease it made): each
// read with its path and version or lease id, each renewal with the TTL
// Vault granted, logins and token renewals with the token's accessor.
// Tokens, passwords and secret ids are never logged. The default discards
// everything. Failures are also returned as errors, which the connector
// logs itself.
func WithLogger(l *slog.Logger) ClientOption {
	return func(c *clientConfig) {
		if l == nil {
			c.invalid("WithLogger: nil logger")
			return
		}
		c.logger = l
	}
}

// WithTokenFile makes the Client send the token held in the file at path,
// such as the sink file of Vault Agent's auto-auth (a plain, unwrapped
// token; surrounding whitespace is ignored). The file is checked (one
// stat) before every call and read again when its size or modification
// time changed, or after Vault refused its token. The Client does not
// renew this token or log in: the file's writer does.
func WithTokenFile(path string) ClientOption {
	return func(c *clientConfig) {
		if path == "" {
			c.invalid("WithTokenFile: empty path")
			return
		}
		c.tokenFile = path
	}
}

// WithAppRole makes the Client log in with AppRole at auth/<mount>/login
// (mount "" means "approle"), through the official helper
// github.com/hashicorp/vault/api/auth/approle. The secret id is read at
// every login, so a file or environment variable that is updated is
// followed. opts are the helper's (approle.WithWrappingToken, for a
// response-wrapped secret id).
func WithAppRole(mount, roleID string, secretID *approle.SecretID, opts ...approle.LoginOption) ClientOption {
	return func(c *clientConfig) {
		if mount == "" {
			mount = "approle"
		}
		mount = strings.Trim(mount, "/")
		opts = append([]approle.LoginOption{approle.WithMountPath(mount)}, opts...)
		m, err := approle.NewAppRoleAuth(roleID, secretID, opts...)
		if err != nil {
			// The helper's messages quote no value.
			c.invalid("WithAppRole: %v", err)
			return
		}
		c.setAuth(&authMethod{name: "approle", path: "auth/" + mount + "/login", login: m.Login})
	}
}

// DefaultServiceAccountTokenPath is where Kubernetes mounts a pod's
// service account token.
const DefaultServiceAccountTokenPath = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// WithKubernetes makes the Client log in with the Kubernetes auth method
// at auth/<mount>/login (mount "" means "kubernetes") as Vault role role,
// through the official helper github.com/hashicorp/vault/api/auth/kubernetes.
// jwtPath is the service account token file ("" means
// DefaultServiceAccountTokenPath). The file is read at every login, since
// the kubelet replaces a projected token before it expires.
func WithKubernetes(mount, role, jwtPath string) ClientOption {
	return func(c *clientConfig) {
		if mount == "" {
			mount = "kubernetes"
		}
		mount = strings.Trim(mount, "/")
		if jwtPath == "" {
			jwtPath = DefaultServiceAccountTokenPath
		}
		if role == "" {
			c.invalid("WithKubernetes: empty role")
			return
		}
		login := func(ctx context.Context, client *api.Client) (*api.Secret, error) {
			// The helper reads the token file once, when it is built.
			m, err := kubernetes.NewKubernetesAuth(role, kubernetes.WithMountPath(mount), kubernetes.WithServiceAccountTokenPath(jwtPath))
			if err != nil {
				return nil, err
			}
			return m.Login(ctx, client)
		}
		c.setAuth(&authMethod{name: "kubernetes", path: "auth/" + mount + "/login", login: login})
	}
}

// WithAuthMethod makes the Client log in with m, any implementation of
// api.AuthMethod (userpass, JWT, AWS, ... helpers of the vault/api/auth
// modules). name is for logs. m.Login is called with a client that sends
// no token, and must honour its context.
func WithAuthMethod(name string, m api.AuthMethod) ClientOption {
	return func(c *clientConfig) {
		if m == nil {
			c.invalid("WithAuthMethod: nil method")
			return
		}
		if name == "" {
			name = "auth method"
		}
		c.setAuth(&authMethod{name: name, login: m.Login})
	}
}

// SourceOption configures a source. Each applies to the sources named in
// its documentation; given to another, it is an error wrapping
// ErrInvalidOption.
type SourceOption func(*sourceConfig)

type sourceConfig struct {
	keys      secrets.Keys
	version   int
	increment time.Duration
	set       map[string]bool // which options were given

	errs []error
}

func (c *sourceConfig) invalid(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...))
}

func (c *sourceConfig) mark(name string) {
	if c.set == nil {
		c.set = make(map[string]bool)
	}
	c.set[name] = true
}

// newSourceConfig applies opts and refuses those not in allowed.
func newSourceConfig(kind string, opts []SourceOption, allowed ...string) (sourceConfig, error) {
	var cfg sourceConfig
	for _, opt := range opts {
		opt(&cfg)
	}
	for name := range cfg.set {
		ok := false
		for _, a := range allowed {
			ok = ok || a == name
		}
		if !ok {
			cfg.invalid("%s does not apply to %s", name, kind)
		}
	}
	return cfg, errors.Join(cfg.errs...)
}

// WithKeys names the keys of a KV secret's data that hold each part of the
// credential, for secrets that do not use the RDS key names ([KV] only).
// Zero fields of keys mean [secrets.DefaultKeys].
func WithKeys(keys secrets.Keys) SourceOption {
	return func(c *sourceConfig) { c.mark("WithKeys"); c.keys = keys }
}

// WithVersion pins a KV secret's version: Fetch reads that version
// instead of the newest ([KV] only).
func WithVersion(v int) SourceOption {
	return func(c *sourceConfig) {
		c.mark("WithVersion")
		if v < 1 {
			c.invalid("WithVersion: a KV version is 1 or more, got %d", v)
			return
		}
		c.version = v
	}
}

// WithLeaseIncrement sets the increment a renewal of a dynamic role's
// lease asks for ([DynamicRole] only). The default is the lease's
// duration when it was read, which is the role's default_ttl. Vault caps
// it at the role's max_ttl; a renewal that gets less than it asked for
// makes Fetch read a new credential.
func WithLeaseIncrement(d time.Duration) SourceOption {
	return func(c *sourceConfig) {
		c.mark("WithLeaseIncrement")
		if d < time.Second {
			c.invalid("WithLeaseIncrement: at least one second, got %v", d)
			return
		}
		c.increment = d
	}
}
