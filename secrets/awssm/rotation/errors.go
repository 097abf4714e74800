package rotation

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors, matched with errors.Is. The errors the steps return are
// *StepError values that wrap one of these or an error of the SDK or of the
// database driver.
var (
	// ErrInvalidOptions means the Options given to New cannot be used. Every
	// method of the Rotator returns it.
	ErrInvalidOptions = errors.New("rotation: invalid options")

	// ErrRotationNotEnabled means DescribeSecret says rotation is not
	// enabled for the secret; the steps refuse to run, as AWS's rotation
	// functions do.
	ErrRotationNotEnabled = errors.New("rotation: rotation is not enabled for the secret")

	// ErrNotPending means the step's token does not name a version of the
	// secret, or names one without the AWSPENDING staging label.
	ErrNotPending = errors.New("rotation: version is not AWSPENDING")

	// ErrMalformedSecret means a secret value could not be used: not a JSON
	// object, a required field missing, another engine than PostgreSQL, or
	// a username that cannot be alternated. The message names the field,
	// never its value.
	ErrMalformedSecret = errors.New("rotation: unusable secret value")

	// ErrSecretMismatch means two secrets that must describe the same login
	// or the same database do not: the username or host of AWSPENDING and
	// AWSCURRENT in a single-user rotation, or the host of the master secret
	// and of the user's secret in an alternating-users rotation.
	ErrSecretMismatch = errors.New("rotation: secrets do not match")

	// ErrNoMasterSecret means an alternating-users rotation has no master
	// secret: Options.MasterSecretID is empty and the secret has no
	// masterarn field.
	ErrNoMasterSecret = errors.New("rotation: no master secret for the alternating-users strategy")

	// ErrLoginFailed means the database refused every credential a step
	// could log in with. The driver's error (a *pq.Error with SQLSTATE
	// 28P01 or 28000) is wrapped as well.
	ErrLoginFailed = errors.New("rotation: cannot log in to the database")

	// ErrPasswordPolicy means GetRandomPassword returned a password that
	// breaks the requested length or contains an excluded character.
	ErrPasswordPolicy = errors.New("rotation: generated password breaks the password policy")
)

// StepError is the error of one rotation step: which step failed, for which
// secret and version, and why. Err keeps the underlying error (a sentinel
// of this package, an SDK error, a *pq.Error) reachable with errors.Is and
// errors.As. No secret value appears in Error().
type StepError struct {
	// Step is the step that failed, or 0 if the rotation failed before
	// any step ran (in Start).
	Step Step
	// SecretID is the secret as the caller named it.
	SecretID string
	// Token is the ClientRequestToken (the new version's id), if known.
	Token string
	// Err is the cause.
	Err error
}

func (e *StepError) Error() string {
	var b strings.Builder
	b.WriteString("rotation: ")
	if e.Step.valid() {
		b.WriteString(e.Step.String())
	} else {
		b.WriteString("start")
	}
	fmt.Fprintf(&b, " of secret %q", e.SecretID)
	if e.Token != "" {
		fmt.Fprintf(&b, " version %s", e.Token)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns the cause.
func (e *StepError) Unwrap() error { return e.Err }

// redactedError hides values in the message of an error that did not come
// from this package (a driver error, say) while keeping it reachable with
// errors.As.
type redactedError struct {
	msg string
	err error
}

func (r *redactedError) Error() string { return r.msg }
func (r *redactedError) Unwrap() error { return r.err }

// redact returns err with every occurrence of the given secret values
// replaced in its message. No error this package builds contains a secret
// value; this is a second line of defence for messages of the SDK and the
// driver, which this package does not control.
func redact(err error, values ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	changed := false
	for _, v := range values {
		if v != "" && strings.Contains(msg, v) {
			msg = strings.ReplaceAll(msg, v, "[REDACTED]")
			changed = true
		}
	}
	if !changed {
		return err
	}
	return &redactedError{msg: msg, err: err}
}
