package rdsiam_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/secrets/rdsiam"
)

// A token is built locally, so this runs without AWS: static credentials
// stand in for the instance role's. The token is the credential's
// password and never printed.
func Example() {
	awsCfg := aws.Config{
		Region:      "us-east-1",
		Credentials: aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "example-secret-key", "")),
	}
	src, err := rdsiam.New(awsCfg, rdsiam.DB{Host: "mydb.abc123xyz.us-east-1.rds.amazonaws.com", User: "app"})
	if err != nil {
		log.Fatal(err)
	}
	cred, err := src.Fetch(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(src)
	fmt.Println("user:", cred.Username)
	fmt.Println("endpoint:", cred.Host, cred.Port)
	fmt.Println("token for it:", strings.HasPrefix(cred.Password, "mydb.abc123xyz.us-east-1.rds.amazonaws.com:5432?Action=connect&DBUser=app&"))
	fmt.Println("valid for:", time.Until(cred.Expires).Round(time.Minute))
	fmt.Println("sessions end:", cred.SessionsEnd.IsZero())
	// Output:
	// rds-iam app@mydb.abc123xyz.us-east-1.rds.amazonaws.com:5432 us-east-1
	// user: app
	// endpoint: mydb.abc123xyz.us-east-1.rds.amazonaws.com 5432
	// token for it: true
	// valid for: 15m0s
	// sessions end: true
}

// The usual set-up: the AWS region and credentials come from the
// environment, the shared config files, or the instance or task role. The
// DSN leaves host and port to the source, so that they are those the token
// is signed for, and verifies the server with the RDS CA bundle: RDS IAM
// authentication requires TLS.
func ExampleNewFromConfig() {
	ctx := context.Background()
	src, err := rdsiam.NewFromConfig(ctx, rdsiam.DB{Host: "mydb.abc123xyz.us-east-1.rds.amazonaws.com", Port: 5432, User: "app"},
		rdsiam.WithLogger(slog.Default()))
	if err != nil {
		log.Fatal(err)
	}
	connector, err := rotating.NewConnector("dbname=app sslmode=verify-full sslrootcert=/etc/ssl/rds/global-bundle.pem", src,
		rotating.WithLogger(slog.Default()))
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	// Use db as usual; a new token is built ahead of each expiry.
}

// When the DSN names the endpoint (an RDS Proxy, say), DBFromDSN reads the
// host, port and user from it, so that the tokens are signed for exactly
// what the driver dials.
func ExampleDBFromDSN() {
	dsn := "host=app-proxy.proxy-abc123xyz.us-east-1.rds.amazonaws.com port=5432 user=app dbname=app sslmode=verify-full"
	db, err := rdsiam.DBFromDSN(dsn)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s:%d as %s\n", db.Host, db.Port, db.User)
	// Output:
	// app-proxy.proxy-abc123xyz.us-east-1.rds.amazonaws.com:5432 as app
}
