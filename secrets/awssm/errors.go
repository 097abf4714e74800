package awssm

import (
	"strconv"
	"strings"
)

// Error reports a failed [Source.Fetch] or [Source.FetchPending]. Its text
// names the secret, the staging label and the version, never the secret's
// value, for example:
//
//	awssm: Fetch secret "prod/app/db" AWSCURRENT version 3f1c...: secrets: credential has an empty password: field "password" is missing or null
type Error struct {
	// SecretID is the secret's name or ARN as given to New.
	SecretID string
	// Op is the method that failed: "Fetch" or "FetchPending".
	Op string
	// Stage is the staging label that was read, such as "AWSCURRENT".
	Stage string
	// VersionID is the id of the version that was read, when the failure
	// came after GetSecretValue answered; empty otherwise.
	VersionID string
	// Err is the cause: the SDK's error, or an error wrapping
	// secrets.ErrMalformed, secrets.ErrEmptyPassword or
	// secrets.ErrNoPending.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("awssm: ")
	b.WriteString(e.Op)
	b.WriteString(" secret ")
	b.WriteString(strconv.Quote(e.SecretID))
	if e.Stage != "" {
		b.WriteString(" ")
		b.WriteString(e.Stage)
	}
	if e.VersionID != "" {
		b.WriteString(" version ")
		b.WriteString(e.VersionID)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the cause, so that errors.Is and errors.As reach the SDK's
// error and the secrets package's sentinels.
func (e *Error) Unwrap() error { return e.Err }
