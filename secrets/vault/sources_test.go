package vault_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/vault"
)

const rootToken = "hvs.RootToken@never-show"

// fakeWithRoot returns a fake Vault with a token that never expires.
func fakeWithRoot() *fakeVault {
	f := newFakeVault()
	f.addToken(rootToken, fakeTokenSpec{})
	return f
}

func wantAs[E error](t *testing.T, err error) E {
	t.Helper()
	var target E
	if !errors.As(err, &target) {
		t.Fatalf("errors.As(%v, %T) = false", err, target)
	}
	return target
}

// wantNoSecret fails the test if s contains one of the values.
func wantNoSecret(t *testing.T, what, s string, values ...string) {
	t.Helper()
	for _, v := range values {
		if v != "" && strings.Contains(s, v) {
			t.Errorf("%s contains the secret value %q: %s", what, v, s)
		}
	}
}

func TestStaticRole(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fakeWithRoot()
		f.static["app"] = &fakeStatic{username: "app", password: "Static-pass@1", lastRotation: time.Now(), period: time.Hour}
		c := newClient(t, f, rootToken)
		src, err := vault.StaticRole(c, "", "app")
		if err != nil {
			t.Fatal(err)
		}
		if got := src.Describe(); got != "vault-static-role database/app" {
			t.Errorf("Describe() = %q", got)
		}
		first, err := src.Fetch(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		wantVersion := time.Now().UTC().Format(time.RFC3339Nano)
		if first.Username != "app" || first.Password != "Static-pass@1" || first.Version != wantVersion {
			t.Errorf("first Fetch = %v (password %q), want app, Static-pass@1, version %s", first, first.Password, wantVersion)
		}
		if !first.Expires.IsZero() || !first.SessionsEnd.IsZero() {
			t.Errorf("Expires %v, SessionsEnd %v: want both zero for a static role", first.Expires, first.SessionsEnd)
		}
		if want := time.Now().Add(time.Hour); !first.NextRotation.Equal(want) {
			t.Errorf("NextRotation = %v, want %v (the rotation period from the last rotation)", first.NextRotation, want)
		}

		sleep(10 * time.Minute)
		f.rotate("app", "Static-pass@2")
		second, err := src.Fetch(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if second.Password != "Static-pass@2" || second.Version == first.Version || second.Username != "app" {
			t.Errorf("after the rotation: %v (password %q), want a new password and version", second, second.Password)
		}
		// One lookup-self (the token never expires: no renewal), one read per Fetch.
		if got := f.count("GET auth/token/lookup-self"); got != 1 {
			t.Errorf("lookup-self calls = %d, want 1", got)
		}
		if got, total := f.count("GET database/static-creds/app"), f.total(); got != 2 || total != 3 {
			t.Errorf("static-creds reads = %d, total calls %d; want 2 and 3", got, total)
		}
	})
}

