package vaulttest_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"
	"go.uber.org/goleak"

	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets/vault/vaulttest"
)

// No password, token, secret_id or JWT in the server's log lines, in its
// errors (answers and Go errors), or in its snapshots' %v.
func TestNoSecretInLogsOrErrors(t *testing.T) {
	t.Parallel()
	pg := pgtest.Shared(t)
	user, _ := pgtest.NewRole(t, pg)
	var logs testkit.LogBuffer
	srv, _ := start(t, vaulttest.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	ctx := t.Context()
	if err := srv.SetRole("app", vaulttest.DynamicRole{DefaultTTL: 2 * time.Second, MaxTTL: 4 * time.Second}); err != nil {
		t.Fatal(err)
	}
	// Statements that fail with an error quoting the password.
	if err := srv.SetRole("bad", vaulttest.DynamicRole{CreationStatements: []string{`SELECT '{{password}}'::int`}}); err != nil {
		t.Fatal(err)
	}
	if err := srv.SetStaticRole(ctx, "static", vaulttest.StaticRole{Username: user, RotationPeriod: time.Hour}); err != nil {
		t.Fatal(err)
	}
	var secrets []string
	tok := appToken(t, srv, vaulttest.TokenOptions{TTL: time.Hour})
	secrets = append(secrets, tok, srv.RootToken())
	c := client(t, srv, tok)

	s, err := c.Logical().ReadWithContext(ctx, "database/creds/app")
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, credsOf(t, s).password)
	if _, err := c.Sys().RenewWithContext(ctx, s.LeaseID, 0); err != nil {
		t.Fatal(err)
	}
	st, err := c.Logical().ReadWithContext(ctx, "database/static-creds/static")
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, credsOf(t, st).password)
	if _, err := c.Logical().WriteWithContext(ctx, "database/rotate-role/static", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.KVv2("secret").Put(ctx, "app/db", map[string]any{"password": "kv-secret-value-123"}); err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, "kv-secret-value-123")
	roleID, secretID, err := srv.SetAppRole("web", vaulttest.AppRole{})
	if err != nil {
		t.Fatal(err)
	}
	login, err := c.Logical().WriteWithContext(ctx, "auth/approle/login", map[string]any{"role_id": roleID, "secret_id": secretID})
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, secretID, login.Auth.ClientToken)
	if err := srv.SetKubernetesRole("k8s", vaulttest.KubernetesRole{BoundServiceAccountNames: []string{"*"}, BoundServiceAccountNamespaces: []string{"*"}}); err != nil {
		t.Fatal(err)
	}
	jwt := srv.KubernetesJWT("prod", "web")
	k8s, err := c.Logical().WriteWithContext(ctx, "auth/kubernetes/login", map[string]any{"role": "k8s", "jwt": jwt})
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, jwt, k8s.Auth.ClientToken)

	// Errors that had the password in PostgreSQL's message.
	var texts []string
	_, err = c.Logical().ReadWithContext(ctx, "database/creds/bad")
	wantStatus(t, err, 500, "[redacted]")
	texts = append(texts, err.Error())
	bad := vaulttest.StaticRole{Username: user, RotationPeriod: time.Hour, RotationStatements: []string{`SELECT '{{password}}'::int`}}
	err = srv.SetStaticRole(ctx, "static-bad", bad)
	if err == nil {
		t.Fatal("a failing rotation statement succeeded")
	}
	var pqErr *pq.Error
	if !errors.As(err, &pqErr) || pqErr.Code != "22P02" {
		t.Errorf("the driver's error is not reachable: %v", err)
	}
	texts = append(texts, err.Error(), fmt.Sprintf("%v %+v", err, err))

	// Bad credentials in requests.
	_, err = c.Logical().WriteWithContext(ctx, "auth/approle/login", map[string]any{"role_id": roleID, "secret_id": secretID + "x"})
	texts = append(texts, err.Error())
	_, err = c.Logical().WriteWithContext(ctx, "auth/kubernetes/login", map[string]any{"role": "k8s", "jwt": jwt + "x"})
	texts = append(texts, err.Error())
	_, err = client(t, srv, tok+"x").Logical().ReadWithContext(ctx, "database/creds/app")
	texts = append(texts, err.Error())

	// A lease's whole life, in the log.
	testkit.WaitFor(ctx, t, 15*time.Second, "the lease's end", func() bool {
		l, _ := srv.Lease(s.LeaseID)
		return !l.RevokedAt.IsZero()
	})
	state, _ := srv.StaticRoleState("static")
	texts = append(texts, fmt.Sprintf("%+v %+v", srv.Leases(), state))

	all := logs.String()
	for _, text := range append(texts, all) {
		assertNoSecret(t, "server output", text, secrets...)
		if generatedPassword.MatchString(text) {
			t.Errorf("a generated password in %q", generatedPassword.ReplaceAllString(text, "[PASSWORD]"))
		}
	}
	for _, want := range []string{"lease created", "lease renewed", "lease ended", "static role rotated", "vaulttest request", s.LeaseID} {
		if !strings.Contains(all, want) {
			t.Errorf("the log lacks %q", want)
		}
	}
}

