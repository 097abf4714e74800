package vaulttest_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets/vault/vaulttest"
)

func TestTokens(t *testing.T) {
	t.Parallel()
	srv, err := vaulttest.NewServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	tok := appToken(t, srv, vaulttest.TokenOptions{TTL: 2 * time.Second, ExplicitMaxTTL: 4 * time.Second, Policies: []string{"app"}, DisplayName: "svc"})
	ta := client(t, srv, tok).Auth().Token()

	look, err := ta.LookupSelfWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := look.Data
	if ttl, _ := d["ttl"].(json.Number).Int64(); ttl < 1 || ttl > 2 {
		t.Errorf("lookup-self ttl %v, want 1..2", d["ttl"])
	}
	if d["renewable"] != true || d["display_name"] != "token-svc" || d["accessor"] != srv.TokenAccessor(tok) || d["type"] != "service" {
		t.Errorf("lookup-self data %v", d)
	}
	if p, _ := look.TokenPolicies(); strings.Join(p, ",") != "app,default" {
		t.Errorf("policies %v, want app,default", p)
	}

	// renew-self extends by the token's TTL, capped at its explicit max.
	r, err := ta.RenewSelfWithContext(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Auth == nil || r.Auth.LeaseDuration != 2 || !r.Auth.Renewable || r.Auth.ClientToken != tok {
		t.Errorf("renew-self auth %+v", r.Auth)
	}
	r, err = ta.RenewSelfWithContext(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if r.Auth.LeaseDuration < 2 || r.Auth.LeaseDuration > 3 || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "capped") {
		t.Errorf("capped renew-self: duration %d warnings %q; want 2..3 and the capped warning", r.Auth.LeaseDuration, r.Warnings)
	}
	if n := srv.Calls(vaulttest.OpRenewSelf); n != 2 {
		t.Errorf("Calls(OpRenewSelf) = %d, want 2", n)
	}

	// A token that is not renewable is refused.
	fixed := appToken(t, srv, vaulttest.TokenOptions{TTL: time.Hour, NotRenewable: true})
	_, err = client(t, srv, fixed).Auth().Token().RenewSelfWithContext(ctx, 0)
	wantStatus(t, err, 400, "lease is not renewable")

	// Past its explicit max the token is dead: 403 like Vault.
	testkit.WaitFor(ctx, t, 10*time.Second, "the token's end", func() bool { return srv.TokenAccessor(tok) == "" })
	_, err = ta.LookupSelfWithContext(ctx)
	wantStatus(t, err, 403, "permission denied")
	_, err = ta.RenewSelfWithContext(ctx, 0)
	wantStatus(t, err, 403, "permission denied")

	// No token, or an unknown one.
	anon := client(t, srv, "")
	anon.ClearToken()
	_, err = anon.Logical().ReadWithContext(ctx, "secret/data/x")
	wantStatus(t, err, 403, "permission denied")
	_, err = client(t, srv, "hvs.not-a-token").Logical().ReadWithContext(ctx, "secret/data/x")
	wantStatus(t, err, 403, "permission denied")

	// The root token never expires and cannot be renewed.
	rl, err := client(t, srv, srv.RootToken()).Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rl.Data["expire_time"] != nil || rl.Data["display_name"] != "root" {
		t.Errorf("root lookup-self %v", rl.Data)
	}

	// auth/token/create through the API.
	made, err := client(t, srv, "").Auth().Token().CreateWithContext(ctx, &api.TokenCreateRequest{TTL: "10m", Policies: []string{"app"}})
	if err != nil {
		t.Fatal(err)
	}
	if made.Auth == nil || made.Auth.LeaseDuration != 600 || !strings.HasPrefix(made.Auth.ClientToken, "hvs.") {
		t.Errorf("auth/token/create: %+v", made.Auth)
	}
	if _, err := client(t, srv, made.Auth.ClientToken).Auth().Token().LookupSelfWithContext(ctx); err != nil {
		t.Errorf("the created token does not work: %v", err)
	}
}

func TestAppRoleLogin(t *testing.T) {
	t.Parallel()
	srv, _ := start(t)
	if err := srv.SetRole("app", vaulttest.DynamicRole{DefaultTTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	roleID, secretID, err := srv.SetAppRole("web", vaulttest.AppRole{TokenTTL: 20 * time.Minute, TokenMaxTTL: time.Hour, TokenPolicies: []string{"db"}})
	if err != nil {
		t.Fatal(err)
	}
	c := client(t, srv, "")
	c.ClearToken()
	s, err := c.Logical().WriteWithContext(t.Context(), "auth/approle/login", map[string]any{"role_id": roleID, "secret_id": secretID})
	if err != nil {
		t.Fatal(err)
	}
	a := s.Auth
	if a == nil || a.ClientToken == "" || a.LeaseDuration != 1200 || !a.Renewable || strings.Join(a.Policies, ",") != "db,default" || a.Metadata["role_name"] != "web" {
		t.Fatalf("login auth %+v", a)
	}
	// The login's token reads credentials; the username carries the
	// auth method's display name.
	c.SetToken(a.ClientToken)
	creds, err := c.Logical().ReadWithContext(t.Context(), "database/creds/app")
	if err != nil {
		t.Fatal(err)
	}
	if u := creds.Data["username"].(string); !strings.HasPrefix(u, "v-approle-app-") {
		t.Errorf("username %q, want v-approle-app-...", u)
	}

	second, err := srv.NewSecretID("web")
	if err != nil {
		t.Fatal(err)
	}
	c.ClearToken()
	if _, err := c.Logical().WriteWithContext(t.Context(), "auth/approle/login", map[string]any{"role_id": roleID, "secret_id": second}); err != nil {
		t.Errorf("login with a second secret_id: %v", err)
	}
	for _, body := range []map[string]any{
		{"role_id": roleID, "secret_id": "wrong"},
		{"role_id": "wrong", "secret_id": secretID},
	} {
		_, err := c.Logical().WriteWithContext(t.Context(), "auth/approle/login", body)
		wantStatus(t, err, 400, "invalid role or secret ID")
		assertNoSecret(t, "the login error", err.Error(), secretID)
	}
	_, err = c.Logical().WriteWithContext(t.Context(), "auth/approle/login", map[string]any{"role_id": roleID})
	wantStatus(t, err, 400, "missing secret_id")
	if n := srv.Calls(vaulttest.OpAppRoleLogin); n != 5 {
		t.Errorf("Calls(OpAppRoleLogin) = %d, want 5", n)
	}
}

func TestKubernetesLogin(t *testing.T) {
	t.Parallel()
	srv, err := vaulttest.NewServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if err := srv.SetKubernetesRole("app", vaulttest.KubernetesRole{
		BoundServiceAccountNames: []string{"web"}, BoundServiceAccountNamespaces: []string{"prod"},
		TokenTTL: 5 * time.Minute, TokenPolicies: []string{"db"},
	}); err != nil {
		t.Fatal(err)
	}
	c := client(t, srv, "")
	c.ClearToken()
	login := func(role, jwt string) error {
		s, err := c.Logical().WriteWithContext(t.Context(), "auth/kubernetes/login", map[string]any{"role": role, "jwt": jwt})
		if err == nil && (s.Auth == nil || s.Auth.LeaseDuration != 300 || s.Auth.Metadata["service_account_namespace"] != "prod" ||
			s.Auth.Metadata["service_account_name"] != "web" || s.Auth.Metadata["role"] != role) {
			t.Errorf("kubernetes login auth %+v", s.Auth)
		}
		return err
	}
	jwt := srv.KubernetesJWT("prod", "web")
	if err := login("app", jwt); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, login("app", srv.KubernetesJWT("dev", "web")), 403, "namespace not authorized")
	wantStatus(t, login("app", srv.KubernetesJWT("prod", "batch")), 403, "service account name not authorized")
	wantStatus(t, login("app", jwt[:len(jwt)-4]+"AAAA"), 403, "permission denied")
	wantStatus(t, login("other", jwt), 400, `invalid role name "other"`)
	wantStatus(t, login("app", ""), 400, "missing jwt")

	// A JWT from another server does not log in here.
	other, err := vaulttest.NewServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	err = login("app", other.KubernetesJWT("prod", "web"))
	wantStatus(t, err, 403, "permission denied")
	assertNoSecret(t, "the login error", err.Error(), jwt)
}
