// Package faults is the fault and bad-input suite of the rotating
// Connector: a failing or misbehaving secret store (through the real AWS SDK
// against awssmtest's local Secrets Manager endpoint), a misbehaving
// PostgreSQL server (restarted, out of connection slots, rejecting the role
// in pg_hba.conf, the role dropped or expired), callers that cancel, time
// out or close at awkward moments, hostile usernames, passwords and secret
// encodings, and rotations faster than the connector's own backoff; and the
// defects issue 8 measured, replayed against a real server (a herd of
// callers on a credential never fixed, counted in the server's log; a
// retry login stalled behind a proxy; a rotation soon after a long
// incident; a NUL byte in a credential).
//
// Every case that involves a login runs once per driver of the table in
// drivers_test.go (subtests lib/pq and pgx), with the same body and
// assertions; the driver's own server error is found with errors.As and
// its SQLSTATE read through the SQLState() string method both drivers'
// errors have. Where the drivers legitimately differ, the table says how.
// The store faults and the secrets no driver ever sees run through lib/pq
// only.
//
// Every case checks that the statements that should succeed did, that the
// error a caller gets is classifiable with errors.Is and errors.As, that
// nothing panics, that no goroutine outlives db.Close, and that no secret
// value appears in an error or a log line. docs/reliability.md lists every
// case with the promise it proves.
//
// The tests need PostgreSQL's server binaries (see internal/pgserver/pgtest)
// and are skipped without them, unless CI=true. The package has no non-test
// code.
package faults