// Not parallel: it checks that Close leaves no goroutine.
func TestClose(t *testing.T) {
	pg := pgtest.Shared(t)
	user, _ := pgtest.NewRole(t, pg)
	if err := pg.Admin().PingContext(t.Context()); err != nil { // the pool's goroutines predate the check
		t.Fatal(err)
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	var ended []vaulttest.Lease
	srv, err := vaulttest.NewServer(pg.Admin(), vaulttest.WithTLS(), vaulttest.WithOnLeaseEnd(func(l vaulttest.Lease) { ended = append(ended, l) }))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := srv.SetRole("app", vaulttest.DynamicRole{DefaultTTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := srv.SetStaticRole(ctx, "static", vaulttest.StaticRole{Username: user, RotationPeriod: time.Hour}); err != nil {
		t.Fatal(err)
	}
	tok := appToken(t, srv, vaulttest.TokenOptions{TTL: time.Hour})
	c := client(t, srv, tok)
	s, err := c.Logical().ReadWithContext(ctx, "database/creds/app")
	if err != nil {
		t.Fatal(err)
	}
	cr := credsOf(t, s)
	srv.InjectFault(vaulttest.OpLookupSelf, vaulttest.Fault{Latency: time.Hour})
	slow := make(chan error, 1)
	go func() { _, err := c.Auth().Token().LookupSelfWithContext(context.Background()); slow <- err }()
	for srv.Calls(vaulttest.OpLookupSelf) == 0 {
		testkit.Sleep(ctx, time.Millisecond)
	}

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-slow; err == nil {
		t.Error("the slow request succeeded")
	}
	if err := srv.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
	// Close revoked the lease that was left.
	l, _ := srv.Lease(s.LeaseID)
	if l.EndReason != vaulttest.EndClosed || l.RevokedAt.IsZero() || pgRole(t, pg, cr.user).exists {
		t.Errorf("after Close: %+v", l)
	}
	if len(ended) != 1 || ended[0].ID != s.LeaseID {
		t.Errorf("OnLeaseEnd saw %+v", ended)
	}
	if _, err := c.Auth().Token().LookupSelfWithContext(ctx); err == nil {
		t.Error("the server answers after Close")
	}
	if err := srv.Up(); err == nil {
		t.Error("Up after Close succeeded")
	}
	if _, err := srv.CreateToken(vaulttest.TokenOptions{}); err == nil {
		t.Error("CreateToken after Close succeeded")
	}
}

func TestKeepLeasesOnClose(t *testing.T) {
	t.Parallel()
	pg := pgtest.Shared(t)
	srv, err := vaulttest.NewServer(pg.Admin(), vaulttest.WithKeepLeasesOnClose())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if err := srv.SetRole("app", vaulttest.DynamicRole{DefaultTTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	s, err := client(t, srv, "").Logical().ReadWithContext(t.Context(), "database/creds/app")
	if err != nil {
		t.Fatal(err)
	}
	cr := credsOf(t, s)
	t.Cleanup(func() { pg.DropRole(context.Background(), cr.user) })
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if !pgRole(t, pg, cr.user).exists {
		t.Error("Close dropped the role despite WithKeepLeasesOnClose")
	}
	if l, _ := srv.Lease(s.LeaseID); l.Ended {
		t.Errorf("the kept lease is marked ended: %+v", l)
	}
}
