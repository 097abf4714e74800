package vault

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/hashicorp/vault/api"

	"github.com/pgrotate/rotating/secrets"
)

// Values of [Error].Op: the Vault call, or the local step, that failed.
const (
	// OpRead is a read of a credential: database/static-creds,
	// database/creds or a KV version 2 secret.
	OpRead = "read"
	// OpRenewLease is sys/leases/renew of a dynamic role's lease.
	OpRenewLease = "renew lease"
	// OpLogin is a login with the auth method given to NewClient.
	OpLogin = "login"
	// OpLookupSelf is auth/token/lookup-self, which tells the token's TTL.
	OpLookupSelf = "lookup-self"
	// OpRenewSelf is auth/token/renew-self.
	OpRenewSelf = "renew-self"
	// OpTokenFile is reading the token file given to WithTokenFile.
	OpTokenFile = "read token file"
	// OpFetchPending is a FetchPending that found nothing to offer.
	OpFetchPending = "FetchPending"
)

var (
	// ErrSealed matches (with errors.Is) an [*Error] for an answer with
	// HTTP status 503: Vault is sealed, or not ready to serve.
	ErrSealed = errors.New("vault: sealed or unavailable")
	// ErrPermissionDenied matches an [*Error] for an answer with HTTP
	// status 403: the token is not allowed the path, or is not valid
	// (expired, revoked, or from another cluster).
	ErrPermissionDenied = errors.New("vault: permission denied")
	// ErrNotFound matches an [*Error] for an answer with HTTP status 404:
	// no such role, mount or secret (or a KV version that is deleted or
	// destroyed).
	ErrNotFound = errors.New("vault: not found")
	// ErrNoToken means the token file is empty: Vault Agent has not
	// written a token yet.
	ErrNoToken = errors.New("vault: no token")
	// ErrInvalidOption means an option was given an unusable value.
	// Constructors return every such problem joined in one error.
	ErrInvalidOption = errors.New("vault: invalid option")
)

// Error reports a failed Vault call or a Vault answer that is not a usable
// credential. Its text names the operation, the Vault path (or the token
// file) and, for a dynamic role, the lease id; never a token, a password or
// a secret id. For example:
//
//	vault: read database/creds/app: 403 permission denied
//	vault: read database/static-creds/app: secrets: malformed secret: data.password is a number, want a string
type Error struct {
	// Op is what failed: one of the Op constants.
	Op string
	// Path is the Vault path without the /v1/ prefix, such as
	// "database/creds/app" or "sys/leases/renew", or the token file's
	// path for OpTokenFile.
	Path string
	// LeaseID is the lease concerned, for OpRenewLease. Vault lease ids
	// are not secrets.
	LeaseID string
	// StatusCode is the HTTP status of Vault's answer, or 0 when there was
	// none (network error, context done) or the answer was a success that
	// could not be used.
	StatusCode int
	// Err is the cause: the client's error (an *api.ResponseError for an
	// error answer, a *url.Error for a network failure, a context error),
	// or an error wrapping secrets.ErrMalformed, secrets.ErrEmptyPassword,
	// secrets.ErrNoPending or ErrNoToken.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("vault: ")
	b.WriteString(e.Op)
	if e.Path != "" {
		b.WriteString(" ")
		b.WriteString(e.Path)
	}
	if e.LeaseID != "" {
		b.WriteString(" lease ")
		b.WriteString(e.LeaseID)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(describeCause(e.Err))
	}
	return b.String()
}

// Unwrap returns the cause, so that errors.As reaches *api.ResponseError
// and errors.Is the secrets package's sentinels and context errors.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel for e's status code
// (ErrSealed, ErrPermissionDenied, ErrNotFound).
func (e *Error) Is(target error) bool {
	switch target {
	case ErrSealed:
		return e.StatusCode == http.StatusServiceUnavailable
	case ErrPermissionDenied:
		return e.StatusCode == http.StatusForbidden
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	}
	return false
}

// describeCause is the text of a cause in an Error. An *api.ResponseError's
// own text spans lines and quotes the request URL and, for an answer that
// is not JSON, the whole body (a proxy's page, say); this keeps the status
// and Vault's error messages only.
func describeCause(err error) string {
	var re *api.ResponseError
	if !errors.As(err, &re) {
		return err.Error()
	}
	var b strings.Builder
	b.WriteString(strconv.Itoa(re.StatusCode))
	switch {
	case re.RawError:
		n := 0
		if len(re.Errors) > 0 {
			n = len(re.Errors[0])
		}
		fmt.Fprintf(&b, " (an answer that is not Vault's JSON, %d bytes, withheld)", n)
	case len(re.Errors) == 0:
		if t := http.StatusText(re.StatusCode); t != "" {
			b.WriteString(" ")
			b.WriteString(strings.ToLower(t))
		}
	default:
		b.WriteString(" ")
		b.WriteString(strings.Join(re.Errors, "; "))
	}
	return b.String()
}

// statusOf returns the HTTP status of Vault's answer in err, or 0.
func statusOf(err error) int {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// errUnparsedAnswer replaces a JSON decoding error of the client: its text
// can quote a character of the answer, which may hold a token.
var errUnparsedAnswer = fmt.Errorf("%w: the answer is not valid JSON", secrets.ErrMalformed)

// sanitize replaces a decoding error of the client's (which may quote part
// of an answer holding a token) with one that does not.
func sanitize(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	if errors.As(err, &se) || errors.As(err, &te) {
		return errUnparsedAnswer
	}
	return err
}

// newError builds the Error for a failed call at path.
func newError(op, path string, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e // a token step failed on the way; it names itself
	}
	err = sanitize(err)
	return &Error{Op: op, Path: path, StatusCode: statusOf(err), Err: err}
}
