package secrets_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/pgrotate/rotating/secrets"
)

// A secret mounted as a file, for example by a Kubernetes Secret volume or
// the Secrets Store CSI driver. The file is read again on every Fetch, so a
// rotated secret is picked up without a restart.
func ExampleFile() {
	dir, err := os.MkdirTemp("", "secrets-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "db.json")
	secret := `{"engine":"postgres","host":"db.example.com","port":5432,` +
		`"username":"app","password":"s3cr3t-Pa55","dbname":"orders"}`
	if err := os.WriteFile(path, []byte(secret), 0o600); err != nil {
		log.Fatal(err)
	}

	src := secrets.File(path) // in production: secrets.File("/var/run/secrets/db/db.json")
	cred, err := src.Fetch(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	// A Credential prints with its password redacted.
	fmt.Println(cred)
	fmt.Println(cred.Username, cred.Port)

	// Errors name the file and the problem, never the contents.
	if err := os.WriteFile(path, []byte(`{"username":"app"}`), 0o600); err != nil {
		log.Fatal(err)
	}
	_, err = src.Fetch(context.Background())
	fmt.Println(errors.Is(err, secrets.ErrEmptyPassword))
	// Output:
	// {Username:"app" Password:[REDACTED] Host:"db.example.com" Port:5432 Database:"orders"}
	// app 5432
	// true
}

// Separate environment variables. Lookup stands in for the process
// environment here; leave it nil to read os.LookupEnv.
func ExampleEnv() {
	environment := map[string]string{
		"DB_USER":     "app",
		"DB_PASSWORD": "s3cr3t-Pa55\n", // one trailing line break is removed
		"DB_HOST":     "db.example.com",
		"DB_PORT":     "5432",
	}
	src := secrets.Env(secrets.EnvVars{
		Lookup: func(name string) (string, bool) {
			v, ok := environment[name]
			return v, ok
		},
	})
	cred, err := src.Fetch(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(secrets.Describe(src))
	fmt.Println(cred)
	fmt.Println(len(cred.Password))
	// Output:
	// env DB_USER/DB_PASSWORD
	// {Username:"app" Password:[REDACTED] Host:"db.example.com" Port:5432}
	// 11
}

// The whole secret in one variable, as ECS and Kubernetes inject a secret
// from AWS Secrets Manager, here with custom key names.
func ExampleEnv_json() {
	environment := map[string]string{
		"DB_SECRET": `{"user":"app","pass":"s3cr3t-Pa55","port":"6432"}`,
	}
	src := secrets.Env(secrets.EnvVars{
		JSON: "DB_SECRET",
		Keys: secrets.Keys{Username: "user", Password: "pass"},
		Lookup: func(name string) (string, bool) {
			v, ok := environment[name]
			return v, ok
		},
	})
	cred, err := src.Fetch(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(secrets.Describe(src))
	fmt.Println(cred)
	// Output:
	// env DB_SECRET
	// {Username:"app" Password:[REDACTED] Port:6432}
}

// ParseSecret accepts both forms a secret string takes.
func ExampleParseSecret() {
	for _, secret := range []string{
		`{"username":"app","password":"s3cr3t-Pa55","port":"5432"}`,
		"s3cr3t-Pa55\n",
		`{"username":"app","password":12345}`,
	} {
		cred, err := secrets.ParseSecret([]byte(secret), secrets.Keys{})
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		fmt.Println(cred)
	}
	// Output:
	// {Username:"app" Password:[REDACTED] Port:5432}
	// {Username:"" Password:[REDACTED]}
	// error: secrets: malformed secret: field "password" is a number, want a string
}
