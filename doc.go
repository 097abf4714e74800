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
// The connector keeps a small model of what it knows: the store's current
// credential, the store's pending one (AWSPENDING, asked only during a
// rotation window), and the previous one that worked, each untried, working
// or rejected. Connect dials the credential known to work with one atomic
// load. When the database rejects a login (SQLSTATE 28P01 or 28000 by
// default), every Connect that is waiting shares each step:
//
//  1. One call to the source for all of them, run on the connector's own
//     context with its own timeout, so that no caller's cancellation fails
//     the others. A new credential it returns is tried by one caller while
//     the others wait for the result.
//  2. If the source returned the very credential that was rejected (the
//     store is behind the database: a manual ALTER ROLE before the vault
//     was updated, or AWS Secrets Manager's window between setSecret and
//     finishSecret) and it implements secrets.PendingSource, the pending
//     credential, tried the same way.
//  3. If the store got ahead of the database (it holds a value the database
//     rejects), the previous credential that worked.
//  4. Otherwise one call to the source and one re-check of the rejected
//     credential per backoff step (100 ms doubling to 5 s by default) for
//     the whole process, until something works or the rotation wait (10 s
//     by default) or the caller's deadline ends. Then Connect returns an
//     *AuthError that wraps the driver's *pq.Error.
//
// A credential known to be rejected is never dialed by new Connect calls. A
// failed fetch never evicts a credential that may still work, and a source
// that panics or hangs is an error, not a stuck connector. A credential
// with an Expires time is refreshed in the background ahead of it, and
// WithRefreshInterval adds periodic refreshes for stores that give no
// expiry; both go through the same store step. A credential whose sessions
// end (Credential.SessionsEnd, a Vault lease) is replaced ahead of that
// time and its connections are retired from the pool before it (see
// WithSessionMargin and DriverConn). docs/design.md has every rule.
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
// Stats returns counters (fetches, fetch errors, rejected logins, probes,
// credential changes, dials, recoveries, retired connections) and the
// credential in use: its generation, version and age. WithLogger sends events to a log/slog logger.
package rotating
