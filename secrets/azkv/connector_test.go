package azkv_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets/azkv"
)

// versionsAPI is an in-memory vault for tests of timing: GetSecret returns
// the newest version, with its expiry, as Key Vault does. It counts calls.
type versionsAPI struct {
	mu       sync.Mutex
	versions []azsecrets.Secret
	calls    int
}

func (a *versionsAPI) add(password string, expires time.Time) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	version := fmt.Sprintf("%032x", len(a.versions)+1)
	id := azsecrets.ID("https://v.vault.azure.net/secrets/db-app/" + version)
	a.versions = append(a.versions, azsecrets.Secret{
		ID:         &id,
		Value:      to.Ptr(`{"username":"app","password":"` + password + `"}`),
		Attributes: &azsecrets.SecretAttributes{Enabled: to.Ptr(true), Expires: &expires},
	})
	return version
}

func (a *versionsAPI) GetSecret(context.Context, string, string, *azsecrets.GetSecretOptions) (azsecrets.GetSecretResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	return azsecrets.GetSecretResponse{Secret: a.versions[len(a.versions)-1]}, nil
}

func (a *versionsAPI) Calls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls
}

// TestRefreshAheadOfExpiry checks, on synctest's clock, that a version's
// exp drives the connector's refresh: with a version that expires in an
// hour and a 5-minute lead (jittered up to 7.5 minutes), the vault is
// asked again between 52.5 and 55 minutes after the first fetch, not
// before and not later, and the new version then in the vault is used
// from then on.
func TestRefreshAheadOfExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := &versionsAPI{}
		first := api.add("p1", time.Now().Add(time.Hour))
		src, err := azkv.NewFromClient(api, "db-app")
		if err != nil {
			t.Fatal(err)
		}
		db := testkit.NewFakeDB("app", "p1")
		c, err := rotating.NewConnector("host=db.example dbname=app sslmode=disable", src,
			rotating.WithNewConnector(db.Connector),
			rotating.WithRefreshBeforeExpiry(5*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conn, err := c.Connect(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if st := c.Stats(); st.CredentialVersion != first || api.Calls() != 1 {
			t.Fatalf("after the first Connect: version %q, %d calls; want %s and 1", st.CredentialVersion, api.Calls(), first)
		}

		// The rotation job adds the next version well ahead of exp (as an
		// Event Grid near-expiry handler would) and changes the password.
		second := api.add("p2", time.Now().Add(2*time.Hour))
		db.SetPassword("app", "p2")

		time.Sleep(52*time.Minute + 29*time.Second)
		synctest.Wait()
		if n := api.Calls(); n != 1 {
			t.Fatalf("the vault was asked %d times in the first 52.5 minutes, want 1", n)
		}
		time.Sleep(2*time.Minute + 32*time.Second) // 55 minutes and a second
		synctest.Wait()
		if n := api.Calls(); n != 2 {
			t.Fatalf("the vault was asked %d times by 55 minutes, want 2 (one refresh ahead of exp)", n)
		}
		if st := c.Stats(); st.CredentialVersion != second || st.AuthFailures != 0 {
			t.Errorf("after the refresh: version %q, %d rejected logins; want %s and 0", st.CredentialVersion, st.AuthFailures, second)
		}
		conn, err = c.Connect(t.Context())
		if err != nil {
			t.Fatalf("Connect with the refreshed version: %v", err)
		}
		conn.Close()
	})
}