func TestKV(t *testing.T) {
	f := fakeWithRoot()
	f.putKV("prod/db", `{"engine":"postgres","host":"db.internal","port":5432,"username":"app","password":"Kv-pass@1","dbname":"app"}`)
	f.putKV("prod/db", `{"username":"app","password":"Kv-pass@2","port":"6432"}`)
	f.putKV("custom", `{"user":"svc","pass":"Kv-pass@3"}`)
	c := newClient(t, f, rootToken)

	tests := []struct {
		name     string
		path     string
		opts     []vault.SourceOption
		describe string
		want     secrets.Credential
	}{
		{"latest version", "prod/db", nil, "vault-kv secret/prod/db",
			secrets.Credential{Username: "app", Password: "Kv-pass@2", Port: 6432, Version: "2"}},
		{"pinned version", "/prod/db/", []vault.SourceOption{vault.WithVersion(1)}, "vault-kv secret/prod/db version 1",
			secrets.Credential{Username: "app", Password: "Kv-pass@1", Host: "db.internal", Port: 5432, Database: "app", Version: "1"}},
		{"custom keys", "custom", []vault.SourceOption{vault.WithKeys(secrets.Keys{Username: "user", Password: "pass"})}, "vault-kv secret/custom",
			secrets.Credential{Username: "svc", Password: "Kv-pass@3", Version: "1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, err := vault.KV(c, "secret", tc.path, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if got := src.Describe(); got != tc.describe {
				t.Errorf("Describe() = %q, want %q", got, tc.describe)
			}
			got, err := src.Fetch(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Fetch = %v (password %q), want %v (password %q)", got, got.Password, tc.want, tc.want.Password)
			}
		})
	}

	t.Run("deleted version", func(t *testing.T) {
		f.mu.Lock()
		f.kv["prod/db"][0].deleted = true
		f.mu.Unlock()
		src, _ := vault.KV(c, "secret", "prod/db", vault.WithVersion(1))
		_, err := src.Fetch(t.Context())
		if !errors.Is(err, vault.ErrNotFound) {
			t.Fatalf("Fetch of a deleted version: %v, want ErrNotFound", err)
		}
		if ve := wantAs[*vault.Error](t, err); ve.Op != vault.OpRead || ve.Path != "secret/data/prod/db" || ve.StatusCode != 404 {
			t.Errorf("error %+v", ve)
		}
	})
	t.Run("no such secret", func(t *testing.T) {
		src, _ := vault.KV(c, "secret", "nothing/here")
		_, err := src.Fetch(t.Context())
		if !errors.Is(err, vault.ErrNotFound) || wantAs[*api.ResponseError](t, err).StatusCode != 404 {
			t.Fatalf("Fetch: %v, want a 404", err)
		}
		if want := "vault: read secret/data/nothing/here: 404 not found"; err.Error() != want {
			t.Errorf("error %q, want %q", err, want)
		}
	})
}

func TestConstructorsRefuseBadInput(t *testing.T) {
	c := newClient(t, fakeWithRoot(), rootToken)
	tests := []struct {
		name string
		make func() error
		want error
	}{
		{"nil client", func() error { _, err := vault.StaticRole(nil, "", "app"); return err }, nil},
		{"empty role", func() error { _, err := vault.DynamicRole(c, "", ""); return err }, nil},
		{"role with a slash", func() error { _, err := vault.DynamicRole(c, "", "a/b"); return err }, nil},
		{"mount with ..", func() error { _, err := vault.StaticRole(c, "db/../sys", "app"); return err }, nil},
		{"empty KV path", func() error { _, err := vault.KV(c, "", "/"); return err }, nil},
		{"KV path with a query", func() error { _, err := vault.KV(c, "", "a?version=2"); return err }, nil},
		{"WithVersion 0", func() error { _, err := vault.KV(c, "", "a", vault.WithVersion(0)); return err }, vault.ErrInvalidOption},
		{"WithVersion on a dynamic role", func() error { _, err := vault.DynamicRole(c, "", "app", vault.WithVersion(2)); return err }, vault.ErrInvalidOption},
		{"WithKeys on a static role", func() error { _, err := vault.StaticRole(c, "", "app", vault.WithKeys(secrets.Keys{})); return err }, vault.ErrInvalidOption},
		{"WithLeaseIncrement on KV", func() error { _, err := vault.KV(c, "", "a", vault.WithLeaseIncrement(time.Minute)); return err }, vault.ErrInvalidOption},
		{"WithLeaseIncrement below a second", func() error {
			_, err := vault.DynamicRole(c, "", "a", vault.WithLeaseIncrement(time.Millisecond))
			return err
		}, vault.ErrInvalidOption},
		{"token file and login", func() error {
			_, err := vault.NewClient(newAPI(t, fakeWithRoot(), ""), vault.WithTokenFile("/x"), vault.WithKubernetes("", "app", "/y"))
			return err
		}, vault.ErrInvalidOption},
		{"two logins", func() error {
			_, err := vault.NewClient(newAPI(t, fakeWithRoot(), ""), vault.WithKubernetes("", "a", ""), vault.WithKubernetes("", "b", ""))
			return err
		}, vault.ErrInvalidOption},
		{"nil logger", func() error {
			_, err := vault.NewClient(newAPI(t, fakeWithRoot(), ""), vault.WithLogger(nil))
			return err
		}, vault.ErrInvalidOption},
		{"client token with a control character", func() error { _, err := vault.NewClient(newAPI(t, fakeWithRoot(), "abc\x01def")); return err }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.make()
			if err == nil {
				t.Fatal("no error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v, want one wrapping %v", err, tc.want)
			}
			wantNoSecret(t, "error", err.Error(), "abc\x01def")
		})
	}
}

