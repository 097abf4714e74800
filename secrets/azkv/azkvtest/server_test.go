package azkvtest_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
	"go.uber.org/goleak"

	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets/azkv/azkvtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start returns a started server, closed when the test ends, and a client
// for it that does not retry, so that each call is one request.
func start(t *testing.T, opts ...azkvtest.Option) (*azkvtest.Server, *azsecrets.Client) {
	t.Helper()
	srv := azkvtest.NewServer(opts...).Start()
	t.Cleanup(srv.Close)
	return srv, noRetryClient(t, srv)
}

func noRetryClient(t *testing.T, srv *azkvtest.Server) *azsecrets.Client {
	t.Helper()
	o := srv.ClientOptions()
	o.Retry = policy.RetryOptions{MaxRetries: -1}
	c, err := azsecrets.NewClient(srv.URL(), srv.Credential(), o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wantStatus fails t unless err is an *azcore.ResponseError with status
// and error code.
func wantStatus(t *testing.T, err error, status int, code string) *azcore.ResponseError {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("error %v (%T) is not an *azcore.ResponseError", err, err)
	}
	if re.StatusCode != status || re.ErrorCode != code {
		t.Fatalf("answer %d %s, want %d %s", re.StatusCode, re.ErrorCode, status, code)
	}
	return re
}

var versionID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// TestChallengeThenToken checks the authentication a new client goes
// through: one unauthenticated request answered with the challenge, one
// token from the credential for Key Vault's scope in the server's tenant,
// then authorized requests only.
func TestChallengeThenToken(t *testing.T) {
	srv, client := start(t)
	srv.SetSecret("db", "p1")
	ctx := t.Context()
	for i := range 3 {
		if _, err := client.GetSecret(ctx, "db", "", nil); err != nil {
			t.Fatalf("GetSecret %d: %v", i, err)
		}
	}
	if got := srv.Challenges(); got != 1 {
		t.Errorf("Challenges() = %d, want 1 (the client's first request)", got)
	}
	if got := srv.Calls(azkvtest.OpGetSecret); got != 3 {
		t.Errorf("Calls(GetSecret) = %d, want 3", got)
	}
	if got := srv.Credential().Calls(); got != 1 {
		t.Errorf("Credential().Calls() = %d, want 1 (the token is cached)", got)
	}
}

// TestUnauthenticatedRequests sends requests without a token and with a
// wrong one: each gets 401 and the challenge, and no operation runs.
func TestUnauthenticatedRequests(t *testing.T) {
	srv, _ := start(t)
	srv.SetSecret("db", "p1")
	hc := srv.HTTPClient()
	for _, auth := range []string{"", "Bearer not-the-token", "Basic dXNlcjpwYXNz"} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL()+"/secrets/db/?api-version=2026-04-01", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("Authorization %q: status %d, want 401", auth, resp.StatusCode)
		}
		want := `Bearer authorization="https://login.microsoftonline.com/` + azkvtest.TenantID + `", resource="https://vault.azure.net"`
		if got := resp.Header.Get("WWW-Authenticate"); got != want {
			t.Errorf("Authorization %q: WWW-Authenticate %q, want %q", auth, got, want)
		}
	}
	if got, calls := srv.Challenges(), srv.TotalCalls(); got != 3 || calls != 0 {
		t.Errorf("Challenges() = %d, TotalCalls() = %d, want 3 and 0", got, calls)
	}
}

// TestTLSWithItsOwnCA checks that the server speaks TLS only, with a
// certificate that only its own CA pool verifies.
func TestTLSWithItsOwnCA(t *testing.T) {
	srv, _ := start(t)
	if !strings.HasPrefix(srv.URL(), "https://127.0.0.1:") {
		t.Fatalf("URL() = %q, want https on 127.0.0.1", srv.URL())
	}
	// The system roots do not trust it.
	plain := &http.Client{Transport: &http.Transport{Proxy: nil}}
	defer plain.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL()+"/secrets/db/", nil)
	if resp, err := plain.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("a client without the server's CA connected")
	}
	// Another server's pool does not either.
	other := azkvtest.NewServer()
	defer other.Close()
	tr := &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: other.CertPool()}}
	defer tr.CloseIdleConnections()
	if resp, err := (&http.Client{Transport: tr}).Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("a client with another server's CA connected")
	}
	if pem := string(srv.CACertPEM()); !strings.HasPrefix(pem, "-----BEGIN CERTIFICATE-----") {
		t.Errorf("CACertPEM() does not start with a PEM certificate block")
	}
}

