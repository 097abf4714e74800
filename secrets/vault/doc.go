// Package vault reads PostgreSQL credentials from HashiCorp Vault (or
// OpenBao, which serves the same API) for the rotating connector: the
// database secrets engine's static roles ([StaticRole]) and dynamic roles
// ([DynamicRole]), and credentials kept in KV version 2 ([KV]).
//
//	c, err := vault.NewClient(nil, vault.WithKubernetes("", "app", ""))
//	if err != nil { ... }
//	src, err := vault.DynamicRole(c, "database", "app")
//	if err != nil { ... }
//	connector, err := rotating.NewConnector("host=db.internal dbname=app sslmode=verify-full", src)
//	db := sql.OpenDB(connector)
//
// It has a module of its own, github.com/pgrotate/rotating/secrets/vault, so
// that applications that do not use Vault do not inherit the Vault client's
// dependencies. It uses the official client, github.com/hashicorp/vault/api,
// configured as Vault users expect (VAULT_ADDR, VAULT_TOKEN, VAULT_CACERT,
// VAULT_NAMESPACE, ...: see [NewClient]), and its AppRole and Kubernetes
// login helpers.
//
// # Static roles
//
// A static role is one database user whose password Vault changes in
// place. [StaticRoleSource.Fetch] reads <mount>/static-creds/<name>; the
// credential's Version is last_vault_rotation. The old password stops
// working at the rotation, and sessions opened with it live on, so
// nothing is retired: the first login the database rejects after a
// rotation makes the connector call Fetch once for the whole process,
// and Vault already has the new password then. Expires is left zero on
// purpose: the new password does not exist before the rotation, so a
// refresh ahead of the role's ttl could only fetch the old one again.
//
// # Dynamic roles
//
// Each read of <mount>/creds/<role> creates a database user under a lease.
// When the lease ends, Vault revokes it (REVOKE, DROP ROLE); the user's
// open sessions are not ended but fail with permission errors from then
// on. The credential's SessionsEnd is the lease's end, so the connector
// retires the lease's connections WithSessionMargin before it and calls
// Fetch ahead of that (WithRefreshBeforeExpiry); Fetch renews the lease
// (sys/leases/renew) and returns the same login with the later
// SessionsEnd, which moves the retirement. Once a renewal is capped by the
// role's max_ttl, the lease is used to its end and the next Fetch reads a
// new one. The exact policy is at [DynamicRoleSource].
// [DynamicRoleSource.FetchPending] reads a new lease when the database
// rejected the current one (a lease revoked early).
//
// Leases die with the token that read them: Vault revokes a token's leases
// when the token expires or is revoked. [Client] renews its token when a
// lease would outlive it; if the token cannot be made to last (its max
// TTL), the credential's SessionsEnd is the token's expiry, a warning is
// logged, and after the next login the next Fetch reads a new lease with
// the new token. Give the token a max TTL longer than the role's max_ttl.
//
// # KV version 2
//
// [KVSource.Fetch] reads <mount>/data/<path> and parses its data as the
// RDS-style JSON object (username, password, host, port, dbname; see
// [secrets.ParseJSON] and [WithKeys]); the Version is the KV version.
// Whoever rotates the secret updates it; a login rejected after the
// password changed makes the connector read it again.
//
// # Errors and logs
//
// Errors are an [*Error] naming the operation, the Vault path and, for a
// renewal, the lease id, and wrapping the cause: the client's
// *api.ResponseError (reachable with errors.As; errors.Is matches
// [ErrSealed], [ErrPermissionDenied] and [ErrNotFound] by status), a
// network or context error, or an error wrapping secrets.ErrMalformed or
// secrets.ErrEmptyPassword that names the field. An error's text keeps
// only Vault's status and messages, never a token, password or secret id
// (the client's own error text quotes the request URL, which holds none,
// and a non-JSON answer's body, which is withheld). [WithLogger] logs
// paths, lease ids, versions, usernames and token accessors, never tokens.
//
// docs/vault.md in the repository tells how to set up each role type, and
// what Vault's role settings should be relative to the connector's
// margins.
package vault
