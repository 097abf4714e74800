package awssm

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/pgrotate/rotating/secrets"
)

// ErrInvalidOption means an [Option] was given an unusable value. [New]
// and [NewFromConfig] return every such problem joined in one error.
var ErrInvalidOption = errors.New("awssm: invalid option")

// Option configures a [Source].
type Option func(*options)

type options struct {
	keys   secrets.Keys
	stage  string
	logger *slog.Logger

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

func (c *options) err() error { return errors.Join(c.errs...) }

// WithKeys names the JSON keys that hold each part of the credential, for
// secrets that do not use the RDS key names. Zero fields of keys mean
// [secrets.DefaultKeys].
func WithKeys(keys secrets.Keys) Option {
	return func(c *options) { c.keys = keys }
}

// WithLogger sends the source's events to l at Debug level: each
// GetSecretValue with its staging label and version id, and why there was
// no pending credential. Secret values are never logged. The default
// discards everything. Failures are also returned as errors, which the
// connector logs itself.
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
// instead of AWSCURRENT, for stores that promote versions with labels of
// their own. FetchPending still reads AWSPENDING, and reports no pending
// credential while AWSPENDING is on the same version as stage.
func WithVersionStage(stage string) Option {
	return func(c *options) {
		if n := len(stage); n < 1 || n > 256 {
			c.invalid("WithVersionStage: a staging label must be 1 to 256 characters long, got %d", n)
			return
		}
		c.stage = stage
	}
}
