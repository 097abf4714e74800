package vault_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"log/slog"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/api/auth/approle"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/secrets/vault"
)

// exampleClient starts a fake Vault on a local port (for the examples; in
// production NewClient(nil) reads VAULT_ADDR and VAULT_TOKEN) and returns a
// Client for it.
func exampleClient(f *fakeVault) (*vault.Client, func()) {
	srv := httptest.NewServer(f)
	cfg := api.DefaultConfig()
	cfg.Address = srv.URL
	apiClient, err := api.NewClient(cfg)
	if err != nil {
		log.Fatal(err)
	}
	apiClient.SetToken(rootToken)
	c, err := vault.NewClient(apiClient)
	if err != nil {
		log.Fatal(err)
	}
	return c, srv.Close
}

// A static role: one database user whose password Vault changes in place.
// The Version is the time of the last rotation (last_vault_rotation), and
// NextRotation the next scheduled one (the answer's ttl).
func ExampleStaticRole() {
	last := time.Now().Add(-time.Hour).UTC()
	f := fakeWithRoot()
	f.static["app"] = &fakeStatic{username: "app", password: "s3cr3t", lastRotation: last, period: 24 * time.Hour}
	c, stop := exampleClient(f)
	defer stop()

	src, err := vault.StaticRole(c, "database", "app")
	if err != nil {
		log.Fatal(err)
	}
	cred, err := src.Fetch(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(src.Describe())
	fmt.Println(cred.Username, cred.Version == last.Format(time.RFC3339Nano))
	fmt.Println("next rotation in", time.Until(cred.NextRotation).Round(time.Hour))
	fmt.Println(strings.Contains(fmt.Sprint(cred), "s3cr3t")) // formatting a Credential redacts the password
	// Output:
	// vault-static-role database/app
	// app true
	// next rotation in 23h0m0s
	// false
}

// A dynamic role: the first Fetch reads a new user under a lease; the next
// ones renew the lease and return the same login with a later SessionsEnd,
// until the lease reaches the role's max_ttl.
func ExampleDynamicRole() {
	f := fakeWithRoot()
	f.dynamic["app"] = &fakeDynamic{ttl: time.Hour, maxTTL: 24 * time.Hour, renewable: true}
	c, stop := exampleClient(f)
	defer stop()

	src, err := vault.DynamicRole(c, "database", "app")
	if err != nil {
		log.Fatal(err)
	}
	first, err := src.Fetch(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	renewed, err := src.Fetch(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(src.Describe())
	fmt.Println("user:", first.Username, "lease:", first.Version)
	fmt.Println("same login after the renewal:", renewed.SameLogin(first))
	fmt.Println("sessions end within the hour:", time.Until(renewed.SessionsEnd) <= time.Hour)
	fmt.Println("renewals:", f.count("PUT sys/leases/renew"), "reads:", f.count("GET database/creds/app"))
	// Output:
	// vault-dynamic-role database/app
	// user: v-token-app-0002 lease: database/creds/app/lease0002
	// same login after the renewal: true
	// sessions end within the hour: true
	// renewals: 1 reads: 1
}

// A credential kept in KV version 2 as the RDS-style JSON object. The
// Version is the KV version number.
func ExampleKV() {
	f := fakeWithRoot()
	f.putKV("prod/db", `{"username":"app","password":"s3cr3t","host":"db.internal","port":5432,"dbname":"orders"}`)
	c, stop := exampleClient(f)
	defer stop()

	src, err := vault.KV(c, "secret", "prod/db")
	if err != nil {
		log.Fatal(err)
	}
	cred, err := src.Fetch(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(src.Describe())
	fmt.Println(cred)
	// Output:
	// vault-kv secret/prod/db
	// {Username:"app" Password:[REDACTED] Host:"db.internal" Port:5432 Database:"orders" Version:"1"}
}

// The usual setup: the client is configured from VAULT_ADDR, VAULT_CACERT,
// VAULT_NAMESPACE, ...; the pod logs in with its Kubernetes service
// account. The connector retires a lease's connections a minute before
// the lease ends and refreshes ahead of that, which renews the lease.
func ExampleNewClient() {
	c, err := vault.NewClient(nil, vault.WithKubernetes("", "app", ""), vault.WithLogger(slog.Default()))
	if err != nil {
		log.Fatal(err)
	}
	src, err := vault.DynamicRole(c, "database", "app")
	if err != nil {
		log.Fatal(err)
	}
	connector, err := rotating.NewConnector("host=db.internal dbname=app sslmode=verify-full", src,
		rotating.WithSessionMargin(time.Minute), rotating.WithRefreshBeforeExpiry(time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	// Use db as usual; logins follow the leases.
}

// A token kept current by Vault Agent's auto-auth in a sink file.
func ExampleWithTokenFile() {
	c, err := vault.NewClient(nil, vault.WithTokenFile("/vault/agent/token"))
	if err != nil {
		log.Fatal(err)
	}
	src, err := vault.StaticRole(c, "database", "app")
	if err != nil {
		log.Fatal(err)
	}
	_ = src // pass to rotating.NewConnector
}

// AppRole, with the secret id in a file that a deployment tool rewrites:
// it is read again at every login.
func ExampleWithAppRole() {
	c, err := vault.NewClient(nil, vault.WithAppRole("approle", "9f1c5a7e-role-id",
		&approle.SecretID{FromFile: "/run/secrets/vault-secret-id"}))
	if err != nil {
		log.Fatal(err)
	}
	src, err := vault.KV(c, "secret", "prod/db")
	if err != nil {
		log.Fatal(err)
	}
	_ = src
}
