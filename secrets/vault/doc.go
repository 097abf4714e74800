// Package vault reads PostgreSQL credentials from HashiCorp Vault (or
// OpenBao, which serves the same API) for the rotating connector: the
// database secrets engine's static and dynamic roles, and KV version 2.
//
// It has a module of its own, github.com/pgrotate/rotating/secrets/vault, so
// that applications that do not use Vault do not inherit the Vault client's
// dependencies.
package vault
