// Package azkvintegration holds the end-to-end tests of the rotating
// Connector over Azure Key Vault: a real PostgreSQL server (see
// internal/pgserver/pgtest), the real azsecrets client talking over TLS,
// bearer challenge included, to the local Key Vault of secrets/azkv/azkvtest,
// and the azkv source, while many goroutines keep inserting rows, each
// statement on a new login:
//
//   - rotations under load in the two orders a runbook may follow: the
//     password changed in the database first and the new version added to
//     the vault after it (with the window between the two held open), or
//     the vault first and the database after;
//   - the vault failing while the cached credential works (down, 403, 429,
//     the secret disabled, deleted or malformed, the identity endpoint
//     down after a 401), and then the cached password changed in the
//     database, so that Connect must fail with a clear *rotating.AuthError
//     that wraps the vault's error.
//
// Both run once per driver of internal/testkit/drivers (subtests lib/pq
// and pgx). Every test checks that no statement failed, that every
// acknowledged row is in the table, how many GetSecret requests each
// rotation cost, counted by the local vault, and that no password or
// bearer token appears in an error or a log line. The package has no
// non-test code.
package azkvintegration
