package vaultintegration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/api/auth/approle"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets/vault"
	"github.com/pgrotate/rotating/secrets/vault/vaulttest"
)

// tokenTTL is the lifetime of every token in TestTokenExpiry: twice a
// lease's TTL, so that the token's end falls among the lease's renewals.
const tokenTTL = 6 * time.Second

// nonRenewableLogin is an auth method whose tokens cannot be renewed, as
// Vault's batch tokens, or tokens of a role with renewable=false: it makes
// each one through auth/token/create with renewable=false.
type nonRenewableLogin struct{ issuer *api.Client }

func (l nonRenewableLogin) Login(ctx context.Context, _ *api.Client) (*api.Secret, error) {
	renewable := false
	return l.issuer.Auth().Token().CreateOrphanWithContext(ctx, &api.TokenCreateRequest{
		TTL: tokenTTL.String(), Renewable: &renewable, DisplayName: "app",
	})
}

// TestTokenExpiry runs a dynamic role (3 s leases, 10 s max_ttl) for 12 s,
// two token lifetimes, with tokens of 6 s that Vault revokes, with their
// leases, when they expire:
//
//   - renewable: a renewable token given to the client (VAULT_TOKEN): the
//     client renews it (renew-self) before it expires and before a lease
//     would outlive it; it stays alive and every lease ends at its own end;
//   - approle_max_ttl: AppRole with token_ttl = token_max_ttl = 6 s, so a
//     renewal gains nothing: the client logs in again, and the next Fetch
//     reads a new lease with the new token;
//   - non_renewable: a login (any auth method) that issues non-renewable
//     tokens: the client logs in again at two thirds of the TTL.
//
// In every case no statement fails, no session of an ended lease is open
// at its end (the leases of an expiring token are retired before the
// token's end, which the credential's SessionsEnd says), and no token,
// password or secret id appears in an error, a log line (connector, Vault
// client, Vault server) or the %v and %+v of the values the application
// holds.
func TestTokenExpiry(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		client func(t *testing.T, e *env) (*vault.Client, string)
		login  vaulttest.Op // the login's operation, "" for none
	}{
		{"renewable", func(t *testing.T, e *env) (*vault.Client, string) {
			tok := e.token(t, vaulttest.TokenOptions{TTL: tokenTTL, DisplayName: "app"})
			return e.client(t, tok), tok
		}, ""},
		{"approle_max_ttl", func(t *testing.T, e *env) (*vault.Client, string) {
			roleID, secretID, err := e.srv.SetAppRole("app", vaulttest.AppRole{TokenTTL: tokenTTL, TokenMaxTTL: tokenTTL})
			if err != nil {
				t.Fatal(err)
			}
			e.known.Add(secretID)
			return e.client(t, "", vault.WithAppRole("", roleID, &approle.SecretID{FromString: secretID})), ""
		}, vaulttest.OpAppRoleLogin},
		{"non_renewable", func(t *testing.T, e *env) (*vault.Client, string) {
			issuer, err := e.srv.Client("")
			if err != nil {
				t.Fatal(err)
			}
			return e.client(t, "", vault.WithAuthMethod("non-renewable", nonRenewableLogin{issuer})), ""
		}, vaulttest.OpTokenCreate},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testTokenExpiry(t, tc.client, tc.login)
		})
	}
}

