package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// fleetRefreshLines are BenchmarkFleet/refresh results for both fleet
// sizes with the given calls per interval, latest first refresh and rate
// after the first round (per fleet of 100; ten times that for 1,000).
func fleetRefreshLines(perInterval, latest, after float64) string {
	var b strings.Builder
	for _, n := range fleetSizes {
		fmt.Fprintf(&b, "BenchmarkFleet/refresh/processes=%d-2 1 %g after-first-round-req/s %g first-offset-max-s %g refresh-calls/process/interval\n",
			n, after*float64(n)/100, latest, perInterval)
	}
	return b.String()
}

// The refresh section's judgements follow the figures: the finding, its
// diagnosis and the late-refresh paragraph appear only when the figures
// call for them, and the document is written even with nothing measured.
func TestDocumentJudgementsFollowTheFigures(t *testing.T) {
	for _, c := range []struct {
		name, lines string
		want, not   []string
	}{{
		name:  "as designed",
		lines: fleetRefreshLines(0.667, 2.2, 28),
		want:  []string{"2 to 3 periodic calls in the run, 0.667 to 1 per interval", "one call per process per interval: 0.667 per interval | met |"},
		not:   []string{"**Finding", "first refreshes came later", "**not met**"},
	}, {
		name:  "polling at the backoff's pace",
		lines: fleetRefreshLines(5.2, 2.6, 950),
		want: []string{"later than 2.2 s (up to 2.60 s): by then the processes that had refreshed first were polling",
			"**Finding: periodic refresh does not wait", "5.20 calls per interval", "about 9.50 times per second", "once every 105 ms: the pace of the connector's store steps (`DefaultMinBackoff`, 100 ms)",
			"a fleet of about 1,053 processes"},
		not: []string{"nextRefreshIn", "it sent"},
	}, {
		name:  "polling, at another pace",
		lines: fleetRefreshLines(2, 2.2, 100),
		want:  []string{"**Finding", "about 1 times per second", "once every 1,000 ms."},
		not:   []string{"DefaultMinBackoff", "first refreshes came later"},
	}, {
		name:  "late first refreshes without a finding",
		lines: fleetRefreshLines(0.667, 2.5, 28),
		want:  []string{"later than 2.2 s (up to 2.50 s): this ?-CPU machine"},
		not:   []string{"finding below", "**Finding"},
	}, {
		name: "the agent's host",
		lines: "BenchmarkAgentStoreCalls/mode=agent-ttl-1s-2 1 1.333 DescribeSecret/rotation 1.667 GetSecretValue/rotation 16.00 agent-requests/rotation 0 failed-statements 1.000 first-rotation-calls 0 refreshNow/rotation 16.00 source-calls/rotation\n" +
			"BenchmarkAgentStoreCalls/mode=agent-ttl-1s-2 1 1.333 DescribeSecret/rotation 2 GetSecretValue/rotation 16.00 agent-requests/rotation 0 failed-statements 1.000 first-rotation-calls 0 refreshNow/rotation 16.00 source-calls/rotation\n",
		want: []string{"| agent, TTL 1 s (rotations beyond the TTL) | 1.83 (1.67–2) | 1.33 | 1 | 16 | 0 | 16 | 0 |",
			"| direct (`awssm`) | not measured |"},
	}, {
		name: "nothing measured",
		want: []string{"# Benchmarks", "## How to rerun", "not measured"},
	}} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("BENCH_NPROC", "")
			r := &results{vals: map[string]map[string][]float64{}}
			if err := parse(strings.NewReader(c.lines), r); err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			write(&b, r, "go test ./benchmarks/")
			out := b.String()
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("document lacks %q", w)
				}
			}
			for _, w := range c.not {
				if strings.Contains(out, w) {
					t.Errorf("document has %q", w)
				}
			}
		})
	}
}
