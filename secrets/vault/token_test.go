package vault_test

import (
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/vault/api/auth/approle"

	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets/vault"
)

func appRole(secretID string) vault.ClientOption {
	return vault.WithAppRole("", "role-1", &approle.SecretID{FromString: secretID})
}

func staticFake(f *fakeVault) {
	f.static["app"] = &fakeStatic{username: "app", password: "Static-pass@1", lastRotation: time.Now(), period: 24 * time.Hour}
}

// TestGivenTokenRenewal follows a VAULT_TOKEN-style token with a 30 s TTL
// and a 60 s max TTL: looked up once, renewed once two thirds of its TTL
// have passed, capped at its max TTL, then used until it dies.
func TestGivenTokenRenewal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeVault()
		staticFake(f)
		const given = "hvs.Given@never-show"
		f.addToken(given, fakeTokenSpec{ttl: 30 * time.Second, maxTTL: 60 * time.Second, renewable: true})
		c := newClient(t, f, given)
		src, _ := vault.StaticRole(c, "", "app")
		start := time.Now()
		steps := []struct {
			at                time.Duration
			lookups, renewals int
		}{
			{0, 1, 0},                // learns the TTL
			{15 * time.Second, 1, 0}, // 15 s left of 30: nothing to do
			{21 * time.Second, 1, 1}, // 9 s left, under a third: renewed to 51 s
			{35 * time.Second, 1, 1}, // 16 s left
			{42 * time.Second, 1, 2}, // renewed, capped at the max TTL: 60 s
			{55 * time.Second, 1, 2}, // 5 s left but at max TTL: used as it is
			{59 * time.Second, 1, 2}, // still works
		}
		for _, s := range steps {
			if _, err := fetchAt(t, src, start, s.at); err != nil {
				t.Fatalf("at %v: %v", s.at, err)
			}
			if l, r := f.count("GET auth/token/lookup-self"), f.count("PUT auth/token/renew-self"); l != s.lookups || r != s.renewals {
				t.Fatalf("at %v: %d lookups, %d renewals; want %d and %d", s.at, l, r, s.lookups, s.renewals)
			}
		}
		_, err := fetchAt(t, src, start, 61*time.Second)
		if !errors.Is(err, vault.ErrPermissionDenied) {
			t.Fatalf("after the token's max TTL: %v, want ErrPermissionDenied", err)
		}
		if got := f.count("GET database/static-creds/app"); got != len(steps)+1 {
			t.Errorf("reads = %d, want %d (no repeat: the client's own token cannot be replaced)", got, len(steps)+1)
		}
		wantNoSecret(t, "error", err.Error(), given)
	})
}

