package gcpsm_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"

	"google.golang.org/grpc/status"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/secrets/gcpsm"
	"github.com/pgrotate/rotating/secrets/gcpsm/gcpsmtest"
)

// In production the client comes from Open, or from secretmanager.NewClient.
// Here it is the real client for a local gcpsmtest server.
func Example() {
	ctx := context.Background()
	srv := gcpsmtest.NewServer().Start()
	defer srv.Close()
	client, err := srv.Client(ctx)
	if err != nil {
		log.Fatal(err)
	}
	name := srv.CreateSecret("projects/my-project/secrets/app-db")
	srv.AddVersion(name, []byte(`{"engine":"postgres","host":"10.0.0.5","port":5432,"username":"app","password":"s3cr3t","dbname":"app"}`))

	src, err := gcpsm.New(client, "projects/my-project/secrets/app-db")
	if err != nil {
		log.Fatal(err)
	}
	cred, err := src.Fetch(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(src.Describe())
	fmt.Println("version:", cred.Version)
	fmt.Println(cred) // formatting a Credential redacts the password
	// Output:
	// gcp-secretmanager projects/my-project/secrets/app-db/versions/latest
	// version: 1
	// {Username:"app" Password:[REDACTED] Host:"10.0.0.5" Port:5432 Database:"app" Version:"1"}
}

// Open builds its own client; WithClientOptions passes it options, here
// those that point it at a local gcpsmtest server. The source is then
// given to the connector, which calls it once on first use and once per
// rotation.
func ExampleOpen() {
	ctx := context.Background()
	srv := gcpsmtest.NewServer().Start()
	defer srv.Close()
	srv.AddVersion(srv.CreateSecret("projects/my-project/secrets/app-db"), []byte("s3cr3t"))

	src, err := gcpsm.Open(ctx, "projects/my-project/secrets/app-db",
		gcpsm.WithClientOptions(srv.ClientOptions()...))
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()

	connector, err := rotating.NewConnector("host=10.0.0.5 user=app dbname=app sslmode=require", src)
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(connector) // logs in on first use
	defer db.Close()
	fmt.Println("source:", src.Describe())
	// Output:
	// source: gcp-secretmanager projects/my-project/secrets/app-db/versions/latest
}

// A store failure keeps its gRPC status: here the newest version was
// disabled, which the service answers with FailedPrecondition.
func ExampleError() {
	ctx := context.Background()
	srv := gcpsmtest.NewServer().Start()
	defer srv.Close()
	client, err := srv.Client(ctx)
	if err != nil {
		log.Fatal(err)
	}
	name := srv.CreateSecret("projects/my-project/secrets/app-db")
	srv.AddVersion(name, []byte("s3cr3t"))
	if err := srv.DisableVersion(name + "/versions/1"); err != nil {
		log.Fatal(err)
	}

	src, err := gcpsm.New(client, "projects/my-project/secrets/app-db")
	if err != nil {
		log.Fatal(err)
	}
	_, err = src.Fetch(ctx)
	var gerr *gcpsm.Error
	fmt.Println(errors.As(err, &gerr), gerr.Name)
	fmt.Println(status.Code(err))
	fmt.Println(err)
	// Output:
	// true projects/my-project/secrets/app-db/versions/latest
	// FailedPrecondition
	// gcpsm: AccessSecretVersion projects/my-project/secrets/app-db/versions/latest: rpc error: code = FailedPrecondition desc = Secret Version [projects/100000000001/secrets/app-db/versions/1] is in DISABLED state.
}
