// Package vaultintegration holds the end-to-end tests of the rotating
// Connector over HashiCorp Vault: a real PostgreSQL server (see
// internal/pgserver/pgtest), the local Vault server of
// secrets/vault/vaulttest backed by it, the real github.com/hashicorp/vault/api
// client inside the secrets/vault sources, and many goroutines inserting rows
// through sql.OpenDB(rotating.NewConnector(...)):
//
//   - a dynamic role with 3 s leases and a 10 s max_ttl under 64 workers for
//     30 s, once with a normal pool over lib/pq and TLS (verify-full), once
//     with no idle connections over pgx: lease ends crossed, no session of an
//     ended lease alive, Vault calls per lease counted and bounded;
//   - a static role rotated on demand every 2 s under 64 workers, and on its
//     schedule (the credential's NextRotation);
//   - Vault sealed, down, answering 403 and slow while the cached credential
//     works, then the credential dying while Vault is still out;
//   - a lease revoked before its end;
//   - token renewal, and logins again when the token cannot be renewed.
//
// Every test checks that no statement failed (or bounds and counts those
// that may), that every acknowledged row is in the table, and that no
// token, password or lease secret appears in an error or a log line. The
// package has no non-test code.
package vaultintegration