// fetchAt advances the bubble's clock to at (measured from start) and
// fetches.
func fetchAt(t *testing.T, src secrets.Source, start time.Time, at time.Duration) (secrets.Credential, error) {
	t.Helper()
	if d := time.Until(start.Add(at)); d > 0 {
		sleep(d)
	}
	return src.Fetch(t.Context())
}

// TestDynamicRoleRenewal walks one lease from its read to its max_ttl: a
// role with a 3 s TTL and a 10 s max_ttl, fetched every 2 s as the
// connector would ahead of each lease end.
func TestDynamicRoleRenewal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fakeWithRoot()
		f.dynamic["app"] = &fakeDynamic{ttl: 3 * time.Second, maxTTL: 10 * time.Second, renewable: true}
		c := newClient(t, f, rootToken)
		src, err := vault.DynamicRole(c, "database", "app")
		if err != nil {
			t.Fatal(err)
		}
		if got := src.Describe(); got != "vault-dynamic-role database/app" {
			t.Errorf("Describe() = %q", got)
		}
		start := time.Now()
		first, err := src.Fetch(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(first.Username, "v-token-app-") || !strings.HasPrefix(first.Version, "database/creds/app/lease") {
			t.Errorf("first credential %v", first)
		}
		if want := start.Add(3 * time.Second); !first.SessionsEnd.Equal(want) {
			t.Errorf("SessionsEnd = %v, want %v (the lease's end)", first.SessionsEnd, want)
		}
		if !first.Expires.IsZero() {
			t.Errorf("Expires = %v, want zero", first.Expires)
		}

		// Renewals at 2, 4 and 6 s, each granting the full 3 s.
		for _, at := range []time.Duration{2, 4, 6} {
			got, err := fetchAt(t, src, start, at*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if !got.SameLogin(first) || got.Version != first.Version {
				t.Fatalf("at %v s: a new login %v; want the renewed lease", at, got)
			}
			if want := start.Add(at*time.Second + 3*time.Second); !got.SessionsEnd.Equal(want) {
				t.Errorf("at %v s: SessionsEnd = %v, want %v", at, got.SessionsEnd.Sub(start), want.Sub(start))
			}
		}
		if r, n := f.count("PUT sys/leases/renew"), f.count("GET database/creds/app"); r != 3 || n != 1 {
			t.Fatalf("after 3 renewals: %d renewals, %d reads; want 3 and 1", r, n)
		}

		// At 8 s the renewal is capped (2 s left to max_ttl): the same
		// login, whose sessions end at the max_ttl.
		capped, err := fetchAt(t, src, start, 8*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !capped.SameLogin(first) || !capped.SessionsEnd.Equal(start.Add(10*time.Second)) {
			t.Fatalf("at 8 s: %v, want the lease renewed to its max_ttl (10 s)", capped)
		}
		// At 9 s, a new lease without trying to renew the old one.
		second, err := fetchAt(t, src, start, 9*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if second.SameLogin(first) || second.Version == first.Version {
			t.Fatalf("at 9 s: %v, want a new lease (the old one reached max_ttl)", second)
		}
		if r, n := f.count("PUT sys/leases/renew"), f.count("GET database/creds/app"); r != 4 || n != 2 {
			t.Errorf("lease 1: %d renewals (the last one capped), %d reads; want 4 and 2", r, n)
		}
		if want := start.Add(9*time.Second + 3*time.Second); !second.SessionsEnd.Equal(want) {
			t.Errorf("new lease's SessionsEnd = %v, want %v", second.SessionsEnd.Sub(start), want.Sub(start))
		}
		// Vault calls per lease: 1 read, 3 renewals that extend it, 1 capped renewal.
		// The token never expires, so it costs one lookup-self for the process.
		if total := f.total(); total != 1+4+2 {
			t.Errorf("total calls %d, want 7", total)
		}
	})
}

func TestDynamicRoleReadsInsteadOfRenewing(t *testing.T) {
	tests := []struct {
		name string
		role fakeDynamic
		// between runs between the first and the second Fetch, after wait.
		wait    time.Duration
		between func(f *fakeVault, first secrets.Credential)
		renews  int // sys/leases/renew calls made by the second Fetch
	}{
		{name: "not renewable", role: fakeDynamic{ttl: 60 * time.Second, maxTTL: time.Hour}, wait: 10 * time.Second, renews: 0},
		{name: "lease ended", role: fakeDynamic{ttl: 3 * time.Second, maxTTL: time.Hour, renewable: true}, wait: 5 * time.Second, renews: 0},
		{name: "lease revoked early", role: fakeDynamic{ttl: 60 * time.Second, maxTTL: time.Hour, renewable: true}, wait: time.Second,
			between: func(f *fakeVault, first secrets.Credential) { f.revokeLease(first.Version) }, renews: 1},
		{name: "renewal forbidden", role: fakeDynamic{ttl: 60 * time.Second, maxTTL: time.Hour, renewable: true}, wait: time.Second,
			between: func(f *fakeVault, _ secrets.Credential) {
				f.setFault(func(r *http.Request) (int, string, bool, bool) {
					return 403, vaultErr("1 error occurred:\n\t* permission denied\n\n"), false, r.URL.Path == "/v1/sys/leases/renew"
				})
			}, renews: 1},
		{name: "past max_ttl", role: fakeDynamic{ttl: 60 * time.Second, maxTTL: 60 * time.Second, renewable: true}, wait: 59800 * time.Millisecond, renews: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := fakeWithRoot()
				role := tc.role
				f.dynamic["app"] = &role
				c := newClient(t, f, rootToken)
				src, _ := vault.DynamicRole(c, "", "app")
				first, err := src.Fetch(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				sleep(tc.wait)
				if tc.between != nil {
					tc.between(f, first)
				}
				second, err := src.Fetch(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if second.SameLogin(first) || second.Version == first.Version {
					t.Errorf("second Fetch returned the first lease again: %v", second)
				}
				if got := f.count("PUT sys/leases/renew"); got != tc.renews {
					t.Errorf("renewals = %d, want %d", got, tc.renews)
				}
				if got := f.count("GET database/creds/app"); got != 2 {
					t.Errorf("reads = %d, want 2", got)
				}
			})
		})
	}
}