// TestVersions adds versions through the SDK and reads the latest, a
// pinned one and the list.
func TestVersions(t *testing.T) {
	srv, client := start(t)
	ctx := t.Context()
	var ids []string
	for _, v := range []string{"v1", "v2", "v3"} {
		resp, err := client.SetSecret(ctx, "db-app", azsecrets.SetSecretParameters{Value: to.Ptr(v), ContentType: to.Ptr("text/plain")}, nil)
		if err != nil {
			t.Fatalf("SetSecret: %v", err)
		}
		id := resp.ID.Version()
		if !versionID.MatchString(id) {
			t.Fatalf("version id %q is not 32 hex digits", id)
		}
		if want := srv.URL() + "/secrets/db-app/" + id; string(*resp.ID) != want {
			t.Errorf("ID = %q, want %q", *resp.ID, want)
		}
		if resp.Value == nil || *resp.Value != v {
			t.Errorf("SetSecret answered value %v, want %q", resp.Value, v)
		}
		ids = append(ids, id)
	}
	latest, err := client.GetSecret(ctx, "db-app", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if *latest.Value != "v3" || latest.ID.Version() != ids[2] || *latest.ContentType != "text/plain" {
		t.Errorf("latest: value %q version %q content type %q, want v3 %s text/plain", *latest.Value, latest.ID.Version(), *latest.ContentType, ids[2])
	}
	if a := latest.Attributes; a == nil || a.Enabled == nil || !*a.Enabled || a.Created == nil || a.Expires != nil {
		t.Errorf("latest attributes %+v: want enabled, created set, no expiry", a)
	}
	first, err := client.GetSecret(ctx, "db-app", ids[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	if *first.Value != "v1" {
		t.Errorf("version %s holds %q, want v1", ids[0], *first.Value)
	}
	var listed []string
	pager := client.NewListSecretPropertiesVersionsPager("db-app", nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range page.Value {
			listed = append(listed, p.ID.Version())
		}
	}
	if fmt.Sprint(listed) != fmt.Sprint(ids) {
		t.Errorf("versions listed %v, want %v", listed, ids)
	}
	if got := srv.Versions("db-app"); len(got) != 3 || got[2].ID != ids[2] {
		t.Errorf("Versions() = %+v, want the three versions oldest first", got)
	}
	_, err = client.GetSecret(ctx, "db-app", strings.Repeat("0", 32), nil)
	wantStatus(t, err, http.StatusNotFound, "SecretNotFound")
	_, err = client.GetSecret(ctx, "no-such-secret", "", nil)
	wantStatus(t, err, http.StatusNotFound, "SecretNotFound")
}

// TestDisabledAndExpiry disables and re-enables versions and sets their
// expiry through UpdateSecretProperties.
func TestDisabledAndExpiry(t *testing.T) {
	srv, client := start(t)
	ctx := t.Context()
	old := srv.SetSecret("db", "p1")
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	set, err := client.SetSecret(ctx, "db", azsecrets.SetSecretParameters{
		Value:            to.Ptr("p2"),
		SecretAttributes: &azsecrets.SecretAttributes{Expires: &exp},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	latest := set.ID.Version()
	got, err := client.GetSecret(ctx, "db", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Attributes.Expires == nil || !got.Attributes.Expires.Equal(exp) {
		t.Errorf("Expires = %v, want %v", got.Attributes.Expires, exp)
	}

	// Disabling the latest version does not make an older one the latest.
	if _, err := client.UpdateSecretProperties(ctx, "db", latest, azsecrets.UpdateSecretPropertiesParameters{
		SecretAttributes: &azsecrets.SecretAttributes{Enabled: to.Ptr(false)},
	}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = client.GetSecret(ctx, "db", "", nil)
	re := wantStatus(t, err, http.StatusForbidden, "Forbidden")
	if !strings.Contains(re.Error(), "SecretDisabled") {
		t.Errorf("the 403 answer does not carry the inner code SecretDisabled:\n%v", re)
	}
	if _, err := client.GetSecret(ctx, "db", latest, nil); err == nil {
		t.Error("GetSecret of the disabled version by id succeeded")
	}
	if v, err := client.GetSecret(ctx, "db", old, nil); err != nil || *v.Value != "p1" {
		t.Errorf("GetSecret of the older, enabled version: %v", err)
	}

	// Re-enabled, with the expiry moved.
	exp2 := exp.Add(time.Hour)
	upd, err := client.UpdateSecretProperties(ctx, "db", "", azsecrets.UpdateSecretPropertiesParameters{
		SecretAttributes: &azsecrets.SecretAttributes{Enabled: to.Ptr(true), Expires: &exp2},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if upd.Value != nil {
		t.Error("UpdateSecretProperties answered the value")
	}
	got, err = client.GetSecret(ctx, "db", "", nil)
	if err != nil || *got.Value != "p2" || !got.Attributes.Expires.Equal(exp2) {
		t.Fatalf("after re-enabling: %v, expires %v, want p2 expiring %v", err, got.Attributes.Expires, exp2)
	}

	// The Go hooks do the same.
	srv.SetEnabled("db", "", false)
	if _, err := client.GetSecret(ctx, "db", "", nil); err == nil {
		t.Error("SetEnabled(false) left the latest version readable")
	}
	srv.SetEnabled("db", "", true)
	srv.SetExpires("db", "", time.Time{})
	if got, err := client.GetSecret(ctx, "db", "", nil); err != nil || got.Attributes.Expires != nil {
		t.Errorf("after SetExpires(zero): %v, expires %v, want none", err, got.Attributes.Expires)
	}
	// An expired version is still returned, as Key Vault does.
	srv.SetExpires("db", "", time.Now().Add(-time.Minute))
	if _, err := client.GetSecret(ctx, "db", "", nil); err != nil {
		t.Errorf("GetSecret of an expired version: %v", err)
	}
}

// TestDeleteAndPurge deletes a secret through the SDK.
func TestDeleteAndPurge(t *testing.T) {
	srv, client := start(t)
	ctx := t.Context()
	srv.SetSecret("db", "p1")
	del, err := client.DeleteSecret(ctx, "db", nil)
	if err != nil {
		t.Fatal(err)
	}
	if del.RecoveryID == nil || del.DeletedDate == nil {
		t.Errorf("DeleteSecret answer lacks recoveryId or deletedDate: %+v", del.DeletedSecret)
	}
	_, err = client.GetSecret(ctx, "db", "", nil)
	wantStatus(t, err, http.StatusNotFound, "SecretNotFound")
	_, err = client.SetSecret(ctx, "db", azsecrets.SetSecretParameters{Value: to.Ptr("p2")}, nil)
	wantStatus(t, err, http.StatusConflict, "Conflict")
	_, err = client.DeleteSecret(ctx, "db", nil)
	wantStatus(t, err, http.StatusNotFound, "SecretNotFound")
	if srv.Versions("db") != nil {
		t.Error("Versions() of a deleted secret is not nil")
	}
	srv.Purge("db")
	if _, err := client.SetSecret(ctx, "db", azsecrets.SetSecretParameters{Value: to.Ptr("p2")}, nil); err != nil {
		t.Errorf("SetSecret after Purge: %v", err)
	}
}

// TestBadRequests covers requests Key Vault refuses.
func TestBadRequests(t *testing.T) {
	srv, client := start(t)
	ctx := t.Context()
	_, err := client.SetSecret(ctx, "bad_name", azsecrets.SetSecretParameters{Value: to.Ptr("x")}, nil)
	wantStatus(t, err, http.StatusBadRequest, "BadParameter")
	_, err = client.SetSecret(ctx, "db", azsecrets.SetSecretParameters{}, nil)
	wantStatus(t, err, http.StatusBadRequest, "BadParameter")

	// No api-version.
	tok := srv.Token()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL()+"/secrets/db/", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := srv.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a request without api-version: status %d, want 400", resp.StatusCode)
	}
}

// TestFaults injects each kind of fault and checks what the SDK sees.
func TestFaults(t *testing.T) {
	srv, client := start(t)
	srv.SetSecret("db", "p1")
	ctx := t.Context()
	cases := []struct {
		fault      azkvtest.Fault
		status     int
		code       string
		retryAfter string
	}{
		{azkvtest.Fault{Status: 401}, 401, "Unauthorized", ""},
		{azkvtest.Fault{Status: 403}, 403, "Forbidden", ""},
		{azkvtest.Fault{Status: 404}, 404, "NotFound", ""},
		{azkvtest.Fault{Status: 429, RetryAfter: 1500 * time.Millisecond}, 429, "Throttled", "2"},
		{azkvtest.Fault{Status: 503, Code: "Busy", Message: "try later"}, 503, "Busy", ""},
	}
	for _, tc := range cases {
		srv.InjectFault(azkvtest.OpGetSecret, tc.fault)
		_, err := client.GetSecret(ctx, "db", "", nil)
		re := wantStatus(t, err, tc.status, tc.code)
		if got := re.RawResponse.Header.Get("Retry-After"); got != tc.retryAfter {
			t.Errorf("%d: Retry-After %q, want %q", tc.status, got, tc.retryAfter)
		}
	}
	srv.ClearFaults()

	// 403 with the inner code ForbiddenByRbac by default.
	srv.InjectFault(azkvtest.AllOperations, azkvtest.Fault{Status: 403, Count: 1})
	_, err := client.GetSecret(ctx, "db", "", nil)
	if re := wantStatus(t, err, 403, "Forbidden"); !strings.Contains(re.Error(), "ForbiddenByRbac") {
		t.Errorf("a 403 fault lacks the inner code ForbiddenByRbac:\n%v", re)
	}
	if _, err := client.GetSecret(ctx, "db", "", nil); err != nil {
		t.Errorf("a fault with Count 1 outlived its request: %v", err)
	}

	// A body the SDK cannot parse.
	srv.InjectFault(azkvtest.OpGetSecret, azkvtest.Fault{MalformedBody: true, Count: 1})
	if _, err := client.GetSecret(ctx, "db", "", nil); err == nil || errors.As(err, new(*azcore.ResponseError)) {
		t.Errorf("malformed body: %v, want a parse error", err)
	}

	// Dropped connections. Go's transport sends a GET that got no answer
	// on a reused connection once more on a new one: two requests.
	srv.InjectFault(azkvtest.OpGetSecret, azkvtest.Fault{Drop: true})
	if _, err := client.GetSecret(ctx, "db", "", nil); err == nil {
		t.Error("a dropped connection answered")
	}
	srv.ClearFaults()

	// Latency, then the answer.
	srv.InjectFault(azkvtest.OpGetSecret, azkvtest.Fault{Latency: 200 * time.Millisecond, Count: 1})
	began := time.Now()
	if _, err := client.GetSecret(ctx, "db", "", nil); err != nil {
		t.Errorf("latency: %v", err)
	}
	if took := time.Since(began); took < 200*time.Millisecond || took > 10*time.Second {
		t.Errorf("a 200 ms latency took %v", took)
	}

	// A hang lasts until the client gives up.
	srv.InjectFault(azkvtest.OpGetSecret, azkvtest.Fault{Hang: true, Count: 1})
	hctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	began = time.Now()
	_, err = client.GetSecret(hctx, "db", "", nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hang: %v, want context.DeadlineExceeded", err)
	}
	if took := time.Since(began); took < 300*time.Millisecond || took > 10*time.Second {
		t.Errorf("a hang with a 300 ms deadline took %v", took)
	}
	// Faulted requests count: one per case (the 401 met the client's
	// first authorized request, right after the challenge, so the client
	// did not ask for a new token and try again), two for the 403 with
	// Count 1 and the request after it, one each for the malformed body,
	// the latency and the hang, two for the dropped connections.
	if got, want := srv.Calls(azkvtest.OpGetSecret), int64(len(cases))+7; got != want {
		t.Errorf("Calls(GetSecret) = %d, want %d", got, want)
	}
	if got := srv.Challenges(); got != 1 {
		t.Errorf("Challenges() = %d, want 1", got)
	}
}

// TestSetDown takes the server down and up again.
func TestSetDown(t *testing.T) {
	srv, client := start(t)
	srv.SetSecret("db", "p1")
	ctx := t.Context()
	if _, err := client.GetSecret(ctx, "db", "", nil); err != nil {
		t.Fatal(err)
	}
	srv.SetDown(true)
	_, err := client.GetSecret(ctx, "db", "", nil)
	if err == nil || errors.As(err, new(*azcore.ResponseError)) {
		t.Fatalf("GetSecret while down: %v, want a transport error", err)
	}
	if srv.Refused() == 0 {
		t.Error("Refused() = 0 after a request while down")
	}
	srv.SetDown(false)
	if _, err := client.GetSecret(ctx, "db", "", nil); err != nil {
		t.Errorf("GetSecret after SetDown(false): %v", err)
	}
}

// TestCloseEndsHangingRequests checks that Close does not wait for a
// client that waits for a hanging request.
func TestCloseEndsHangingRequests(t *testing.T) {
	srv := azkvtest.NewServer().Start()
	client := noRetryClient(t, srv)
	srv.SetSecret("db", "p1")
	srv.InjectFault(azkvtest.OpGetSecret, azkvtest.Fault{Hang: true})
	done := make(chan error, 1)
	go func() {
		_, err := client.GetSecret(context.Background(), "db", "", nil)
		done <- err
	}()
	testkit.WaitFor(t.Context(), t, 10*time.Second, "the request to reach the server", func() bool {
		return srv.Calls(azkvtest.OpGetSecret) > 0
	})
	srv.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("a hanging request answered")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request still hangs 10 s after Close")
	}
}

// TestCredential checks that the credential follows the challenge's scope
// and tenant only, and never prints its token.
func TestCredential(t *testing.T) {
	srv := azkvtest.NewServer()
	defer srv.Close()
	cred := srv.Credential()
	ctx := t.Context()
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{azkvtest.Scope}, TenantID: azkvtest.TenantID})
	if err != nil || tok.Token != srv.Token() || time.Until(tok.ExpiresOn) < 30*time.Minute {
		t.Fatalf("GetToken: %v, expires %v", err, tok.ExpiresOn)
	}
	for _, o := range []policy.TokenRequestOptions{
		{Scopes: []string{"https://management.azure.com/.default"}, TenantID: azkvtest.TenantID},
		{Scopes: []string{azkvtest.Scope}, TenantID: "other"},
		{Scopes: []string{azkvtest.Scope}},
	} {
		if _, err := cred.GetToken(ctx, o); err == nil {
			t.Errorf("GetToken(%+v) succeeded", o)
		}
	}
	cred.SetError(errors.New("identity endpoint down"))
	if _, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{azkvtest.Scope}, TenantID: azkvtest.TenantID}); err == nil {
		t.Error("GetToken succeeded after SetError")
	}
	text := fmt.Sprintf("%v %+v %#v %s", cred, cred, cred, cred)
	if strings.Contains(text, srv.Token()) {
		t.Error("formatting the credential prints its token")
	}
}

// TestLogsNoValuesOrTokens runs requests with a logger and checks that it
// names operations and versions but no value or token.
func TestLogsNoValuesOrTokens(t *testing.T) {
	var logs testkit.LogBuffer
	srv, client := start(t, azkvtest.WithLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	const value = "pw-azkvtest-distinctive-9f3c"
	ctx := t.Context()
	if _, err := client.SetSecret(ctx, "db", azsecrets.SetSecretParameters{Value: to.Ptr(value)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := client.GetSecret(ctx, "db", "", nil); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, `"op":"GetSecret"`) || !strings.Contains(out, `"status":401`) {
		t.Errorf("the log lacks the operations or the challenge:\n%s", out)
	}
	if strings.Contains(out, value) || strings.Contains(out, srv.Token()) {
		t.Error("the log holds the secret value or the token")
	}
}
