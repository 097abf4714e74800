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

// The Vault section is built from BenchmarkVaultFleet's and
// BenchmarkVaultLeaseChange's lines, says when it was measured apart, and
// is marked not measured without them; the agent's table is always there.
func TestDocumentVaultSection(t *testing.T) {
	lines := `BenchmarkVaultFleet/role=dynamic/processes=8-2 1 0 failed-queries 16 leases-ended 3 leases/process 12 reads/process/min 0 rejected-logins 4 renewals/lease 4 renewals/lease-max 44.5 renewals/process/min 0 sessions-past-end 1 token-calls/process 8.1 vault-calls/s
BenchmarkVaultFleet/role=dynamic/processes=8-2 1 0 failed-queries 16 leases-ended 3 leases/process 12 reads/process/min 0 rejected-logins 3.5 renewals/lease 4 renewals/lease-max 45 renewals/process/min 0 sessions-past-end 1 token-calls/process 8.0 vault-calls/s
BenchmarkVaultFleet/role=static/processes=32-2 1 0 failed-queries 1.02 reads/rotation/process 1 reads/rotate-role/process 1.042 reads/scheduled/process 1 rejected/rotate-role/process 1 rejected/rotate-role/process-max 0.6979 rejected/scheduled/process 2 rejected/scheduled/process-max 6 rotations 1 token-calls/process
BenchmarkVaultLeaseChange-2 30 150000000 ns/op 30 rounds 3.46 cached-p50-ms 3.6 cached-mean-ms 13443 cached-B/call 130 cached-allocs/call 4.70 new-lease-p50-ms 4.9 new-lease-mean-ms 1.3 new-lease/cached 14354 new-lease-B/call 140 new-lease-allocs/call 9.01 lease-read-p50-ms 5.50 vault-read-p50-ms 0.97 plain-login/cached 14 revoked-early-p50-ms
`
	write := func(lines string) string {
		r := &results{vals: map[string]map[string][]float64{}}
		if err := parse(strings.NewReader(lines), r); err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		write(&b, r, "go test ./secrets/vault/benchmarks/")
		return b.String()
	}
	t.Setenv("BENCH_VAULT_DATE", "")
	out := write(lines)
	for _, w := range []string{
		"## 5. HashiCorp Vault", "2 runs of each benchmark (`-count 2`), in the same session",
		"| 8 | 3 | 3.75 (3.50–4) | 4 | 16 | 12 | 44.8 | 1 | 8.05 | 0 | 0 | 0 |",
		"a lease takes at most 5 renewals", "TTL − margin − 1.25 × lead = 1.19 s",
		"| 32 | 1.02 | 1.04 | 1 | 0.698 | 1 | 2 | 6 | 1 | 0 |",
		"| `new-lease` |", "| 4.70 | 4.90 | 1.30 | 14,354 | 140 |", "an ordinary dial, the new user's first login: 1.30 of the cached login op by op, 4.70 ms against 3.46 ms at the median",
		"(a plain lib/pq login without the connector: 0.970)", "(5.50 ms alone", "5.55 ms over the cached login", "10.5 ms",
		"| `revoked-early` | the lease revoked before its end", "(30 rounds per run)",
		"## 6. Secrets Manager Agent: store calls for the processes of one host",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("document lacks %q", w)
		}
	}
	t.Setenv("BENCH_VAULT_DATE", "2026-12-02 05:30 UTC")
	t.Setenv("BENCH_VAULT_COMMIT", "`abc1234`")
	if out := write(lines); !strings.Contains(out, "measured apart from the rest of the document: on 2026-12-02 05:30 UTC from commit `abc1234`") {
		t.Error("the section does not say it was measured apart")
	}
	out = write("")
	if !strings.Contains(out, "## 5. HashiCorp Vault\n\nNot measured in this run.") || !strings.Contains(out, "## 6. Secrets Manager Agent") {
		t.Error("without Vault figures the section must say it was not measured, and the agent's table must stay")
	}
}