// TestAppRoleLoginAndRelogin: a login token with a 30 s TTL and a 45 s max
// TTL is renewed, then replaced by a new login once it cannot be renewed;
// a token revoked early is replaced at the 403 it meets.
func TestAppRoleLoginAndRelogin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeVault()
		staticFake(f)
		f.approle.roleID, f.approle.secretID = "role-1", "Secret-id@one"
		f.approle.token = fakeTokenSpec{ttl: 30 * time.Second, maxTTL: 45 * time.Second, renewable: true}
		dir := t.TempDir()
		secretFile := filepath.Join(dir, "secret-id")
		os.WriteFile(secretFile, []byte("Secret-id@one\n"), 0o600)
		c := newClient(t, f, "", vault.WithAppRole("approle", "role-1", &approle.SecretID{FromFile: secretFile}))
		src, _ := vault.StaticRole(c, "", "app")
		start := time.Now()
		steps := []struct {
			at               time.Duration
			logins, renewals int
		}{
			{0, 1, 0},
			{19 * time.Second, 1, 0},
			{21 * time.Second, 1, 1}, // renewed; capped at 45 s
			{36 * time.Second, 1, 1}, // 9 s left of a 24 s grant: still over a third
			{40 * time.Second, 2, 1}, // 5 s left, cannot be renewed: a new login
			{50 * time.Second, 2, 1},
		}
		for _, s := range steps {
			if _, err := fetchAt(t, src, start, s.at); err != nil {
				t.Fatalf("at %v: %v", s.at, err)
			}
			if l, r := f.count("PUT auth/approle/login"), f.count("PUT auth/token/renew-self"); l != s.logins || r != s.renewals {
				t.Fatalf("at %v: %d logins, %d renewals; want %d and %d", s.at, l, r, s.logins, s.renewals)
			}
		}
		if got := f.count("GET auth/token/lookup-self"); got != 0 {
			t.Errorf("lookup-self calls = %d, want 0: a login tells the TTL", got)
		}

		// The token is revoked early, and the secret id rotated: the read
		// meets a 403, the client logs in again (reading the new secret id)
		// and repeats the read once.
		f.mu.Lock()
		for v := range f.tokens {
			f.revokeTokenLocked(v)
		}
		f.approle.secretID = "Secret-id@two"
		f.mu.Unlock()
		os.WriteFile(secretFile, []byte("Secret-id@two\n"), 0o600)
		reads := f.count("GET database/static-creds/app")
		if _, err := src.Fetch(t.Context()); err != nil {
			t.Fatal(err)
		}
		if l, r := f.count("PUT auth/approle/login"), f.count("GET database/static-creds/app")-reads; l != 3 || r != 2 {
			t.Errorf("after an early revocation: %d logins, %d reads; want 3 and 2", l, r)
		}

		// A wrong secret id: the login's error, without the secret id.
		f.mu.Lock()
		for v := range f.tokens {
			f.revokeTokenLocked(v)
		}
		f.approle.secretID = "Secret-id@three"
		f.mu.Unlock()
		_, err := src.Fetch(t.Context())
		ve := wantAs[*vault.Error](t, err)
		if ve.Op != vault.OpLogin || ve.Path != "auth/approle/login" || ve.StatusCode != 400 {
			t.Errorf("error %+v, want the AppRole login's 400", ve)
		}
		if want := "vault: login auth/approle/login: 400 invalid role or secret ID"; err.Error() != want {
			t.Errorf("error %q, want %q", err, want)
		}
		wantNoSecret(t, "error", err.Error(), "Secret-id@")
	})
}

func TestKubernetesLogin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeVault()
		staticFake(f)
		f.k8s.role, f.k8s.jwt = "app", "eyJ.Jwt@one"
		f.k8s.token = fakeTokenSpec{ttl: time.Hour, renewable: false}
		jwtFile := filepath.Join(t.TempDir(), "token")
		os.WriteFile(jwtFile, []byte("eyJ.Jwt@one"), 0o600)
		c := newClient(t, f, "", vault.WithKubernetes("", "app", jwtFile))
		src, _ := vault.StaticRole(c, "", "app")
		if _, err := src.Fetch(t.Context()); err != nil {
			t.Fatal(err)
		}
		// The kubelet replaces the projected token; the Vault token (not
		// renewable) nears its end: the new login sends the new JWT.
		f.mu.Lock()
		f.k8s.jwt = "eyJ.Jwt@two"
		f.mu.Unlock()
		os.WriteFile(jwtFile, []byte("eyJ.Jwt@two"), 0o600)
		sleep(41 * time.Minute)
		if _, err := src.Fetch(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := f.count("PUT auth/kubernetes/login"); got != 2 {
			t.Errorf("logins = %d, want 2", got)
		}
		if got := f.count("PUT auth/token/renew-self"); got != 0 {
			t.Errorf("renew-self calls = %d, want 0 for a token that is not renewable", got)
		}

		os.Remove(jwtFile)
		f.mu.Lock()
		for v := range f.tokens {
			f.revokeTokenLocked(v)
		}
		f.mu.Unlock()
		_, err := src.Fetch(t.Context())
		if ve := wantAs[*vault.Error](t, err); ve.Op != vault.OpLogin || !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("login without the JWT file: %v, want a login error wrapping fs.ErrNotExist", err)
		}
		wantNoSecret(t, "error", err.Error(), "Jwt@")
	})
}

