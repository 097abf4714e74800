package smagent

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
)

var (
	// ErrBadToken means the agent answered 403: the request's token was
	// missing or not the agent's (see the package documentation for where
	// the token comes from). An [*AgentError] with StatusCode 403 matches
	// it with errors.Is.
	ErrBadToken = errors.New("smagent: the agent refused the token (HTTP 403)")

	// ErrTooManyConnections means the agent answered 429: it was serving
	// as many connections as its max_conn allows. It matches an
	// [*AgentError] with StatusCode 429.
	ErrTooManyConnections = errors.New("smagent: the agent is over its connection limit (HTTP 429)")

	// ErrAgentTimeout means the agent answered 504: its call to Secrets
	// Manager timed out. It matches an [*AgentError] with StatusCode 504.
	ErrAgentTimeout = errors.New("smagent: the agent's call to Secrets Manager timed out (HTTP 504)")

	// ErrAgentUnreachable means no HTTP answer came from the agent's
	// endpoint: nothing listens there (the agent is down or not installed),
	// or the connection failed. The network error is wrapped too.
	ErrAgentUnreachable = errors.New("smagent: the agent did not answer")

	// ErrNoToken means no token was found in any of the places the source
	// looks (see the package documentation).
	ErrNoToken = errors.New("smagent: no agent token found")

	// ErrInvalidOption means an [Option] was given an unusable value. [New]
	// returns every such problem joined in one error.
	ErrInvalidOption = errors.New("smagent: invalid option")
)

// AgentError is an answer from the agent other than 200 OK. For an error
// the agent passes through from Secrets Manager, StatusCode is the
// service's HTTP status and Code its error code (the __type of the body),
// for example 400 and "ResourceNotFoundException", 400 and
// "ThrottlingException" or 500 and "InternalServiceError"; the agent's own
// failures have codes too (504 "TimeoutError", 502 "ConnectionError", 500
// "InternalFailure"). Its refusals have a plain-text body and no Code: 403
// "Bad Token", 429 "Connection limit exceeded", 400 for a malformed
// request.
//
// errors.Is matches [ErrBadToken] for 403, [ErrTooManyConnections] for 429
// and [ErrAgentTimeout] for 504.
type AgentError struct {
	StatusCode int
	// Code is the error code of a JSON error body, without any
	// "namespace#" prefix; empty for a plain-text body.
	Code string
	// Message is the body's message, or its text, shortened to 200 bytes,
	// with control characters replaced and the request's token removed.
	Message string
	// TokenSource names where the request's token came from, such as
	// "AWS_TOKEN" or "file /var/run/awssmatoken" (never the token).
	TokenSource string
}

func (e *AgentError) Error() string {
	var b strings.Builder
	b.WriteString("the agent answered HTTP ")
	b.WriteString(strconv.Itoa(e.StatusCode))
	if t := http.StatusText(e.StatusCode); t != "" {
		b.WriteString(" ")
		b.WriteString(t)
	}
	switch {
	case e.Code != "" && e.Message != "":
		b.WriteString(": ")
		b.WriteString(e.Code)
		b.WriteString(": ")
		b.WriteString(e.Message)
	case e.Code != "":
		b.WriteString(": ")
		b.WriteString(e.Code)
	case e.Message != "":
		b.WriteString(" (")
		b.WriteString(e.Message)
		b.WriteString(")")
	}
	if e.StatusCode == http.StatusForbidden && e.TokenSource != "" {
		b.WriteString("; it refused the token from ")
		b.WriteString(e.TokenSource)
	}
	return b.String()
}

// Is reports whether target is the sentinel for e's status.
func (e *AgentError) Is(target error) bool {
	switch e.StatusCode {
	case http.StatusForbidden:
		return target == ErrBadToken
	case http.StatusTooManyRequests:
		return target == ErrTooManyConnections
	case http.StatusGatewayTimeout:
		return target == ErrAgentTimeout
	}
	return false
}

// notFound reports whether e is Secrets Manager's ResourceNotFoundException:
// no such secret, no version with that label, or a version with no value.
func (e *AgentError) notFound() bool { return e.Code == "ResourceNotFoundException" }

// Values of [Error].Op.
const (
	OpFetch        = "Fetch"
	OpFetchPending = "FetchPending"
)

// Error reports a failed [Source.Fetch] or [Source.FetchPending]. Its text
// names the secret, the staging label, whether the agent was asked to
// refresh, and the version once known, never a secret value or the token,
// for example:
//
//	smagent: Fetch secret "prod/app/db" AWSCURRENT: the agent answered HTTP 403 Forbidden (Bad Token); it refused the token from file /var/run/awssmatoken
type Error struct {
	// SecretID is the secret's name or ARN as given to New.
	SecretID string
	// Op is the method that failed: "Fetch" or "FetchPending".
	Op string
	// Stage is the staging label that was read.
	Stage string
	// RefreshNow reports that the failed request asked the agent to skip
	// its cache.
	RefreshNow bool
	// VersionID is the id of the version that was read, when the failure
	// came after the agent answered; empty otherwise.
	VersionID string
	// Err is the cause: an [*AgentError], an error wrapping
	// [ErrAgentUnreachable] and the network error (or the context's error),
	// [ErrNoToken] or a token file's error, or an error wrapping
	// secrets.ErrMalformed, secrets.ErrEmptyPassword or
	// secrets.ErrNoPending.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("smagent: ")
	b.WriteString(e.Op)
	b.WriteString(" secret ")
	b.WriteString(strconv.Quote(e.SecretID))
	if e.Stage != "" {
		b.WriteString(" ")
		b.WriteString(e.Stage)
	}
	if e.RefreshNow {
		b.WriteString(" (refreshNow)")
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

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }
