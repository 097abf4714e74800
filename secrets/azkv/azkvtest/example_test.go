package azkvtest_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/pgrotate/rotating/secrets/azkv/azkvtest"
)

// A test starts a vault, adds versions through the real SDK client and
// reads them back; the client's first request meets the bearer challenge.
func ExampleServer() {
	ctx := context.Background()
	srv := azkvtest.NewServer().Start()
	defer srv.Close()
	client := srv.Client()

	first, err := client.SetSecret(ctx, "db-app", azsecrets.SetSecretParameters{Value: to.Ptr(`{"username":"app","password":"p1"}`)}, nil)
	if err != nil {
		log.Fatal(err)
	}
	// A rotation: a new version, which becomes the latest.
	if _, err := client.SetSecret(ctx, "db-app", azsecrets.SetSecretParameters{Value: to.Ptr(`{"username":"app","password":"p2"}`)}, nil); err != nil {
		log.Fatal(err)
	}
	latest, err := client.GetSecret(ctx, "db-app", "", nil)
	if err != nil {
		log.Fatal(err)
	}
	old, err := client.GetSecret(ctx, "db-app", first.ID.Version(), nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("latest:", *latest.Value)
	fmt.Println("first: ", *old.Value)
	fmt.Println("versions:", len(srv.Versions("db-app")))
	fmt.Println("challenges:", srv.Challenges(), "GetSecret:", srv.Calls(azkvtest.OpGetSecret), "SetSecret:", srv.Calls(azkvtest.OpSetSecret))
	// Output:
	// latest: {"username":"app","password":"p2"}
	// first:  {"username":"app","password":"p1"}
	// versions: 2
	// challenges: 1 GetSecret: 2 SetSecret: 2
}

// Injected faults reach the SDK as Key Vault's error answers.
func ExampleServer_InjectFault() {
	ctx := context.Background()
	srv := azkvtest.NewServer().Start()
	defer srv.Close()
	srv.SetSecret("db-app", "p1")

	o := srv.ClientOptions()
	o.Retry = policy.RetryOptions{MaxRetries: -1} // one request per call
	client, err := azsecrets.NewClient(srv.URL(), srv.Credential(), o)
	if err != nil {
		log.Fatal(err)
	}
	srv.InjectFault(azkvtest.OpGetSecret, azkvtest.Fault{Status: 429, RetryAfter: 10 * time.Second, Count: 1})
	_, err = client.GetSecret(ctx, "db-app", "", nil)
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		fmt.Println(re.StatusCode, re.ErrorCode, "Retry-After:", re.RawResponse.Header.Get("Retry-After"))
	}
	s, err := client.GetSecret(ctx, "db-app", "", nil)
	fmt.Println(*s.Value, err)
	// Output:
	// 429 Throttled Retry-After: 10
	// p1 <nil>
}
