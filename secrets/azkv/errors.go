package azkv

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
)

// Sentinels that an [*Error] matches with errors.Is, by what Key Vault
// answered.
var (
	// ErrDisabled means the version read is disabled: Key Vault answered
	// 403 with the inner error code SecretDisabled (or a compatible store
	// returned the version marked disabled). GetSecret without a version
	// reads the newest version even when it is disabled; enable it, or add
	// a new version, to recover.
	ErrDisabled = errors.New("azkv: the secret version is disabled")
	// ErrNotFound means Key Vault answered 404: no such secret (or it is
	// deleted), or no such version.
	ErrNotFound = errors.New("azkv: secret or version not found")
	// ErrAccessDenied means Key Vault answered 401 (the token was not
	// accepted) or 403 for another reason than a disabled version (no role
	// assignment or access policy allows getting the secret, or a firewall
	// rule).
	ErrAccessDenied = errors.New("azkv: access denied")
	// ErrThrottled means Key Vault answered 429 Too Many Requests.
	ErrThrottled = errors.New("azkv: throttled")
)

// innerSecretDisabled is Key Vault's inner error code for a GetSecret on a
// disabled version.
const innerSecretDisabled = "SecretDisabled"

// maxMessage bounds the part of Key Vault's error message an Error keeps.
const maxMessage = 300

// Error reports a failed [Source.Fetch]. Its text names the vault, the
// secret and the version, and what Key Vault answered, never the secret's
// value or a token, for example:
//
//	azkv: GetSecret "db-app" (latest) from https://myvault.vault.azure.net: HTTP 403 Forbidden (SecretDisabled): Operation get is not allowed on a disabled secret.
type Error struct {
	// Vault is the vault URL given to New; empty for NewFromClient.
	Vault string
	// Name is the secret's name.
	Name string
	// Version is the version asked for (WithVersion) or, once Key Vault
	// answered with one, the version read; empty for the latest before an
	// answer.
	Version string

	// StatusCode is the HTTP status of Key Vault's last answer, or 0 if
	// none came. It is set even when Err is a context error: the fetch
	// timeout may end a call while the client waits to retry a 429.
	StatusCode int
	// Code and InnerCode are Key Vault's error code (Forbidden,
	// SecretNotFound, Throttled, Unauthorized, ...) and inner error code
	// (SecretDisabled, ForbiddenByRbac, ...), when the answer had them.
	Code, InnerCode string
	// Message is the start of Key Vault's error message, on one line.
	// Error answers hold no secret values.
	Message string
	// RetryAfter is the delay a 429 answer asked for, if any.
	RetryAfter time.Duration

	// Err is the cause: an *azcore.ResponseError for an error answer (so
	// errors.As finds it), the transport's or the credential's error
	// (azidentity's *AuthenticationFailedError, say), the context's error,
	// or an error wrapping secrets.ErrMalformed, secrets.ErrEmptyPassword
	// or ErrDisabled for a value that cannot be used.
	Err error
}

// Error returns a one-line description. For an error answer it summarises
// the *azcore.ResponseError, whose own text is several lines long and
// holds the whole answer body.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("azkv: GetSecret ")
	b.WriteString(strconv.Quote(e.Name))
	if e.Version != "" {
		b.WriteString(" version ")
		b.WriteString(e.Version)
	} else {
		b.WriteString(" (latest)")
	}
	if e.Vault != "" {
		b.WriteString(" from ")
		b.WriteString(e.Vault)
	}
	var re *azcore.ResponseError
	isAnswer := errors.As(e.Err, &re)
	if e.StatusCode != 0 && (isAnswer || e.Err == nil) {
		b.WriteString(": ")
		e.writeAnswer(&b)
		return b.String()
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	if e.StatusCode != 0 {
		b.WriteString(" (the last answer was ")
		e.writeAnswer(&b)
		b.WriteString(")")
	}
	return b.String()
}

// writeAnswer describes Key Vault's answer: status, codes, message.
func (e *Error) writeAnswer(b *strings.Builder) {
	b.WriteString("HTTP ")
	b.WriteString(strconv.Itoa(e.StatusCode))
	if text := http.StatusText(e.StatusCode); text != "" {
		b.WriteString(" ")
		b.WriteString(text)
	}
	switch {
	case e.Code != "" && e.InnerCode != "":
		b.WriteString(" (" + e.Code + "/" + e.InnerCode + ")")
	case e.InnerCode != "":
		b.WriteString(" (" + e.InnerCode + ")")
	case e.Code != "" && e.Code != strings.ReplaceAll(http.StatusText(e.StatusCode), " ", ""):
		b.WriteString(" (" + e.Code + ")")
	}
	if e.RetryAfter > 0 {
		b.WriteString(", Retry-After ")
		b.WriteString(e.RetryAfter.String())
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
}

// Unwrap returns the cause, so that errors.As reaches *azcore.ResponseError
// and errors.Is the secrets package's sentinels and context errors.
func (e *Error) Unwrap() error { return e.Err }

// Is matches the package's sentinels by the answer's status and codes.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrDisabled:
		return e.InnerCode == innerSecretDisabled
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrAccessDenied:
		return e.StatusCode == http.StatusUnauthorized ||
			e.StatusCode == http.StatusForbidden && e.InnerCode != innerSecretDisabled
	case ErrThrottled:
		return e.StatusCode == http.StatusTooManyRequests
	}
	return false
}

// describeAnswer fills e's answer fields from resp, Key Vault's last
// answer (nil if none came): the status, the Retry-After, and, for an
// error answer, the codes and message of its body.
func (e *Error) describeAnswer(resp *http.Response) {
	if resp == nil {
		return
	}
	e.StatusCode = resp.StatusCode
	if resp.StatusCode == http.StatusTooManyRequests {
		if secs, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && secs > 0 {
			e.RetryAfter = time.Duration(secs) * time.Second
		}
	}
	if resp.StatusCode < 400 {
		return // a 2xx body holds the secret; never read it for an error
	}
	body, err := runtime.Payload(resp)
	if err != nil || len(body) == 0 {
		return
	}
	var kv struct {
		Error struct {
			Code       string `json:"code"`
			Message    string `json:"message"`
			InnerError struct {
				Code string `json:"code"`
			} `json:"innererror"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &kv) != nil {
		return
	}
	e.Code = oneLine(kv.Error.Code, 64)
	e.InnerCode = oneLine(kv.Error.InnerError.Code, 64)
	e.Message = oneLine(kv.Error.Message, maxMessage)
}

// oneLine returns s with line breaks and other control characters turned
// into spaces, cut to at most n bytes at a rune boundary.
func oneLine(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.TrimSpace(s))
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
