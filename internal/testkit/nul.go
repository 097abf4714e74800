package testkit

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// NULValue is a secret value with a NUL byte in the middle, for tests that
// every source refuses such a value. Both sides of the NUL are distinctive,
// so that ShowsNULValue finds either of them in an error text however the
// value was quoted or escaped there.
const NULValue = nulLeft + "\x00" + nulRight

const (
	nulLeft  = "Nul-Left-7f3a"
	nulRight = "Nul-Right-9c1e"
)

// ShowsNULValue reports whether s holds any part of NULValue. A test that
// finds it true must say so without printing s.
func ShowsNULValue(s string) bool {
	return strings.Contains(s, nulLeft) || strings.Contains(s, nulRight)
}

// WantNULRefused fails the test unless err wraps malformed (the caller's
// secrets.ErrMalformed: this package cannot import secrets, whose own tests
// use it) and its text contains want, and unless no formatting of err holds
// a part of NULValue. It never prints a value: when the error text holds
// one, it says so without printing the text. what names the call in
// failure messages.
func WantNULRefused(t testing.TB, what string, err, malformed error, want string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: no error, want one wrapping %v", what, malformed)
	case ShowsNULValue(err.Error()) || ShowsNULValue(fmt.Sprintf("%+v", err)) || ShowsNULValue(fmt.Sprintf("%#v", err)):
		t.Errorf("%s: the error text holds the value (text withheld)", what)
	case !errors.Is(err, malformed):
		t.Errorf("%s: error %q does not wrap %v", what, err, malformed)
	case !strings.Contains(err.Error(), want):
		t.Errorf("%s: error %q does not contain %q", what, err, want)
	}
}
