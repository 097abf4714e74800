package main

import (
	"slices"
	"testing"
	"time"
)

// The document's bound for the lagging store is derived from the default
// backoff: re-checks at 0.1, 0.3, 0.7 and 1.5 s, the last one the first
// step after the 1 s lag.
func TestLagRechecks(t *testing.T) {
	want := []time.Duration{100 * time.Millisecond, 300 * time.Millisecond, 700 * time.Millisecond, 1500 * time.Millisecond}
	if got := lagRechecks(); !slices.Equal(got, want) {
		t.Fatalf("lagRechecks() = %v, want %v", got, want)
	}
	if got := seconds(want); got != "0.1, 0.3, 0.7 and 1.5" {
		t.Fatalf("seconds = %q", got)
	}
}
