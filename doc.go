// Package rotating keeps a database/sql application running while its
// PostgreSQL credentials are rotated underneath it: no failed query, no
// restart, no secret-store call per connection.
//
//	src := secrets.File("/var/run/secrets/db.json") // or any secrets.Source
//	connector, err := rotating.NewConnector("host=db.internal dbname=app sslmode=require", src,
//		rotating.WithLogger(slog.Default()))
//	if err != nil { ... }
//	db := sql.OpenDB(connector) // the rest of the application is unchanged
//
// # How rotation is handled
//
// Each new connection logs in with a credential cached in memory; the source
// (a vault, a file, the environment) is not called on that path.
// Connections already open are left alone: PostgreSQL does not end sessions
// when a password changes, so sql.DB's pool keeps working.
//
// When the database rejects a login (SQLSTATE 28P01 or 28000 by default),
// Connect looks for a working credential, in this order:
//
//  1. A newer credential that another Connect has already cached: it is used
//     without calling the source.
//  2. One refresh from the source, shared by every Connect that is waiting
//     (a singleflight), and run on the connector's own context with its own
//     timeout so that no caller's cancellation fails the others.
//  3. If the source returned the very credential that was rejected (the
//     store is behind the database: a manual ALTER ROLE before the vault
//     was updated, or AWS Secrets Manager's window between setSecret and
//     finishSecret) and it implements secrets.PendingSource, the pending
//     credential (AWSPENDING). It becomes the cached credential only once a
//     login with it has succeeded.
//  4. Otherwise the source is asked again with backoff (100 ms doubling to
//     5 s by default; at most one call per step for the whole process) until
//     something new appears or the rotation wait (10 s by default) or the
//     caller's deadline ends. Then Connect returns an *AuthError that wraps
//     the driver's *pq.Error.
//
// A failed fetch never evicts a cached credential that may still work. A
// credential with an Expires time is refreshed in the background ahead of
// it, and WithRefreshInterval adds periodic refreshes for stores that give
// no expiry; both go through the same shared refresh.
//
// # Errors
//
// Errors match the sentinels ErrCredentialRejected, ErrFetchFailed,
// ErrInvalidDSN, ErrInvalidOption and ErrClosed with errors.Is, carry detail
// in *AuthError, *FetchError and *DSNError, and keep the driver's and the
// source's errors reachable with errors.As. No error, log line or
// formatted value contains a password.
//
// # Observability
//
// Stats returns counters (fetches, fetch errors, rejected logins, credential
// changes, dials, recoveries) and the current credential's generation,
// version and age. WithLogger sends events to a log/slog logger.
package rotating
