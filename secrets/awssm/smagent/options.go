package smagent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"

	"github.com/pgrotate/rotating/secrets"
)

// DefaultEndpoint is where the Secrets Manager Agent and the Parameters and
// Secrets Lambda extension listen by default.
const DefaultEndpoint = "http://localhost:2773"

// EnvLambdaPort is the variable that sets the Parameters and Secrets Lambda
// extension's port; when it is set (and WithEndpoint is not given), the
// source uses http://localhost:<port>.
const EnvLambdaPort = "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"

// Option configures a [Source].
type Option func(*options)

type options struct {
	endpoint    string
	endpointSet bool
	client      *http.Client
	token       tokenFinder
	tokenSet    uint8 // which of WithToken (1) and WithTokenFile (2) were given
	keys        secrets.Keys
	stage       string
	logger      *slog.Logger

	errs []error
}

func defaultOptions() options {
	return options{
		stage:  StageCurrent,
		logger: slog.New(slog.DiscardHandler),
	}
}

func (c *options) invalid(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...))
}

// finish resolves the defaults that depend on the environment and checks
// what only the whole set can tell.
func (c *options) finish() error {
	if !c.endpointSet {
		c.endpoint = DefaultEndpoint
		if p := os.Getenv(EnvLambdaPort); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				c.invalid("%s is not a port number (1..65535)", EnvLambdaPort)
			} else {
				c.endpoint = "http://localhost:" + p
			}
		}
	}
	if c.tokenSet == 3 {
		c.invalid("WithToken and WithTokenFile are exclusive")
	}
	return errors.Join(c.errs...)
}

// WithEndpoint sets the agent's base URL (default [DefaultEndpoint], or
// the port in PARAMETERS_SECRETS_EXTENSION_HTTP_PORT), for an agent
// configured with another http_port. It must be plain http to localhost or
// a loopback address, with no path, query or user information: the agent
// listens on the loopback interface only and speaks no TLS, and the token
// and the secret travel in the clear, so any other host is refused.
func WithEndpoint(endpoint string) Option {
	return func(c *options) {
		if err := checkEndpoint(endpoint); err != nil {
			c.errs = append(c.errs, err)
			return
		}
		c.endpoint, c.endpointSet = endpoint, true
	}
}

// checkEndpoint refuses an endpoint that is not plain HTTP on loopback.
// Errors quote the host, not the whole URL, which might hold a password.
func checkEndpoint(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return fmt.Errorf("%w: WithEndpoint: not a URL", ErrInvalidOption)
	}
	switch {
	case u.User != nil:
		return fmt.Errorf("%w: WithEndpoint: the URL has user information (not shown); the agent takes its token in a header", ErrInvalidOption)
	case u.Scheme != "http":
		return fmt.Errorf("%w: WithEndpoint: scheme %q; the agent serves plain http on loopback", ErrInvalidOption, u.Scheme)
	case u.Opaque != "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("%w: WithEndpoint: want the agent's base URL, such as %s, without a path or query", ErrInvalidOption, DefaultEndpoint)
	}
	host := u.Hostname()
	if host != "localhost" {
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("%w: WithEndpoint: host %q is not localhost or a loopback address; the agent listens on loopback only, and the token and the secret would cross the network in the clear", ErrInvalidOption, host)
		}
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%w: WithEndpoint: port %q is out of range 1..65535", ErrInvalidOption, p)
		}
	}
	return nil
}

// WithHTTPClient sets the HTTP client for the agent's requests. The source
// uses a copy that does not follow redirects (the token must reach the
// agent only); its transport should not use a proxy. The default client
// uses no proxy and no keep-alive: requests are a few per rotation, and an
// idle connection would count against the agent's max_conn and go stale
// when the agent restarts.
func WithHTTPClient(client *http.Client) Option {
	return func(c *options) {
		if client == nil {
			c.invalid("WithHTTPClient: nil client")
			return
		}
		c.client = client
	}
}

// WithToken sets the agent's token, instead of looking for it (see the
// package documentation). It is sent as is (surrounding whitespace
// removed) and never logged or put in an error.
func WithToken(token string) Option {
	return func(c *options) {
		c.tokenSet |= 1
		t, err := cleanToken(token, "WithToken's token")
		if err != nil {
			c.errs = append(c.errs, fmt.Errorf("%w: %w", ErrInvalidOption, err))
			return
		}
		c.token = tokenFinder{fixed: t, hasFixed: true}
	}
}

// WithTokenFile reads the agent's token from path, instead of looking for
// it; the file is read anew for every request, so a token the agent
// changed when it restarted is picked up.
func WithTokenFile(path string) Option {
	return func(c *options) {
		c.tokenSet |= 2
		if path == "" {
			c.invalid("WithTokenFile: empty path")
			return
		}
		c.token = tokenFinder{file: path}
	}
}

// WithKeys names the JSON keys that hold each part of the credential, for
// secrets that do not use the RDS key names. Zero fields of keys mean
// [secrets.DefaultKeys].
func WithKeys(keys secrets.Keys) Option {
	return func(c *options) { c.keys = keys }
}

// WithLogger sends the source's events to l at Debug level: each request
// with its staging label, refreshNow and the version answered, and why
// there was no pending credential. Tokens and secret values are never
// logged. The default discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(c *options) {
		if l == nil {
			c.invalid("WithLogger: nil logger")
			return
		}
		c.logger = l
	}
}

// WithVersionStage makes Fetch read the version with staging label stage
// instead of AWSCURRENT. FetchPending still reads AWSPENDING.
func WithVersionStage(stage string) Option {
	return func(c *options) {
		if n := len(stage); n < 1 || n > 256 {
			c.invalid("WithVersionStage: a staging label must be 1 to 256 characters long, got %d", n)
			return
		}
		c.stage = stage
	}
}

// withTokenDiscovery replaces the environment and the default token file
// that the token discovery reads, for tests.
func withTokenDiscovery(getenv func(string) string, defaultFile string) Option {
	return func(c *options) { c.token.getenv, c.token.defaultFile = getenv, defaultFile }
}
