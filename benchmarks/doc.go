// Package benchmarks holds the benchmarks behind docs/benchmarks.md: the
// rotating Connector side by side with the alternatives an application has,
// measured in the same run.
//
//   - BenchmarkRealConnect: logins per second against a real PostgreSQL
//     server, rotating vs the driver's plain connector, interleaved login
//     by login: over lib/pq (pq.Connector) and over pgx v5
//     (stdlib.GetConnector, rotating with pgxv5.Driver()).
//   - BenchmarkStoreCalls: rejected logins (counted by the fake database)
//     and secret-store calls per rotation with 1 to 256 concurrent dialers,
//     rotating vs a fetch-per-connection connector and a
//     refetch-on-auth-failure connector, with an in-memory store updated
//     first, AWS Secrets Manager (awssmtest) in the single-user rotation
//     window, and an in-memory store lagging the database by 1 s.
//   - BenchmarkRotationCost: latency of the logins that meet a rotation
//     against a real server, beside ordinary logins, a rejected login and a
//     store round trip.
//   - BenchmarkFleet: 100 and 1,000 connectors (one per process) sharing one
//     Secrets Manager endpoint through a rotation and through periodic
//     refresh: peak store requests per second.
//
// The figures are metrics (b.ReportMetric); nothing here asserts a time.
// scripts/bench.sh runs them all and writes docs/benchmarks.md. The package
// has no non-test code besides this comment; internal/report turns the
// benchmark output into the document.
package benchmarks
