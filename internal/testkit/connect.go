package testkit

import (
	"context"
	"database/sql/driver"
	"sync"
	"testing"
	"time"
)

// ConnectAll calls c.Connect from n goroutines at once, each with timeout,
// closes the connections it gets, and returns each call's error and how
// long the slowest call took.
func ConnectAll(ctx context.Context, c driver.Connector, n int, timeout time.Duration) (errs []error, slowest time.Duration) {
	errs = make([]error, n)
	took := make([]time.Duration, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			begin := time.Now()
			conn, err := c.Connect(cctx)
			took[i] = time.Since(begin)
			if conn != nil {
				_ = conn.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, d := range took {
		slowest = max(slowest, d)
	}
	return errs, slowest
}

// ReportProblems runs problems on each of errs (the errors of n calls, as
// from ConnectAll) and fails t once for each problem found, saying how many
// of the calls had it: "3 of 16 concurrent Connects: ...", in the order
// they were first found.
func ReportProblems(t testing.TB, what string, errs []error, problems func(error) []string) {
	t.Helper()
	count := map[string]int{}
	var order []string
	for _, err := range errs {
		for _, p := range problems(err) {
			if count[p]++; count[p] == 1 {
				order = append(order, p)
			}
		}
	}
	for _, p := range order {
		t.Errorf("%d of %d %s: %s", count[p], len(errs), what, p)
	}
}

// CountErrors returns how many of errs are not nil.
func CountErrors(errs []error) int {
	n := 0
	for _, err := range errs {
		if err != nil {
			n++
		}
	}
	return n
}
