package testkit

import (
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// Removed is what Redact puts in place of a secret.
const Removed = "[SECRET REMOVED BY THE TEST]"

// Secrets is the set of secret values a test has made or met (passwords,
// tokens), for the checks that none is ever printed, and the shapes of
// those it cannot know one by one. The zero value is an empty set; it is
// safe for concurrent use.
type Secrets struct {
	mu     sync.Mutex
	vals   []string
	shapes []*regexp.Regexp
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

// AddShape adds a pattern matching secrets the test cannot list one by
// one, such as the passwords and tokens a server under test generates
// (vaulttest's passwords are "A1a-" and 16 letters and digits): In,
// AssertNone and Scrub match it as well as the values.
func (s *Secrets) AddShape(re *regexp.Regexp) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shapes = append(s.shapes, re)
}

// List returns the values added so far.
func (s *Secrets) List() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.vals...)
}

// In reports whether text contains one of the values, or a match of one
// of the shapes.
func (s *Secrets) In(text string) bool {
	for _, v := range s.List() {
		if strings.Contains(text, v) {
			return true
		}
	}
	for _, re := range s.shapeList() {
		if re.MatchString(text) {
			return true
		}
	}
	return false
}

// Scrub returns text with every value, and every match of a shape,
// replaced by [Removed].
func (s *Secrets) Scrub(text string) string {
	text = Redact(text, s.List())
	for _, re := range s.shapeList() {
		text = re.ReplaceAllLiteralString(text, Removed)
	}
	return text
}

func (s *Secrets) shapeList() []*regexp.Regexp {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*regexp.Regexp(nil), s.shapes...)
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
	l.logOnFailure(t, what, func(text string) string { return Redact(text, secrets()) })
}

// LogSecretsOnFailure is LogOnFailure with the values and shapes of s
// removed (see Secrets.Scrub).
func (l *LogBuffer) LogSecretsOnFailure(t testing.TB, what string, s *Secrets) {
	l.logOnFailure(t, what, s.Scrub)
}

func (l *LogBuffer) logOnFailure(t testing.TB, what string, scrub func(string) string) {
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
		t.Logf("%s (Info and above, secrets removed):\n%s", what, scrub(strings.Join(lines, "")))
	})
}
