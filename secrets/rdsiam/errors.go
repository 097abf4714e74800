package rdsiam

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
)

// Values of [Error].Op.
const (
	// OpRetrieveCredentials is getting the AWS credentials the token is
	// signed with from the credentials provider (the only step that may use
	// the network).
	OpRetrieveCredentials = "RetrieveCredentials"
	// OpBuildToken is signing the token, which is local.
	OpBuildToken = "BuildAuthToken"
)

var (
	// ErrNoAccessKey means the credentials provider returned credentials
	// without an access key id or secret access key (anonymous
	// credentials), which cannot sign a token.
	ErrNoAccessKey = errors.New("rdsiam: the AWS credentials have no access key")

	// ErrCredentialsExpired means the credentials provider returned
	// credentials that had already expired, even after it was asked to
	// refresh them: a token signed with them would be refused.
	ErrCredentialsExpired = errors.New("rdsiam: the AWS credentials have expired")
)

// Error reports a failed [Source.Fetch]. Its text names the database user,
// the endpoint and the region the token was for and the step that failed,
// never the token or a credential, for example:
//
//	rdsiam: IAM auth token for user "app" at db.example.us-east-1.rds.amazonaws.com:5432 (us-east-1): RetrieveCredentials: failed to refresh cached credentials, ...
type Error struct {
	// Op is the step that failed: OpRetrieveCredentials or OpBuildToken.
	Op string
	// User, Endpoint ("host:port") and Region are what the token was for.
	User, Endpoint, Region string
	// Err is the cause: the credentials provider's or the SDK's error (so
	// that errors.As finds, say, *aws.RetrieveError or a smithy.APIError
	// from STS, and errors.Is finds context.DeadlineExceeded), or
	// ErrNoAccessKey or ErrCredentialsExpired.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("rdsiam: IAM auth token for user ")
	b.WriteString(strconv.Quote(e.User))
	b.WriteString(" at ")
	b.WriteString(e.Endpoint)
	b.WriteString(" (")
	b.WriteString(e.Region)
	b.WriteString("): ")
	b.WriteString(e.Op)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the cause, so that errors.Is and errors.As reach the SDK's
// error and this package's sentinels.
func (e *Error) Unwrap() error { return e.Err }

// errProcessOutputWithheld replaces the process output that the SDK's
// credential_process provider quotes when it cannot parse it.
var errProcessOutputWithheld = errors.New("parse failed of process output (the output is withheld: it may hold the secret access key)")

// redactProviderError keeps the SDK's credential errors as they are except
// the one that quotes a secret: the credential_process provider's parse
// failure, whose message holds the process's whole output (the
// SecretAccessKey and SessionToken included, when the JSON is only
// truncated or mistyped). Its text is replaced by the same text without
// the output, and its chain by a *processcreds.ProviderError that errors.As
// still finds, wrapping the JSON decoder's error (which names a position or
// a type, never a value).
func redactProviderError(err error) error {
	var pe *processcreds.ProviderError
	if !errors.As(err, &pe) || pe.Err == nil || !strings.HasPrefix(pe.Err.Error(), "parse failed of process output") {
		return err
	}
	clean := &processcreds.ProviderError{Err: errProcessOutputWithheld}
	if inner := errors.Unwrap(pe.Err); inner != nil {
		clean.Err = fmt.Errorf("%w: %w", errProcessOutputWithheld, inner)
	}
	msg := err.Error()
	if i := strings.Index(msg, pe.Error()); i >= 0 {
		// Keep what the wrappers above it said ("failed to refresh cached
		// credentials, ...").
		msg = msg[:i] + clean.Error()
	} else {
		msg = clean.Error()
	}
	return &withheldError{msg: msg, cause: clean}
}

// withheldError is an error whose text was rewritten to leave a secret out.
type withheldError struct {
	msg   string
	cause error
}

func (e *withheldError) Error() string { return e.msg }
func (e *withheldError) Unwrap() error { return e.cause }
