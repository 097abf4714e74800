package main

// agentStoreCalls is BenchmarkAgentStoreCalls in integration/aws: a host of
// processes reading the secret directly or through the Secrets Manager
// Agent, through AWS's single-user rotation.
const agentStoreCalls = "BenchmarkAgentStoreCalls/mode="

// agentModes are the benchmark's modes (hostModes in
// integration/aws/agent_test.go), as the document names them.
var agentModes = []struct{ key, label string }{
	{"direct", "direct (`awssm`)"},
	{"agent-ttl-300s", "agent, TTL 300 s (rotations within the TTL)"},
	{"agent-ttl-1s", "agent, TTL 1 s (rotations beyond the TTL)"},
}

type agentRow struct {
	Mode, GetSecretValue, DescribeSecret, First, Requests, RefreshNow, SourceCalls, Failed string
}

func (d *document) agent(r *results) {
	for _, m := range agentModes {
		name := agentStoreCalls + m.key
		cell := func(unit string) string {
			if r.runs(name, unit) == 0 {
				return "not measured"
			}
			return r.spread(name, unit)
		}
		d.Agent = append(d.Agent, agentRow{
			Mode:           m.label,
			GetSecretValue: cell("GetSecretValue/rotation"),
			DescribeSecret: cell("DescribeSecret/rotation"),
			First:          cell("first-rotation-calls"),
			Requests:       cell("agent-requests/rotation"),
			RefreshNow:     cell("refreshNow/rotation"),
			SourceCalls:    cell("source-calls/rotation"),
			Failed:         cell("failed-statements"),
		})
	}
}
