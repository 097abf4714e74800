package azkvtest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// Scope is the token scope the azsecrets client asks a credential for after
// the server's challenge: the challenge's resource with "/.default".
const Scope = Resource + "/.default"

// Credential is an [azcore.TokenCredential] that hands out the one bearer
// token its [Server] accepts, standing in for azidentity's credentials. It
// refuses a request for any scope but [Scope] or any tenant but [TenantID],
// so a client that did not follow the server's challenge fails. It is safe
// for concurrent use.
type Credential struct {
	token string

	mu    sync.Mutex
	calls int
	err   error
}

var _ azcore.TokenCredential = (*Credential)(nil)

// GetToken returns the server's token, valid for an hour, or the error set
// with [Credential.SetError].
func (c *Credential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.mu.Lock()
	c.calls++
	err := c.err
	c.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return azcore.AccessToken{}, err
	}
	if err != nil {
		return azcore.AccessToken{}, err
	}
	if !slices.Equal(opts.Scopes, []string{Scope}) {
		return azcore.AccessToken{}, fmt.Errorf("azkvtest: token requested for scopes %q, want [%q]", opts.Scopes, Scope)
	}
	if opts.TenantID != TenantID {
		return azcore.AccessToken{}, fmt.Errorf("azkvtest: token requested for tenant %q, want %q", opts.TenantID, TenantID)
	}
	return azcore.AccessToken{Token: c.token, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// Calls returns how many times GetToken was called. The azsecrets client
// caches a token until five minutes before it expires, so a client makes
// one call for many requests.
func (c *Credential) Calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// SetError makes GetToken fail with err, as a managed identity endpoint
// that is down would; nil restores the token. A client that already holds
// a token keeps using it until it expires or the server rejects it.
func (c *Credential) SetError(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.err = err
}

// String describes c without its token, for %v and %s.
func (c *Credential) String() string { return "azkvtest.Credential{token: [REDACTED]}" }

// GoString describes c without its token, for %#v.
func (c *Credential) GoString() string { return c.String() }
