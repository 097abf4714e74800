package azkv

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/pgrotate/rotating/secrets"
)

// ErrInvalidOption means an [Option] or an argument of [New] or
// [NewFromClient] was unusable. They return every such problem joined in
// one error.
var ErrInvalidOption = errors.New("azkv: invalid option")

// DefaultRetryOptions returns the retry settings a [Source] gives each
// GetSecret unless [WithRetryOptions] says otherwise: at most two retries
// of a throttled (429), failed (408, 5xx) or unreachable request, 200 ms
// before the first and at most 1 s apart, and a throttled answer whose
// Retry-After asks for more than 1 s returned at once. azcore's own
// defaults (three retries, up to 60 s apart, honouring any Retry-After up
// to 60 s) would keep a fetch waiting past the connector's fetch timeout
// and end it with a bare context error; with these, a fetch ends within
// about 2 s plus the requests' own time, and the connector's backoff
// paces the next attempt.
func DefaultRetryOptions() policy.RetryOptions {
	return policy.RetryOptions{
		MaxRetries:    2,
		RetryDelay:    200 * time.Millisecond,
		MaxRetryDelay: time.Second,
	}
}

// Option configures a [Source].
type Option func(*options)

type options struct {
	version       string
	keys          secrets.Keys
	logger        *slog.Logger
	credential    azcore.TokenCredential
	clientOptions *azsecrets.ClientOptions
	retry         policy.RetryOptions

	errs []error
}

func defaultOptions() options {
	return options{
		logger: slog.New(slog.DiscardHandler),
		retry:  DefaultRetryOptions(),
	}
}

func (c *options) invalid(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...))
}

func (c *options) err() error { return errors.Join(c.errs...) }

// WithVersion pins the source to one version of the secret, by its id (the
// last segment of the version's identifier, 32 hex digits in Key Vault).
// By default every Fetch reads the latest version. A pinned source never
// sees a rotation: use it for a credential that must not change, or to
// hold a version while a new one is tested.
func WithVersion(version string) Option {
	return func(c *options) {
		if !validVersion(version) {
			c.invalid("WithVersion: a version id is 1 to 64 letters and digits, got %d bytes", len(version))
			return
		}
		c.version = version
	}
}

// WithKeys names the JSON keys that hold each part of the credential, for
// secrets that do not use the RDS key names. Zero fields of keys mean
// [secrets.DefaultKeys].
func WithKeys(keys secrets.Keys) Option {
	return func(c *options) { c.keys = keys }
}

// WithLogger sends the source's events to l at Debug level: each GetSecret
// with the secret's name, the version answered and its expiry, or the
// failure. Secret values and tokens are never logged. The default discards
// everything. Failures are also returned as errors, which the connector
// logs itself.
func WithLogger(l *slog.Logger) Option {
	return func(c *options) {
		if l == nil {
			c.invalid("WithLogger: nil logger")
			return
		}
		c.logger = l
	}
}

// WithCredential makes [New] authenticate with cred, such as an
// azidentity.ManagedIdentityCredential for a user-assigned identity or a
// WorkloadIdentityCredential, instead of azidentity's
// DefaultAzureCredential. [NewFromClient] refuses it: the client already
// has its credential.
func WithCredential(cred azcore.TokenCredential) Option {
	return func(c *options) {
		if cred == nil {
			c.invalid("WithCredential: nil credential")
			return
		}
		c.credential = cred
	}
}

// WithClientOptions makes [New] build its azsecrets client with o: a
// transport, a cloud other than Azure's public one, logging, telemetry,
// DisableChallengeResourceVerification. Its Retry field is not used for
// GetSecret, whose retries [WithRetryOptions] sets. [NewFromClient]
// refuses it.
func WithClientOptions(o *azsecrets.ClientOptions) Option {
	return func(c *options) {
		if o == nil {
			c.invalid("WithClientOptions: nil options")
			return
		}
		c.clientOptions = o
	}
}

// WithRetryOptions sets the retries of each GetSecret the source makes, in
// place of [DefaultRetryOptions]. The source applies them per request
// (azcore's policy.WithRetryOptions), so they hold for a client given to
// [NewFromClient] too, whatever it was built with; pass the client's own
// settings to keep them. A zero value means azcore's defaults. Keep the
// total well inside the connector's fetch timeout (rotating.WithFetchTimeout,
// 5 s by default): a fetch the timeout ends reports only the context error
// and the status of the last answer.
func WithRetryOptions(o policy.RetryOptions) Option {
	return func(c *options) { c.retry = o }
}

// validName reports whether name is a Key Vault secret name: 1 to 127
// letters, digits and dashes.
func validName(name string) bool {
	if len(name) < 1 || len(name) > 127 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !isAlnum(name[i]) && name[i] != '-' {
			return false
		}
	}
	return true
}

// validVersion reports whether v can be a version id: Key Vault's are 32
// hex digits; anything alphanumeric up to 64 characters is accepted, so
// that a compatible store's ids work too.
func validVersion(v string) bool {
	if len(v) < 1 || len(v) > 64 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if !isAlnum(v[i]) {
			return false
		}
	}
	return true
}

func isAlnum(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
}
