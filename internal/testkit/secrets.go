package testkit

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// Removed is what Redact puts in place of a secret.
const Removed = "[SECRET REMOVED BY THE TEST]"

// Secrets is the set of secret values a test has made or met (passwords,
// tokens), for the checks that none is ever printed. The zero value is an
// empty set; it is safe for concurrent use.
type Secrets struct {
	mu   sync.Mutex
	vals []string
}

// Add adds values to the set; empty ones are skipped.
func (s *Secrets) Add(values ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range values {
		if v != "" {
			s.vals = append(s.vals, v)
		}
	}
}

// Keep adds value to the set and returns it, for a secret made in passing:
// pw := known.Keep(pgtest.RandomPassword(t)).
func (s *Secrets) Keep(value string) string {
	s.Add(value)
	return value
}

// List returns the values added so far.
func (s *Secrets) List() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.vals...)
}

// In reports whether text contains one of the values.
func (s *Secrets) In(text string) bool {
	for _, v := range s.List() {
		if strings.Contains(text, v) {
			return true
		}
	}
	return false
}

// AssertNone fails t if text contains one of the values, saying what the
// text was and how long, never the text itself.
func (s *Secrets) AssertNone(t testing.TB, what, text string) {
	t.Helper()
	if s.In(text) {
		t.Errorf("%s contains a secret (%d bytes of text)", what, len(text))
	}
}

// Redact returns text with every one of secrets replaced by [Removed].
func Redact(text string, secrets []string) string {
	for _, v := range secrets {
		if v != "" {
			text = strings.ReplaceAll(text, v, Removed)
		}
	}
	return text
}

// NewJSONLogger returns a logger that records everything, Debug included,
// as JSON lines in the returned buffer.
func NewJSONLogger() (*slog.Logger, *LogBuffer) {
	buf := new(LogBuffer)
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// failureLogLines is how many of its last lines LogOnFailure shows.
const failureLogLines = 60

// LogOnFailure makes t log, when it ends failed, the last lines of l above
// Debug level (l holding JSON lines, as from NewJSONLogger), with every
// value secrets then returns replaced by [Removed]: the tests fail if a
// log holds a secret, but the failure report must not spread it. what
// names the log.
func (l *LogBuffer) LogOnFailure(t testing.TB, what string, secrets func() []string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		var lines []string
		for line := range strings.Lines(l.String()) {
			if !strings.Contains(line, `"level":"DEBUG"`) {
				lines = append(lines, line)
			}
		}
		if len(lines) > failureLogLines {
			lines = append([]string{"...\n"}, lines[len(lines)-failureLogLines:]...)
		}
		t.Logf("%s (Info and above, secrets removed):\n%s", what, Redact(strings.Join(lines, ""), secrets()))
	})
}