func TestTokenFile(t *testing.T) {
	f := newFakeVault()
	staticFake(f)
	f.addToken("hvs.File@one", fakeTokenSpec{})
	f.addToken("hvs.File@two", fakeTokenSpec{})
	path := filepath.Join(t.TempDir(), "vault-token")
	write := func(token string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	c := newClient(t, f, "hvs.NotThisOne", vault.WithTokenFile(path))
	src, _ := vault.StaticRole(c, "", "app")
	_, err := src.Fetch(t.Context())
	if ve := wantAs[*vault.Error](t, err); ve.Op != vault.OpTokenFile || ve.Path != path || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Fetch without the file: %v", err)
	}
	write("")
	if _, err := src.Fetch(t.Context()); !errors.Is(err, vault.ErrNoToken) {
		t.Fatalf("Fetch with an empty file: %v, want ErrNoToken", err)
	}
	if got := f.total(); got != 0 {
		t.Fatalf("%d calls to Vault without a token, want 0", got)
	}

	write("hvs.File@one")
	if _, err := src.Fetch(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Vault Agent writes a new token and the old one is revoked.
	write("hvs.File@two")
	f.revokeToken("hvs.File@one")
	if _, err := src.Fetch(t.Context()); err != nil {
		t.Fatalf("after the file changed: %v", err)
	}
	if got := f.count("GET database/static-creds/app"); got != 2 {
		t.Errorf("reads = %d, want 2 (no 403: the change was seen before the call)", got)
	}

	// A change the stat cannot see (same size, same modification time):
	// the 403 makes the client read the file again and repeat the call.
	f.addToken("hvs.File@tri", fakeTokenSpec{})
	fi, _ := os.Stat(path)
	write("hvs.File@tri")
	os.Chtimes(path, fi.ModTime(), fi.ModTime())
	f.revokeToken("hvs.File@two")
	if _, err := src.Fetch(t.Context()); err != nil {
		t.Fatalf("after a hidden change: %v", err)
	}
	if got := f.count("GET database/static-creds/app"); got != 4 {
		t.Errorf("reads = %d, want 4 (the 403 and its repeat)", got)
	}

	// The file disappears (Agent restarting): the token read before is used.
	os.Remove(path)
	if _, err := src.Fetch(t.Context()); err != nil {
		t.Fatalf("with the file gone: %v", err)
	}
	if got := f.count("PUT auth/token/renew-self") + f.count("GET auth/token/lookup-self"); got != 0 {
		t.Errorf("%d lookup or renew calls, want 0: the file's writer renews its token", got)
	}
}

// TestTokenCoversLease: the token that reads a lease must outlive it, or
// the lease dies with it. The client renews the token when it would expire
// first, and when it cannot (max TTL), the credential's SessionsEnd is the
// token's expiry. With a login, the next Fetch logs in again and reads a
// new lease with the new token.
func TestTokenCoversLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeVault()
		f.dynamic["app"] = &fakeDynamic{ttl: 10 * time.Second, maxTTL: time.Hour, renewable: true}
		f.approle.roleID, f.approle.secretID = "role-1", "Secret-id@one"
		f.approle.token = fakeTokenSpec{ttl: 20 * time.Second, maxTTL: 25 * time.Second, renewable: true}
		var logs testkit.LogBuffer
		c := newClient(t, f, "", appRole("Secret-id@one"), vault.WithLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
		src, _ := vault.DynamicRole(c, "", "app")
		start := time.Now()

		first, err := src.Fetch(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if want := start.Add(10 * time.Second); !first.SessionsEnd.Equal(want) {
			t.Errorf("SessionsEnd = %v, want 10 s (the lease's)", first.SessionsEnd.Sub(start))
		}
		// At 8 s the lease is renewed to 18 s; the token (20 s) covers it.
		got, err := fetchAt(t, src, start, 8*time.Second)
		if err != nil || !got.SameLogin(first) {
			t.Fatalf("at 8 s: %v, %v", got, err)
		}
		if r := f.count("PUT auth/token/renew-self"); r != 0 {
			t.Errorf("at 8 s: %d token renewals, want 0", r)
		}
		// At 12 s the lease is renewed to 22 s, past the token's 20 s: the
		// token is renewed, capped at its 25 s max TTL, which covers it.
		got, err = fetchAt(t, src, start, 12*time.Second)
		if err != nil || !got.SameLogin(first) {
			t.Fatalf("at 12 s: %v, %v", got, err)
		}
		if want := start.Add(22 * time.Second); !got.SessionsEnd.Equal(want) {
			t.Errorf("at 12 s: SessionsEnd = %v, want 22 s", got.SessionsEnd.Sub(start))
		}
		// At 18 s the lease would last to 28 s, but the token dies at 25 s
		// and cannot be renewed: its leases end with it.
		got, err = fetchAt(t, src, start, 18*time.Second)
		if err != nil || !got.SameLogin(first) {
			t.Fatalf("at 18 s: %v, %v", got, err)
		}
		if want := start.Add(25 * time.Second); !got.SessionsEnd.Equal(want) {
			t.Errorf("at 18 s: SessionsEnd = %v, want the token's 25 s", got.SessionsEnd.Sub(start))
		}
		if n := logs.CountLines(func(l string) bool { return strings.Contains(l, "the token expires before the lease") }); n != 1 {
			t.Errorf("%d warnings about the token's expiry, want 1:\n%s", n, logs.String())
		}
		// At 23 s the token is due and cannot be renewed: a new login, and
		// the lease of the old token is replaced by a new one.
		second, err := fetchAt(t, src, start, 23*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if second.SameLogin(first) {
			t.Errorf("at 23 s: the old token's lease again, want a new one")
		}
		if l, r, n := f.count("PUT auth/approle/login"), f.count("PUT sys/leases/renew"), f.count("GET database/creds/app"); l != 2 || r != 3 || n != 2 {
			t.Errorf("%d logins, %d lease renewals, %d reads; want 2, 3 and 2", l, r, n)
		}
		wantNoSecret(t, "log", logs.String(), "Secret-id@", "hvs.", "Dyn-pass@")
	})
}

// TestForbiddenRead: a policy that denies the path. With the client's own
// token there is nothing to replace; with a login the client logs in again
// once and repeats the read, then reports the 403.
func TestForbiddenRead(t *testing.T) {
	t.Run("given token", func(t *testing.T) {
		f := fakeWithRoot()
		staticFake(f)
		f.tokens[rootToken].policyDeny = true
		src, _ := vault.StaticRole(newClient(t, f, rootToken), "", "app")
		_, err := src.Fetch(t.Context())
		if !errors.Is(err, vault.ErrPermissionDenied) || f.count("GET database/static-creds/app") != 1 {
			t.Errorf("Fetch: %v after %d reads; want ErrPermissionDenied after 1", err, f.count("GET database/static-creds/app"))
		}
	})
	t.Run("login", func(t *testing.T) {
		f := newFakeVault()
		staticFake(f)
		f.approle.roleID, f.approle.secretID = "role-1", "Secret-id@one"
		f.approle.token = fakeTokenSpec{ttl: time.Hour, renewable: true}
		f.setFault(func(r *http.Request) (int, string, bool, bool) {
			return 403, vaultErr("permission denied"), false, strings.HasPrefix(r.URL.Path, "/v1/database/")
		})
		src, _ := vault.StaticRole(newClient(t, f, "", appRole("Secret-id@one")), "", "app")
		_, err := src.Fetch(t.Context())
		if !errors.Is(err, vault.ErrPermissionDenied) {
			t.Fatalf("Fetch: %v, want ErrPermissionDenied", err)
		}
		if want := "vault: read database/static-creds/app: 403 permission denied"; err.Error() != want {
			t.Errorf("error %q, want %q", err, want)
		}
		if l, r := f.count("PUT auth/approle/login"), f.count("GET database/static-creds/app"); l != 2 || r != 2 {
			t.Errorf("%d logins, %d reads; want 2 and 2", l, r)
		}
	})
}
