package gcpsm

import (
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/api/option"

	"github.com/pgrotate/rotating/secrets"
)

// Option configures a [Source].
type Option func(*options)

type options struct {
	keys       secrets.Keys
	logger     *slog.Logger
	clientOpts []option.ClientOption // Open only

	errs []error
}

func defaultOptions() options {
	return options{logger: slog.New(slog.DiscardHandler)}
}

func (c *options) invalid(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...))
}

func (c *options) err() error { return errors.Join(c.errs...) }

// WithKeys names the JSON keys that hold each part of the credential, for
// payloads that do not use the RDS key names. Zero fields of keys mean
// [secrets.DefaultKeys].
func WithKeys(keys secrets.Keys) Option {
	return func(c *options) { c.keys = keys }
}

// WithLogger sends the source's events to l at Debug level: each
// AccessSecretVersion with the resource name, the version number that
// answered and the number of attempts, and each failure with its gRPC code.
// Secret values are never logged. The default discards everything.
// Failures are also returned as errors, which the connector logs itself.
func WithLogger(l *slog.Logger) Option {
	return func(c *options) {
		if l == nil {
			c.invalid("WithLogger: nil logger")
			return
		}
		c.logger = l
	}
}

// WithClientOptions passes opts to secretmanager.NewClient when [Open]
// builds the client: option.WithEndpoint for a regional endpoint
// ("secretmanager.europe-west1.rep.googleapis.com:443"),
// option.WithCredentialsFile, option.WithQuotaProject, and so on. They are
// applied after the ones Open sets itself, so they win. [New], which is
// given a client, refuses this option.
func WithClientOptions(opts ...option.ClientOption) Option {
	return func(c *options) { c.clientOpts = append(c.clientOpts, opts...) }
}
