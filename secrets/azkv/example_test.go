package azkv_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/secrets/azkv"
	"github.com/pgrotate/rotating/secrets/azkv/azkvtest"
)

// In production the source reads from the vault with azidentity's
// credential chain (see ExampleNew). Here it reads from a local azkvtest
// vault through the real azsecrets client, bearer challenge included.
func Example() {
	ctx := context.Background()
	vault := azkvtest.NewServer().Start()
	defer vault.Close()
	first := vault.SetSecret("db-app", `{"host":"db.internal","port":5432,"username":"app","password":"s3cr3t","dbname":"app"}`)

	src, err := azkv.New(vault.URL(), "db-app",
		azkv.WithCredential(vault.Credential()),
		azkv.WithClientOptions(vault.ClientOptions()))
	if err != nil {
		log.Fatal(err)
	}
	cred, err := src.Fetch(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("username:", cred.Username, "host:", cred.Host)
	fmt.Println("version is the vault's version id:", cred.Version == first)

	// A rotation adds a version; the next Fetch reads it.
	second := vault.SetSecret("db-app", `{"username":"app","password":"n3w"}`)
	cred, err = src.Fetch(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("after the rotation, the new version:", cred.Version == second)
	fmt.Println("GetSecret requests:", vault.Calls(azkvtest.OpGetSecret), "challenges:", vault.Challenges())

	// The connector asks the source only when it needs to.
	connector, err := rotating.NewConnector("dbname=app sslmode=disable", src)
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	// Output:
	// username: app host: db.internal
	// version is the vault's version id: true
	// after the rotation, the new version: true
	// GetSecret requests: 2 challenges: 1
}

// A source for a vault in Azure, authenticating with a managed identity,
// workload identity, environment credentials or the Azure CLI, whichever
// azidentity's DefaultAzureCredential finds first.
func ExampleNew() {
	src, err := azkv.New("https://myvault.vault.azure.net/", "db-app",
		azkv.WithLogger(slog.New(slog.NewJSONHandler(os.Stderr, nil))))
	if err != nil {
		log.Fatal(err)
	}
	connector, err := rotating.NewConnector("host=myserver.postgres.database.azure.com dbname=app sslmode=verify-full", src)
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
}

// A user-assigned managed identity, chosen by its client id.
func ExampleWithCredential() {
	cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{
		ID: azidentity.ClientID("00000000-0000-0000-0000-000000000000"),
	})
	if err != nil {
		log.Fatal(err)
	}
	src, err := azkv.New("https://myvault.vault.azure.net/", "db-app", azkv.WithCredential(cred))
	if err != nil {
		log.Fatal(err)
	}
	_ = src
}

// Errors say what Key Vault answered; the SDK's error stays reachable.
func ExampleError() {
	ctx := context.Background()
	vault := azkvtest.NewServer().Start()
	defer vault.Close()
	vault.SetSecret("db-app", "s3cr3t")
	vault.SetEnabled("db-app", "", false)

	src, err := azkv.New(vault.URL(), "db-app",
		azkv.WithCredential(vault.Credential()),
		azkv.WithClientOptions(vault.ClientOptions()))
	if err != nil {
		log.Fatal(err)
	}
	_, err = src.Fetch(ctx)
	var kvErr *azkv.Error
	var respErr *azcore.ResponseError
	fmt.Println("disabled:", errors.Is(err, azkv.ErrDisabled))
	fmt.Println("*azkv.Error:", errors.As(err, &kvErr), kvErr.StatusCode, kvErr.Code, kvErr.InnerCode)
	fmt.Println("*azcore.ResponseError:", errors.As(err, &respErr), respErr.StatusCode)
	// Output:
	// disabled: true
	// *azkv.Error: true 403 Forbidden SecretDisabled
	// *azcore.ResponseError: true 403
}
