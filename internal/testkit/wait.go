package testkit

import (
	"context"
	"testing"
	"time"
)

// Sleep waits for d or until ctx ends, and returns ctx's error if it ended
// first. It is the one context-aware sleep of the project's tests and tools.
func Sleep(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// WaitFor polls cond every 5 ms until it holds, failing t after timeout (or
// when ctx ends) with a message naming what it waited for.
func WaitFor(ctx context.Context, t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for !cond() {
		if Sleep(ctx, 5*time.Millisecond) != nil {
			if cond() {
				return
			}
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
	}
}
