package rdsiam

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/config"
)

// ErrInvalidOption means an [Option] was given an unusable value. [New]
// and [NewFromConfig] return every such problem joined in one error.
var ErrInvalidOption = errors.New("rdsiam: invalid option")

// Option configures a [Source].
type Option func(*options)

type options struct {
	logger      *slog.Logger
	loadOptions []func(*config.LoadOptions) error

	errs []error
}

func defaultOptions() options {
	return options{logger: slog.New(slog.DiscardHandler)}
}

func (o *options) invalid(format string, args ...any) {
	o.errs = append(o.errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...))
}

func (o *options) err() error { return errors.Join(o.errs...) }

// WithLogger sends the source's events to l at Debug level: each token
// built (user, endpoint, region, signing time, expiry and what bounded it,
// the AWS credentials' provider name) and each failure. The token, the
// access key id, the secret access key and the session token are never
// logged. The default discards everything; failures are also returned as
// errors, which the connector logs itself.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l == nil {
			o.invalid("WithLogger: nil logger")
			return
		}
		o.logger = l
	}
}

// WithLoadOptions passes fns to config.LoadDefaultConfig in
// [NewFromConfig], for example config.WithSharedConfigProfile("prod") or
// config.WithRegion("eu-west-1"). [New] ignores it: it is given a
// configuration already.
func WithLoadOptions(fns ...func(*config.LoadOptions) error) Option {
	return func(o *options) {
		for _, fn := range fns {
			if fn == nil {
				o.invalid("WithLoadOptions: nil function")
				return
			}
		}
		o.loadOptions = append(o.loadOptions, fns...)
	}
}
