// Package integration holds the tests that prove the rotating Connector
// against a real PostgreSQL server: passwords rotated with ALTER ROLE while
// many goroutines keep logging in, held connections surviving a rotation,
// hostile PG* environment variables and pgpass files, a credential that is
// never fixed, awkward passwords, a login that stalls past the caller's
// deadline, and Vault-style leases whose roles are revoked and dropped at
// their end while a pool keeps inserting. Each test runs once per driver
// of internal/testkit/drivers (subtests lib/pq and pgx), with the same
// body and the same assertions; a driver's own error type and connection
// type are checked through the table. BenchmarkConnect compares the cost
// of a login through the Connector with lib/pq's own connector.
//
// The tests start a throwaway server (see internal/pgserver/pgtest), or use
// the one named by ROTATING_TEST_PG_DSN. The package has no non-test code.
package integration
