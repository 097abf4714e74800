package vaulttest_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/secrets/vault/vaulttest"
)

// The examples' PostgreSQL server, started on first use and stopped by
// TestMain.
var (
	examplePGOnce sync.Once
	examplePG     *pgserver.Server
)

// exampleDB returns a superuser pool on a throwaway PostgreSQL server: in
// a real test, pgtest's or the one the test suite already has.
func exampleDB() *sql.DB {
	examplePGOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var err error
		if examplePG, err = pgserver.Start(ctx, pgserver.Options{}); err != nil {
			log.Fatal(err)
		}
	})
	return examplePG.Admin()
}

func stopExamplePG() error {
	if examplePG == nil {
		return nil
	}
	return examplePG.Stop()
}

// A dynamic role: every read of database/creds creates a PostgreSQL role
// under a lease, which the application renews and which ends with a
// REVOKE and a DROP ROLE.
func ExampleServer() {
	ctx := context.Background()
	srv, err := vaulttest.NewServer(exampleDB())
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	if err := srv.SetRole("app", vaulttest.DynamicRole{DefaultTTL: time.Hour, MaxTTL: 24 * time.Hour}); err != nil {
		log.Fatal(err)
	}
	token, err := srv.CreateToken(vaulttest.TokenOptions{TTL: time.Hour})
	if err != nil {
		log.Fatal(err)
	}

	// The application's side: the real client, VAULT_ADDR and VAULT_TOKEN.
	cfg := api.DefaultConfig()
	cfg.Address = srv.URL()
	client, err := api.NewClient(cfg)
	if err != nil {
		log.Fatal(err)
	}
	client.SetToken(token)
	secret, err := client.Logical().ReadWithContext(ctx, "database/creds/app")
	if err != nil {
		log.Fatal(err)
	}
	username := secret.Data["username"].(string)
	fmt.Println("username starts with v-token-app-:", strings.HasPrefix(username, "v-token-app-"))
	fmt.Println("lease:", secret.LeaseDuration, "s, renewable:", secret.Renewable)

	renewed, err := client.Sys().RenewWithContext(ctx, secret.LeaseID, 600)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("renewed for", renewed.LeaseDuration, "s")

	// The test's side: end the lease early, and look at what happened.
	if err := srv.RevokeLease(ctx, secret.LeaseID); err != nil {
		log.Fatal(err)
	}
	lease, _ := srv.Lease(secret.LeaseID)
	fmt.Println("ended:", lease.EndReason, "renewals:", lease.Renewals, "sessions left open:", lease.SessionsAtEnd)
	// Output:
	// username starts with v-token-app-: true
	// lease: 3600 s, renewable: true
	// renewed for 600 s
	// ended: revoked early renewals: 1 sessions left open: 0
}

// A static role: one PostgreSQL role whose password changes in place, on
// schedule or on demand.
func ExampleServer_SetStaticRole() {
	ctx := context.Background()
	db := exampleDB()
	if _, err := db.ExecContext(ctx, `CREATE ROLE example_static LOGIN`); err != nil {
		log.Fatal(err)
	}
	defer db.ExecContext(ctx, `DROP ROLE example_static`)

	srv, err := vaulttest.NewServer(db)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	err = srv.SetStaticRole(ctx, "app", vaulttest.StaticRole{Username: "example_static", RotationPeriod: time.Hour})
	if err != nil {
		log.Fatal(err)
	}
	client, err := srv.Client("")
	if err != nil {
		log.Fatal(err)
	}
	before, err := client.Logical().ReadWithContext(ctx, "database/static-creds/app")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(before.Data["username"], before.Data["rotation_period"])

	if _, err := client.Logical().WriteWithContext(ctx, "database/rotate-role/app", nil); err != nil {
		log.Fatal(err)
	}
	after, err := client.Logical().ReadWithContext(ctx, "database/static-creds/app")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("password changed:", after.Data["password"] != before.Data["password"])
	state, _ := srv.StaticRoleState("app")
	fmt.Println("rotations:", state.Rotations)
	// Output:
	// example_static 3600
	// password changed: true
	// rotations: 2
}

// KV version 2, without a database.
func ExampleServer_PutKV() {
	ctx := context.Background()
	srv, err := vaulttest.NewServer(nil)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	srv.PutKV("app/db", map[string]any{"username": "app", "password": "first"})
	srv.PutKV("app/db", map[string]any{"username": "app", "password": "second"})

	client, err := srv.Client("")
	if err != nil {
		log.Fatal(err)
	}
	latest, err := client.KVv2("secret").Get(ctx, "app/db")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(latest.VersionMetadata.Version, latest.Data["password"])
	old, err := client.KVv2("secret").GetVersion(ctx, "app/db", 1)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(old.VersionMetadata.Version, old.Data["password"])
	// Output:
	// 2 second
	// 1 first
}

// Faults reach the client as Vault's own errors.
func ExampleServer_InjectFault() {
	ctx := context.Background()
	srv, err := vaulttest.NewServer(nil)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	client, err := srv.Client("")
	if err != nil {
		log.Fatal(err)
	}
	show := func(err error) {
		var re *api.ResponseError
		switch {
		case errors.As(err, &re):
			fmt.Println(re.StatusCode, re.Errors)
		case errors.Is(err, syscall.ECONNREFUSED):
			fmt.Println("connection refused")
		default:
			fmt.Println(err)
		}
	}

	srv.Seal()
	_, err = client.Auth().Token().LookupSelfWithContext(ctx)
	show(err)
	srv.Unseal()

	srv.InjectFault(vaulttest.OpLookupSelf, vaulttest.Fault{Status: 403, Count: 1})
	_, err = client.Auth().Token().LookupSelfWithContext(ctx)
	show(err)

	srv.Down()
	_, err = client.Auth().Token().LookupSelfWithContext(ctx)
	show(err)
	if err := srv.Up(); err != nil {
		log.Fatal(err)
	}
	_, err = client.Auth().Token().LookupSelfWithContext(ctx)
	show(err)
	fmt.Println("lookup-self requests:", srv.Calls(vaulttest.OpLookupSelf))
	// Output:
	// 503 [Vault is sealed]
	// 403 [permission denied]
	// connection refused
	// <nil>
	// lookup-self requests: 3
}

// An AppRole login, as the auth/approle helper module makes it.
func ExampleServer_SetAppRole() {
	ctx := context.Background()
	srv, err := vaulttest.NewServer(nil)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	roleID, secretID, err := srv.SetAppRole("web", vaulttest.AppRole{TokenTTL: 20 * time.Minute, TokenMaxTTL: time.Hour})
	if err != nil {
		log.Fatal(err)
	}
	client, err := srv.Client("")
	if err != nil {
		log.Fatal(err)
	}
	client.ClearToken()
	login, err := client.Logical().WriteWithContext(ctx, "auth/approle/login", map[string]any{"role_id": roleID, "secret_id": secretID})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(login.Auth.LeaseDuration, login.Auth.Renewable, login.Auth.Policies)
	// Output:
	// 1200 true [default]
}
