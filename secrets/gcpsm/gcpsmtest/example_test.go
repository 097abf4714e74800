package gcpsmtest_test

import (
	"context"
	"fmt"
	"log"

	"github.com/pgrotate/rotating/secrets/gcpsm"
	"github.com/pgrotate/rotating/secrets/gcpsm/gcpsmtest"
)

// A rotation as an application sees it through a gcpsm source: a new
// version is added, and the next Fetch of "latest" returns it.
func Example() {
	srv := gcpsmtest.NewServer().Start()
	defer srv.Close()
	ctx := context.Background()
	client, err := srv.Client(ctx)
	if err != nil {
		log.Fatal(err)
	}

	name := srv.CreateSecret("projects/my-project/secrets/db")
	srv.AddVersion(name, []byte(`{"username":"app","password":"first"}`))
	src, err := gcpsm.New(client, "projects/my-project/secrets/db")
	if err != nil {
		log.Fatal(err)
	}
	c, err := src.Fetch(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("version", c.Version, "user", c.Username)

	srv.AddVersion(name, []byte(`{"username":"app","password":"second"}`))
	if c, err = src.Fetch(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("version", c.Version, "user", c.Username)
	fmt.Println(srv.Calls(gcpsmtest.MethodAccessSecretVersion), "AccessSecretVersion requests")
	// Output:
	// version 1 user app
	// version 2 user app
	// 2 AccessSecretVersion requests
}
