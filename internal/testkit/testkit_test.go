package testkit_test

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgrotate/rotating/internal/testkit"
)

// recorder is a testing.TB that records what a helper reports, so that a
// test can check a helper that fails its test.
type recorder struct {
	testing.TB
	errors, logs []string
	cleanups     []func()
	failed       bool
}

func (r *recorder) Helper()          {}
func (r *recorder) Failed() bool     { return r.failed }
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Logf(format string, args ...any) {
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}
func (r *recorder) Errorf(format string, args ...any) {
	r.failed = true
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) end() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func TestSecrets(t *testing.T) {
	var s testkit.Secrets
	if s.In("anything") || len(s.List()) != 0 {
		t.Fatal("the zero Secrets is not empty")
	}
	s.Add("pw-one", "", "token-two")
	if s.Keep("pw-three") != "pw-three" {
		t.Error("Keep does not return its value")
	}
	if got := strings.Join(s.List(), ","); got != "pw-one,token-two,pw-three" {
		t.Errorf("List() = %q, want the three values in order, without the empty one", got)
	}
	if !s.In("login with token-two failed") || s.In("login failed") || s.In("") {
		t.Error("In does not find exactly the values")
	}

	r := &recorder{TB: t}
	s.AssertNone(r, "the error", "password pw-three rejected")
	if len(r.errors) != 1 || strings.Contains(r.errors[0], "pw-three") || !strings.Contains(r.errors[0], "the error") {
		t.Errorf("AssertNone on a text with a secret reported %q; want one error naming the text, not the secret", r.errors)
	}
	r = &recorder{TB: t}
	s.AssertNone(r, "the error", "password rejected")
	if len(r.errors) != 0 {
		t.Errorf("AssertNone on a clean text reported %q", r.errors)
	}

	if got := testkit.Redact("a pw-one b pw-one c token-two", s.List()); got != "a "+testkit.Removed+" b "+testkit.Removed+" c "+testkit.Removed {
		t.Errorf("Redact = %q", got)
	}
	if got := testkit.Redact("keep", []string{""}); got != "keep" {
		t.Errorf("Redact with an empty secret = %q", got)
	}
}

// TestSecretShapes: secrets the test cannot list (a server's generated
// passwords) are found and removed by their shape, in a failure's log too.
func TestSecretShapes(t *testing.T) {
	var s testkit.Secrets
	s.Add("pw-known")
	if s.In("password A1a-abcdefghijklmnop") {
		t.Fatal("In matched a shape before it was added")
	}
	s.AddShape(regexp.MustCompile(`A1a-[A-Za-z0-9]{16}`))
	if !s.In("password A1a-abcdefghijklmnop") || s.In("password A1a-short") || !s.In("pw-known") {
		t.Error("In does not find exactly the values and the shape's matches")
	}
	got := s.Scrub("A1a-abcdefghijklmnop, pw-known, A1a-short")
	if want := testkit.Removed + ", " + testkit.Removed + ", A1a-short"; got != want {
		t.Errorf("Scrub = %q, want %q", got, want)
	}

	logger, logs := testkit.NewJSONLogger()
	logger.Warn("login rejected", "password", "A1a-ABCDEFGHIJKLMNOP")
	failed := &recorder{TB: t}
	logs.LogSecretsOnFailure(failed, "the log", &s)
	failed.failed = true
	failed.end()
	if len(failed.logs) != 1 || strings.Contains(failed.logs[0], "A1a-ABCDEFGHIJKLMNOP") || !strings.Contains(failed.logs[0], testkit.Removed) {
		t.Errorf("a failed test's log with a generated password: %q", failed.logs)
	}
}

// TestLogOnFailure logs the tail of a failed test's log above Debug, with
// the secrets removed that are known when the test ends, and nothing for a
// test that passed.
func TestLogOnFailure(t *testing.T) {
	logger, logs := testkit.NewJSONLogger()
	for i := range 70 {
		logger.Info("line", "n", i)
		logger.Debug("debug line", "n", i)
	}
	var known testkit.Secrets
	logger.Warn("login rejected", "password", "pw-late")

	passed := &recorder{TB: t}
	logs.LogOnFailure(passed, "the log", known.List)
	passed.end()
	if len(passed.logs) != 0 {
		t.Errorf("a test that passed logged %d times", len(passed.logs))
	}

	failed := &recorder{TB: t}
	logs.LogOnFailure(failed, "the log", known.List)
	known.Add("pw-late") // known only by the time the test ends
	failed.failed = true
	failed.end()
	if len(failed.logs) != 1 {
		t.Fatalf("a failed test logged %d times, want once", len(failed.logs))
	}
	out := failed.logs[0]
	if strings.Contains(out, "pw-late") || !strings.Contains(out, testkit.Removed) {
		t.Error("the logged text holds the secret, or does not say it was removed")
	}
	if strings.Contains(out, "debug line") {
		t.Error("the logged text holds Debug lines")
	}
	lines := strings.Count(out, "\n")
	// A header line, "...", and the last 60 lines.
	if lines < 61 || lines > 62 || !strings.Contains(out, `"n":69`) || strings.Contains(out, `"n":9,`) {
		t.Errorf("the logged text has %d lines, want the last 60 of the log:\n%s", lines, out)
	}
}

// fakeConnector fails every other Connect after a short wait.
type fakeConnector struct {
	calls atomic.Int64
	open  atomic.Int64
}

type fakeConn struct {
	driver.Conn
	c *fakeConnector
}

func (c fakeConn) Close() error { c.c.open.Add(-1); return nil }

func (c *fakeConnector) Connect(ctx context.Context) (driver.Conn, error) {
	n := c.calls.Add(1)
	if n%2 == 0 {
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("call %d refused", n)
	}
	c.open.Add(1)
	return fakeConn{c: c}, nil
}

func (c *fakeConnector) Driver() driver.Driver { return nil }

func TestConnectAll(t *testing.T) {
	c := &fakeConnector{}
	errs, slowest := testkit.ConnectAll(t.Context(), c, 8, 10*time.Second)
	if len(errs) != 8 || c.calls.Load() != 8 {
		t.Fatalf("%d errors for %d calls, want 8 and 8", len(errs), c.calls.Load())
	}
	if n := testkit.CountErrors(errs); n != 4 {
		t.Errorf("CountErrors = %d, want 4", n)
	}
	if c.open.Load() != 0 {
		t.Errorf("%d connections left open", c.open.Load())
	}
	if slowest < 20*time.Millisecond || slowest > 5*time.Second {
		t.Errorf("slowest = %v, want the 20 ms wait (and less than 5 s)", slowest)
	}

	r := &recorder{TB: t}
	testkit.ReportProblems(r, "concurrent Connects", errs, func(err error) []string {
		if err == nil {
			return []string{"succeeded, want an error"}
		}
		return []string{"refused"}
	})
	want := []string{"4 of 8 concurrent Connects: refused", "4 of 8 concurrent Connects: succeeded, want an error"}
	if len(r.errors) != 2 || !(r.errors[0] == want[0] && r.errors[1] == want[1] || r.errors[0] == want[1] && r.errors[1] == want[0]) {
		t.Errorf("ReportProblems reported %q, want %q (once each)", r.errors, want)
	}
	r = &recorder{TB: t}
	testkit.ReportProblems(r, "calls", []error{errors.New("x")}, func(error) []string { return nil })
	if len(r.errors) != 0 {
		t.Errorf("ReportProblems without problems reported %q", r.errors)
	}
}
