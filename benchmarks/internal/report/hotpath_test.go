package main

import (
	"strings"
	"testing"
)

// The document's verdicts on the pgx no-op path follow the figures: the
// finding and the proposal appear when the pgx path allocates or is over
// the target, not otherwise; and the real-login verdict reads the
// benchmark's own names (driver=, ctx=).
func TestHotPathVerdicts(t *testing.T) {
	const direct = "BenchmarkConnectCachedPgx/ctx=background/direct-2 1000 2.0 ns/op 0 B/op 0 allocs/op\n"
	for _, c := range []struct {
		name, lines string
		want        string
		verdict     string
	}{
		{"allocates", direct +
			"BenchmarkConnectCachedPgx/ctx=background/rotating-driver-2 1000 10 ns/op 0 B/op 0 allocs/op\n" +
			"BenchmarkConnectCachedPgx/ctx=background/rotating-pgx-2 1000 470 ns/op 272 B/op 4 allocs/op\n",
			"**Finding", "**not met**"},
		{"within", direct +
			"BenchmarkConnectCachedPgx/ctx=background/rotating-driver-2 1000 10 ns/op 0 B/op 0 allocs/op\n" +
			"BenchmarkConnectCachedPgx/ctx=background/rotating-pgx-2 1000 40 ns/op 0 B/op 0 allocs/op\n",
			"within the target", "met"},
		{"missing", "", "Not measured.", "not measured"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &results{vals: map[string]map[string][]float64{}}
			if err := parse(strings.NewReader(c.lines), r); err != nil {
				t.Fatal(err)
			}
			if got := r.pgxFinding(); !strings.Contains(got, c.want) {
				t.Errorf("pgxFinding() = %q, want it to contain %q", got, c.want)
			}
			full := r.noopCost(pgxCachedName("background", "rotating-pgx"), pgxCachedName("background", "direct"))
			if got := full.verdict(); got != c.verdict {
				t.Errorf("verdict = %q, want %q", got, c.verdict)
			}
		})
	}

	r := &results{vals: map[string]map[string][]float64{}}
	lines := "BenchmarkRealConnect/driver=pgx/ctx=deadline-2 500 1 ns/op 100 plain-conns/s 99 rotating-conns/s 0.99 ratio 1.0 median-ratio 1.0 pair-ratio\n" +
		"BenchmarkRealConnect/driver=pq/ctx=deadline-2 500 1 ns/op 100 plain-conns/s 90 rotating-conns/s 0.90 ratio 0.99 median-ratio 0.99 pair-ratio\n"
	if err := parse(strings.NewReader(lines), r); err != nil {
		t.Fatal(err)
	}
	if got := r.hotVerdict("pgx", "deadline"); got != "met" {
		t.Errorf("pgx hotVerdict = %q, want met", got)
	}
	if got := r.hotVerdict("pq", "deadline"); !strings.HasPrefix(got, "**not met** by throughput; met login by login") {
		t.Errorf("pq hotVerdict = %q", got)
	}
	if got := r.hotVerdict("pgx", "background"); got != "not measured" {
		t.Errorf("unmeasured hotVerdict = %q", got)
	}
}
