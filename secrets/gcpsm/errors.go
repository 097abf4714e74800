package gcpsm

import (
	"errors"
	"strconv"
	"strings"
)

// ErrChecksum means the payload that AccessSecretVersion returned does not
// match the CRC32C checksum the service sent with it (Payload.DataCrc32C):
// the data was corrupted between the service and the application. Neither
// the data nor the checksums are shown.
var ErrChecksum = errors.New("gcpsm: payload checksum mismatch")

// ErrInvalidOption means an [Option] was given an unusable value, or an
// option that the constructor does not take. [New] and [Open] return every
// such problem joined in one error.
var ErrInvalidOption = errors.New("gcpsm: invalid option")

// OpAccess is the value of [Error].Op: the one RPC a [Source] makes.
const OpAccess = "AccessSecretVersion"

// Error reports a failed [Source.Fetch]. Its text names the secret version
// that was asked for and, once the service answered, the version number
// that answered, never the secret's value, for example:
//
//	gcpsm: AccessSecretVersion projects/my-project/secrets/db/versions/latest: rpc error: code = FailedPrecondition desc = Secret Version [projects/123/secrets/db/versions/7] is in DISABLED state.
//	gcpsm: AccessSecretVersion projects/my-project/secrets/db/versions/latest (version 8): secrets: credential has an empty password: field "password" is missing or null
//
// The gRPC status of a failed RPC stays reachable: status.Code(err) and
// status.FromError(err) (from google.golang.org/grpc/status) find it through
// any wrapping, the connector's included, and errors.As finds the client's
// *apierror.APIError. When ctx ended the call, errors.Is(err,
// context.DeadlineExceeded) (or context.Canceled) holds as well, and if it
// ended while the client was waiting to retry, the last attempt's status is
// the one reported.
type Error struct {
	// Op is the RPC that failed: [OpAccess].
	Op string
	// Name is the resource name that was accessed, such as
	// "projects/my-project/secrets/db/versions/latest".
	Name string
	// Version is the number of the version that answered, when the failure
	// came after the answer (a malformed payload, a checksum mismatch);
	// empty otherwise.
	Version string
	// Attempts is how many RPC attempts the call made, the client's own
	// retries included.
	Attempts int
	// Err is the cause: the client's error (an *apierror.APIError carrying
	// the gRPC status), the context's error, or an error wrapping
	// [ErrChecksum], secrets.ErrMalformed or secrets.ErrEmptyPassword.
	Err error

	// ctxErr is the context's error when ctx had ended by the time the call
	// returned and Err does not already wrap it.
	ctxErr error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("gcpsm: ")
	b.WriteString(e.Op)
	b.WriteString(" ")
	b.WriteString(e.Name)
	if e.Version != "" {
		b.WriteString(" (version ")
		b.WriteString(e.Version)
		b.WriteString(")")
	}
	if e.Attempts > 1 {
		b.WriteString(" after ")
		b.WriteString(strconv.Itoa(e.Attempts))
		b.WriteString(" attempts")
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the cause and, when ctx ended the call, the context's
// error, so that errors.Is, errors.As and status.FromError reach both.
func (e *Error) Unwrap() []error {
	if e.ctxErr != nil {
		return []error{e.Err, e.ctxErr}
	}
	return []error{e.Err}
}
