// Package vaulttest runs a local server that speaks HashiCorp Vault's HTTP
// API, so that the real github.com/hashicorp/vault/api client (and the
// vault CLI) talk to it unchanged, backed by a real PostgreSQL server whose
// roles it creates, renews, rotates and revokes as Vault's database
// secrets engine does. Use it to test an application through lease ends,
// password rotations, token expiry and Vault outages without a Vault
// server, as package awssmtest does for AWS Secrets Manager.
//
// # Starting a server
//
//	srv, err := vaulttest.NewServer(adminDB) // a *sql.DB as a superuser
//	...
//	defer srv.Close()
//	if err := srv.Start(); err != nil { ... }
//	srv.SetRole("app", vaulttest.DynamicRole{DefaultTTL: time.Hour, MaxTTL: 24 * time.Hour,
//		CreationStatements: []string{
//			`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`,
//			`GRANT SELECT, INSERT ON orders TO "{{name}}";`,
//		}})
//	token, _ := srv.CreateToken(vaulttest.TokenOptions{TTL: time.Hour})
//	client, _ := srv.Client(token) // a *api.Client for srv
//
// Code that builds its own client takes VAULT_ADDR=[Server.URL],
// VAULT_TOKEN, and with [WithTLS] VAULT_CACERT (see [Server.WriteCACert]).
// pgrotate vault-server runs the same server standalone.
//
// # What it implements
//
// Paths are Vault's; answers have Vault's envelope (request_id, lease_id,
// renewable, lease_duration, data, warnings, auth), errors Vault's
// {"errors":[...]} body and status codes.
//
//   - The database secrets engine (mount "database", see
//     [WithDatabaseMount]): GET creds/:role creates a PostgreSQL role
//     named v-<display name>-<role>-<random>-<unix time> with a random
//     password and VALID UNTIL the lease's end plus 5 s, under a renewable
//     lease of the role's DefaultTTL ([Server.SetRole]); GET
//     static-creds/:name and POST rotate-role/:name for static roles
//     ([Server.SetStaticRole]), rotated on schedule with ALTER ROLE.
//   - Leases: PUT sys/leases/renew (the increment, or the role's
//     DefaultTTL, capped at the lease's MaxTTL from its creation; ALTER
//     ROLE ... VALID UNTIL), sys/leases/lookup and sys/leases/revoke.
//   - KV version 2 (mount "secret", see [WithKVMount]): data/:path read
//     (with ?version=N), write (with options.cas), delete; delete/,
//     undelete/ and destroy/ of versions; metadata/:path read and delete.
//   - Tokens: a root token ([Server.RootToken]), tokens from
//     [Server.CreateToken] or auth/token/create, auth/token/lookup-self,
//     renew-self and revoke-self; logins at auth/approle/login
//     ([Server.SetAppRole]) and auth/kubernetes/login
//     ([Server.SetKubernetesRole], [Server.KubernetesJWT]).
//   - sys/health, sys/seal-status, and the mount lookup of the vault
//     CLI's kv commands.
//
// A lease ends at its end, when it is revoked, or when the token that made
// it is revoked or expires; a timer per lease makes that prompt. Its role
// is then revoked as Vault does (REVOKE its privileges, DROP ROLE), and
// its open sessions are ended first (NOLOGIN, then pg_terminate_backend)
// (set [DynamicRole.KeepSessions] to leave them running, as Vault does).
// [Server.Leases] tells, for each lease, when it ended and how many
// sessions of its role were still open then.
//
// # Faults and counters
//
// [Server.Seal] (503 "Vault is sealed"), [Server.InjectFault] (an error
// status such as 403 permission denied, and latency that ends with the
// request's context), [Server.Down] and [Server.Up] (connections refused,
// then served again on the same address), and [Server.RevokeLease] (a
// lease revoked before its end). [Server.Calls] counts requests per
// operation; [Lease.Renewals] counts renewals per lease.
//
// # Differences from Vault
//
// Everything but the PostgreSQL roles is kept in memory. Policies are
// recorded, not enforced (inject a 403 fault to test a denial). A
// Kubernetes login checks a JWT signed by the server rather than asking
// the Kubernetes API. Times are exact where Vault rounds to seconds: a
// lease capped by its max TTL ends exactly at issue time + MaxTTL, and its
// lease_duration is rounded down. Static roles rotate on a period
// (rotation_schedule is not implemented) exactly on time, where Vault
// checks every 5 s. While sealed, leases still end and static roles still
// rotate on time. The server never logs or answers a password, a token or
// a secret_id outside the answers that carry them.
package vaulttest