func testTokenExpiry(t *testing.T, newClient func(*testing.T, *env) (*vault.Client, string), loginOp vaulttest.Op) {
	const workers, runFor = 8, 2 * tokenTTL
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	pg := pgtest.Shared(t)
	e := newEnv(t, pg)
	table := e.newTable(t)
	if err := e.srv.SetRole("app", dynamicRole(table, leaseTTL, leaseMaxTTL, true)); err != nil {
		t.Fatal(err)
	}
	vc, given := newClient(t, e)
	src, err := vault.DynamicRole(vc, "", "app")
	if err != nil {
		t.Fatal(err)
	}
	c, db := e.open(t, src, rotating.WithSessionMargin(sessionMargin), rotating.WithRefreshBeforeExpiry(refreshBefore))
	db.SetMaxIdleConns(workers)

	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); e.watch.run(watchCtx, 50*time.Millisecond) }()
	defer func() { stopWatch(); <-watchDone }()

	start := time.Now()
	load := testkit.StartInserts(ctx, db, table, workers, 1<<30, 10*time.Millisecond)
	err = testkit.Sleep(ctx, runFor)
	load.Finish()
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	logins := int64(0)
	if loginOp != "" {
		logins = e.srv.Calls(loginOp)
	}
	renewSelf, lookupSelf := e.srv.Calls(vaulttest.OpRenewSelf), e.srv.Calls(vaulttest.OpLookupSelf)
	reads, renewals := e.srv.Calls(vaulttest.OpCreds), e.srv.Calls(vaulttest.OpLeaseRenew)
	leases := e.srv.Leases()
	res := e.check(ctx, t, load)

	// What the application holds, formatted as a log line or an error
	// message would: a credential, the source, the client, the connector
	// (once closed: formatting reads their fields without their locks).
	cred, err := src.Fetch(ctx)
	e.noteError(err)
	if err := db.Close(); err != nil {
		t.Errorf("closing the pool: %v", err)
	}
	e.mu.Lock()
	for _, v := range []any{cred, src, vc, c, st} {
		e.errors = append(e.errors, fmt.Sprintf("%v", v), fmt.Sprintf("%+v", v), fmt.Sprintf("%#v", v))
	}
	e.mu.Unlock()

	ends := map[vaulttest.EndReason]int{}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "lease\tissued\ttoken\trenewals\tended\thow\tsessions at end\t")
	accessors := map[string]int{}
	for i, l := range leases {
		if _, ok := accessors[l.TokenAccessor]; !ok {
			accessors[l.TokenAccessor] = len(accessors) + 1
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%s\t%s\t%d\t\n", i+1, since(start, l.IssueTime), accessors[l.TokenAccessor],
			l.Renewals, since(start, l.EndedAt), l.EndReason, l.SessionsAtEnd)
		if l.Ended {
			ends[l.EndReason]++
		}
		if l.SessionsAtEnd != 0 {
			t.Errorf("lease %d: %d sessions of its role were open at its end (%s)", i+1, l.SessionsAtEnd, l.EndReason)
		}
		if n, ok := e.watch.sessionsAfterEnd(l.ID); l.Ended && !l.RevokedAt.IsZero() && (!ok || n != 0) {
			t.Errorf("lease %d: %d sessions after its revocation (checked: %v)", i+1, n, ok)
		}
	}
	tw.Flush()
	for _, v := range e.watch.violations() {
		t.Error(v)
	}
	t.Logf("%s: %d workers for %v, tokens of %v: %d statements, %d failed, %d rows lost\n"+
		"Vault calls: %d logins, %d renew-self, %d lookup-self, %d reads, %d lease renewals; %d tokens made leases; lease ends %v\n"+
		"connector: %d fetches, %d fetch errors, %d rejected logins, %d pending fetches\n%s",
		t.Name(), workers, elapsed.Round(time.Millisecond), tokenTTL, res.Acknowledged+res.Failures, res.Failures, res.Lost,
		logins, renewSelf, lookupSelf, reads, renewals, len(accessors), ends,
		st.Fetches, st.FetchErrors, st.AuthFailures, st.PendingFetches, b.String())

	if st.AuthFailures != 0 || st.FetchErrors != 0 {
		t.Errorf("Stats: %d rejected logins, %d fetch errors; want 0 and 0", st.AuthFailures, st.FetchErrors)
	}
	// A token lives tokenTTL at most, and its successor is made no earlier
	// than two thirds of it (4 s): over runFor, a token per 4 to 6 s.
	lo, hi := int64(elapsed/tokenTTL), int64(elapsed/(2*tokenTTL/3))+1
	switch {
	case loginOp == "":
		// The given token is renewed, at least once per TTL, at most at
		// every Fetch; it outlives the test and every lease ends at its
		// own end.
		if renewSelf < lo || renewSelf > int64(st.Fetches) {
			t.Errorf("%d renew-self calls in %v, want %d to %d (the Fetches)", renewSelf, elapsed.Round(time.Millisecond), lo, st.Fetches)
		}
		if e.srv.TokenAccessor(given) == "" {
			t.Error("the token expired: the client should have renewed it")
		}
		if lookupSelf != 1 || len(accessors) != 1 {
			t.Errorf("%d lookup-self calls, %d tokens made leases; want 1 and 1", lookupSelf, len(accessors))
		}
		if ends[vaulttest.EndTokenExpired] != 0 || ends[vaulttest.EndTokenRevoked] != 0 {
			t.Errorf("leases ended with their token: %v", ends)
		}
	default:
		if logins < lo+1 || logins > hi+1 {
			t.Errorf("%d logins in %v with %v tokens, want %d to %d", logins, elapsed.Round(time.Millisecond), tokenTTL, lo+1, hi+1)
		}
		// Every token made a lease: after each login, the next Fetch reads
		// with the new token, since the old lease dies with the old one.
		if len(accessors) < int(logins)-1 {
			t.Errorf("%d tokens made leases after %d logins: the source should read a new lease with each new token", len(accessors), logins)
		}
		if loginOp == vaulttest.OpTokenCreate && renewSelf != 0 {
			t.Errorf("%d renew-self calls for non-renewable tokens, want 0", renewSelf)
		}
	}
}
