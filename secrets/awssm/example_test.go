package awssm_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/awssm"
	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
)

// Version ids are the ClientRequestToken of the call that made the
// version; fixed ones keep the output stable.
const (
	exampleV1 = "00000000-0000-4000-8000-000000000001"
	exampleV2 = "00000000-0000-4000-8000-000000000002"
)

// In production the source comes from NewFromConfig. Here it reads from a
// local awssmtest server through the real SDK client.
func Example() {
	ctx := context.Background()
	srv := awssmtest.NewServer().Start()
	defer srv.Close()
	client := srv.Client(ctx)

	_, err := client.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name:               aws.String("prod/app/db"),
		ClientRequestToken: aws.String(exampleV1),
		SecretString:       aws.String(`{"engine":"postgres","host":"db.internal","port":5432,"username":"app","password":"s3cr3t","dbname":"app"}`),
	})
	if err != nil {
		log.Fatal(err)
	}

	src, err := awssm.New(client, "prod/app/db")
	if err != nil {
		log.Fatal(err)
	}
	cred, err := src.Fetch(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(src.Describe())
	fmt.Println("username:", cred.Username)
	fmt.Println("version:", cred.Version)
	fmt.Println(cred) // formatting a Credential redacts the password
	// Output:
	// aws-secretsmanager prod/app/db
	// username: app
	// version: 00000000-0000-4000-8000-000000000001
	// {Username:"app" Password:[REDACTED] Host:"db.internal" Port:5432 Database:"app" Version:"00000000-0000-4000-8000-000000000001"}
}

// During a single-user rotation, between the step that changes the
// password in the database and the step that moves AWSCURRENT, Fetch still
// returns the old credential and FetchPending the new one. The connector
// calls FetchPending only when the database rejected what Fetch returned.
func ExampleSource_FetchPending() {
	ctx := context.Background()
	srv := awssmtest.NewServer().Start()
	defer srv.Close()
	client := srv.Client(ctx)

	_, err := client.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name:               aws.String("prod/app/db"),
		ClientRequestToken: aws.String(exampleV1),
		SecretString:       aws.String(`{"username":"app","password":"old-password"}`),
	})
	if err != nil {
		log.Fatal(err)
	}
	src, err := awssm.New(client, "prod/app/db")
	if err != nil {
		log.Fatal(err)
	}
	current, err := src.Fetch(ctx)
	if err != nil {
		log.Fatal(err)
	}
	_, err = src.FetchPending(ctx, current)
	fmt.Println("before the rotation, no pending credential:", errors.Is(err, secrets.ErrNoPending))

	// The rotation function's createSecret step.
	_, err = client.RotateSecret(ctx, &secretsmanager.RotateSecretInput{
		SecretId:           aws.String("prod/app/db"),
		ClientRequestToken: aws.String(exampleV2),
	})
	if err != nil {
		log.Fatal(err)
	}
	_, err = client.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId:           aws.String("prod/app/db"),
		ClientRequestToken: aws.String(exampleV2),
		SecretString:       aws.String(`{"username":"app","password":"new-password"}`),
		VersionStages:      []string{awssm.StagePending},
	})
	if err != nil {
		log.Fatal(err)
	}

	stale, err := src.Fetch(ctx)
	if err != nil {
		log.Fatal(err)
	}
	pending, err := src.FetchPending(ctx, stale)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("AWSCURRENT:", stale.Username, stale.Version)
	fmt.Println("AWSPENDING:", pending.Username, pending.Version)
	// Output:
	// before the rotation, no pending credential: true
	// AWSCURRENT: app 00000000-0000-4000-8000-000000000001
	// AWSPENDING: app 00000000-0000-4000-8000-000000000002
}

// The usual setup: the region and credentials come from the environment,
// the shared config files or the instance role, and the application's DSN
// names everything but the login.
func ExampleNewFromConfig() {
	ctx := context.Background()
	src, err := awssm.NewFromConfig(ctx, "prod/app/db", awssm.WithLogger(slog.Default()))
	if err != nil {
		log.Fatal(err)
	}
	connector, err := rotating.NewConnector("host=db.internal dbname=app sslmode=require", src,
		rotating.WithLogger(slog.Default()))
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	// Use db as usual; logins follow the secret through rotations.
}