func TestDynamicRoleRenewalFailureKeepsTheLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fakeWithRoot()
		f.dynamic["app"] = &fakeDynamic{ttl: time.Minute, maxTTL: time.Hour, renewable: true}
		c := newClient(t, f, rootToken)
		src, _ := vault.DynamicRole(c, "", "app")
		first, err := src.Fetch(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		sleep(40 * time.Second)
		f.setFault(func(r *http.Request) (int, string, bool, bool) { return 503, vaultErr("Vault is sealed"), false, true })
		_, err = src.Fetch(t.Context())
		if !errors.Is(err, vault.ErrSealed) {
			t.Fatalf("Fetch while sealed: %v, want ErrSealed", err)
		}
		ve := wantAs[*vault.Error](t, err)
		if ve.Op != vault.OpRenewLease || ve.LeaseID != first.Version || ve.StatusCode != 503 {
			t.Errorf("error %+v, want the renewal of %s", ve, first.Version)
		}
		if want := "vault: renew lease sys/leases/renew lease " + first.Version + ": 503 Vault is sealed"; err.Error() != want {
			t.Errorf("error text %q, want %q", err, want)
		}
		// The client's own retries: 1 + VAULT_MAX_RETRIES (2) attempts.
		if got := f.count("PUT sys/leases/renew"); got != 3 {
			t.Errorf("renewal attempts = %d, want 3", got)
		}
		f.setFault(nil)
		again, err := src.Fetch(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !again.SameLogin(first) {
			t.Errorf("after Vault came back: %v, want the same lease renewed", again)
		}
	})
}

func TestDynamicRoleFetchPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fakeWithRoot()
		f.dynamic["app"] = &fakeDynamic{ttl: time.Minute, maxTTL: time.Hour, renewable: true}
		c := newClient(t, f, rootToken)
		src, _ := vault.DynamicRole(c, "", "app")
		first, err := src.Fetch(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		// The database rejected first, and a Fetch (a renewal) returned it again.
		if again, err := src.Fetch(t.Context()); err != nil || !again.SameLogin(first) {
			t.Fatalf("Fetch = %v, %v; want the renewed lease", again, err)
		}
		pending, err := src.FetchPending(t.Context(), first)
		if err != nil {
			t.Fatal(err)
		}
		if pending.SameLogin(first) || pending.Version == first.Version {
			t.Fatalf("FetchPending returned the rejected login: %v", pending)
		}
		// The new lease is the one held now: the next Fetch renews it.
		next, err := src.Fetch(t.Context())
		if err != nil || !next.SameLogin(pending) {
			t.Fatalf("Fetch after FetchPending = %v, %v; want the pending lease renewed", next, err)
		}
		if r, n := f.count("PUT sys/leases/renew"), f.count("GET database/creds/app"); r != 2 || n != 2 {
			t.Errorf("%d renewals, %d reads; want 2 and 2", r, n)
		}
	})
}

func TestConcurrentFetch(t *testing.T) {
	f := newFakeVault()
	f.dynamic["app"] = &fakeDynamic{ttl: time.Hour, maxTTL: 24 * time.Hour, renewable: true}
	f.static["app"] = &fakeStatic{username: "app", password: "Static-pass@1", lastRotation: time.Now(), period: time.Hour}
	f.approle.roleID, f.approle.secretID = "role-1", "Secret-id@1"
	f.approle.token = fakeTokenSpec{ttl: time.Hour, maxTTL: 2 * time.Hour, renewable: true}
	c := newClient(t, f, "", appRole("Secret-id@1"))
	dyn, _ := vault.DynamicRole(c, "", "app")
	static, _ := vault.StaticRole(c, "", "app")
	const workers, rounds = 16, 20
	errs := make(chan error, workers*rounds)
	done := make(chan struct{})
	for w := range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			var src secrets.Source = dyn
			if w%2 == 1 {
				src = static
			}
			for range rounds {
				cred, err := src.Fetch(context.Background())
				if err == nil && cred.Password == "" {
					err = errors.New("empty password")
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	for range workers {
		<-done
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// One login for all: the others waited for it.
	if got := f.count("PUT auth/approle/login"); got != 1 {
		t.Errorf("logins = %d, want 1", got)
	}
	if got := f.count("GET database/static-creds/app"); got != workers/2*rounds {
		t.Errorf("static reads = %d, want %d", got, workers/2*rounds)
	}
	reads, renews := f.count("GET database/creds/app"), f.count("PUT sys/leases/renew")
	if reads+renews != workers/2*rounds || reads < 1 || reads > workers/2 {
		t.Errorf("dynamic: %d reads and %d renewals; want %d calls, at most one read per worker", reads, renews, workers/2*rounds)
	}
}
