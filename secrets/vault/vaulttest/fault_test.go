package vaulttest_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/pgrotate/rotating/secrets/vault/vaulttest"
)

func TestFaults(t *testing.T) {
	t.Parallel()
	srv, _ := start(t)
	if err := srv.SetRole("app", vaulttest.DynamicRole{DefaultTTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	c := client(t, srv, "")
	ctx := t.Context()
	read := func(ctx context.Context) error {
		_, err := c.Logical().ReadWithContext(ctx, "database/creds/app")
		return err
	}

	// Sealed: everything answers 503 but sys/health, which says so.
	srv.Seal()
	wantStatus(t, read(ctx), 503, "Vault is sealed")
	_, err := c.KVv2("secret").Get(ctx, "x")
	wantStatus(t, err, 503, "Vault is sealed")
	h, err := c.Sys().HealthWithContext(ctx)
	if err != nil || !h.Sealed {
		t.Errorf("sys/health while sealed: %+v, %v", h, err)
	}
	srv.Unseal()
	if err := read(ctx); err != nil {
		t.Fatalf("after Unseal: %v", err)
	}

	// Permission denied, for one request.
	srv.InjectFault(vaulttest.OpCreds, vaulttest.Fault{Status: http.StatusForbidden, Count: 1})
	wantStatus(t, read(ctx), 403, "permission denied")
	if err := read(ctx); err != nil {
		t.Errorf("after the counted fault: %v", err)
	}
	// Every operation, until cleared; custom errors.
	srv.InjectFault(vaulttest.AllOperations, vaulttest.Fault{Status: 500, Errors: []string{"storage is down"}})
	wantStatus(t, read(ctx), 500, "storage is down")
	_, err = c.Auth().Token().LookupSelfWithContext(ctx)
	wantStatus(t, err, 500, "storage is down")
	srv.ClearFaults()

	// Slow: the answer comes after the latency...
	srv.InjectFault(vaulttest.OpCreds, vaulttest.Fault{Latency: 300 * time.Millisecond})
	began := time.Now()
	if err := read(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d < 300*time.Millisecond || d > 5*time.Second {
		t.Errorf("a slow read took %v, want 300ms..5s", d)
	}
	// ... unless the client gives up first; then nothing is created.
	srv.InjectFault(vaulttest.OpCreds, vaulttest.Fault{Latency: time.Minute})
	leases := len(srv.Leases())
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	began = time.Now()
	err = read(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a read that outlives its context: %v, want DeadlineExceeded", err)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("the abandoned read returned after %v", d)
	}
	if n := len(srv.Leases()); n != leases {
		t.Errorf("an abandoned slow read made a lease (%d leases, was %d)", n, leases)
	}
	srv.ClearFaults()

	// Down: connections are refused; Up serves the same address again.
	url := srv.URL()
	srv.Down()
	err = read(ctx)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("a read while down: %v, want connection refused", err)
	}
	if err := srv.Up(); err != nil {
		t.Fatal(err)
	}
	if srv.URL() != url {
		t.Errorf("URL after Up %q, want %q", srv.URL(), url)
	}
	if err := read(ctx); err != nil {
		t.Errorf("a read after Up: %v", err)
	}

	// Every request counted, faulted or not; the refused one never
	// reached the server.
	if n := srv.Calls(vaulttest.OpCreds); n != 8 {
		t.Errorf("Calls(OpCreds) = %d, want 8", n)
	}
	srv.ResetCalls()
	if srv.Calls(vaulttest.OpCreds) != 0 || srv.TotalCalls() != 0 {
		t.Error("ResetCalls left counts")
	}
}

// A slow request ends when the server closes.
func TestSlowRequestEndsAtClose(t *testing.T) {
	t.Parallel()
	srv, err := vaulttest.NewServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	srv.InjectFault(vaulttest.OpLookupSelf, vaulttest.Fault{Latency: time.Hour})
	c := client(t, srv, "")
	done := make(chan error, 1)
	go func() {
		_, err := c.Auth().Token().LookupSelfWithContext(context.Background())
		done <- err
	}()
	for srv.Calls(vaulttest.OpLookupSelf) == 0 {
		time.Sleep(time.Millisecond)
	}
	began := time.Now()
	srv.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("the slow request succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request did not end with Close")
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("Close took %v with a slow request", d)
	}
}

// Not parallel: it sets VAULT_* environment variables.
func TestTLS(t *testing.T) {
	srv, err := vaulttest.NewServer(nil, vaulttest.WithTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(srv.URL(), "https://127.0.0.1:") {
		t.Fatalf("URL %q", srv.URL())
	}
	if _, err := client(t, srv, "").Auth().Token().LookupSelfWithContext(t.Context()); err != nil {
		t.Fatalf("the server's own client: %v", err)
	}

	// A client configured as users do, from the environment.
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := srv.WriteCACert(path); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VAULT_ADDR", srv.URL())
	t.Setenv("VAULT_TOKEN", srv.RootToken())
	t.Setenv("VAULT_CACERT", path)
	c, err := api.NewClient(api.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Auth().Token().LookupSelfWithContext(t.Context()); err != nil {
		t.Errorf("a client with VAULT_CACERT: %v", err)
	}

	// Without the CA the server is not trusted.
	os.Unsetenv("VAULT_CACERT")
	plain, err := api.NewClient(api.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	plain.SetMaxRetries(0)
	if _, err := plain.Auth().Token().LookupSelfWithContext(t.Context()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client without the CA: %v, want a certificate error", err)
	}
	// Nor over plain HTTP.
	httpClient := client(t, srv, "")
	httpClient.SetAddress(strings.Replace(srv.URL(), "https", "http", 1))
	if _, err := httpClient.Auth().Token().LookupSelfWithContext(t.Context()); err == nil {
		t.Error("plain HTTP to the TLS server worked")
	}
	if vaulttest.WithTLS() == nil || srv.CACert() == nil {
		t.Error("no CA certificate")
	}
}

func TestNamespace(t *testing.T) {
	t.Parallel()
	srv, err := vaulttest.NewServer(nil, vaulttest.WithNamespace("/team-a/"))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	c := client(t, srv, "") // sets the namespace
	if _, err := c.Auth().Token().LookupSelfWithContext(t.Context()); err != nil {
		t.Fatalf("with the namespace: %v", err)
	}
	c.ClearNamespace()
	_, err = c.Auth().Token().LookupSelfWithContext(t.Context())
	wantStatus(t, err, 403, "permission denied")
	c.SetNamespace("team-b")
	_, err = c.Auth().Token().LookupSelfWithContext(t.Context())
	wantStatus(t, err, 403, "permission denied")
	if ns := srv.Namespaces(); ns["team-a"] != 1 || ns[""] != 1 || ns["team-b"] != 1 {
		t.Errorf("Namespaces() = %v", ns)
	}

	// Without WithNamespace the header is recorded, not checked.
	open, err := vaulttest.NewServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if err := open.Start(); err != nil {
		t.Fatal(err)
	}
	oc := client(t, open, "")
	oc.SetNamespace("anything")
	if _, err := oc.Auth().Token().LookupSelfWithContext(t.Context()); err != nil {
		t.Fatal(err)
	}
	if ns := open.Namespaces(); ns["anything"] != 1 {
		t.Errorf("Namespaces() = %v", ns)
	}
}

func TestAddresses(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"0.0.0.0:0", ":8200", "10.1.2.3:8200", "example.com:80", "nonsense"} {
		if _, err := vaulttest.NewServer(nil, vaulttest.WithAddr(addr)); err == nil {
			t.Errorf("WithAddr(%q) accepted", addr)
		} else if addr != "nonsense" && !errors.Is(err, vaulttest.ErrNotLoopback) {
			t.Errorf("WithAddr(%q): %v, want ErrNotLoopback", addr, err)
		}
	}
	srv, err := vaulttest.NewServer(nil, vaulttest.WithAddr("localhost:0"), vaulttest.WithRootToken("dev-root"))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err == nil {
		t.Error("a second Start succeeded")
	}
	if _, err := client(t, srv, "dev-root").Auth().Token().LookupSelfWithContext(t.Context()); err != nil {
		t.Errorf("the root token of WithRootToken: %v", err)
	}
}
