// Package testkit holds small helpers shared by the project's tests.
package testkit

import (
	"bytes"
	"strings"
	"sync"
)

// LogBuffer collects log output (a slog handler's writer, say); it is safe
// for concurrent use.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// CountLines returns how many lines of the output satisfy match.
func (l *LogBuffer) CountLines(match func(line string) bool) int {
	n := 0
	for line := range strings.Lines(l.String()) {
		if match(line) {
			n++
		}
	}
	return n
}
