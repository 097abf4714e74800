// Package benchmarks holds the benchmarks of the Vault sources behind the
// "HashiCorp Vault" section of docs/benchmarks.md, each against a real
// PostgreSQL server through the Vault-compatible server of vaulttest (on
// loopback, in the same process):
//
//   - BenchmarkVaultFleet: N processes (each its own token, client,
//     source, Connector and pool, running queries) share one Vault: a
//     dynamic role's leases (reads and renewals per lease, per process,
//     token calls, sessions alive past a lease's end) and a static role's
//     rotations, on schedule and on demand (reads and rejected logins per
//     rotation per process).
//   - BenchmarkVaultLeaseChange: the latency of a login that meets a lease
//     change beside a plain cached login, and the Vault read and the plain
//     login they are made of, side by side in one run.
//
// The figures are metrics (b.ReportMetric) besides ns/op; a benchmark fails
// on a failed query, a session that outlived its lease, or a login that did
// not take the path it measures, never on a time. scripts/bench.sh runs
// them and writes their section of docs/benchmarks.md. The package has no
// non-test code besides this comment.
package benchmarks
