package azkv_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
	"go.uber.org/goleak"

	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/azkv"
	"github.com/pgrotate/rotating/secrets/azkv/azkvtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The password the tests store: distinctive, so that finding it in an
// error or a log line cannot be a coincidence.
const password = "pw-azkv-7c1e9b2f0d4a"

const rdsJSON = `{"engine":"postgres","host":"db.example","port":5432,"username":"app","password":"` + password + `","dbname":"app"}`

// start returns a started server, closed when the test ends.
func start(t *testing.T) *azkvtest.Server {
	t.Helper()
	srv := azkvtest.NewServer().Start()
	t.Cleanup(srv.Close)
	return srv
}

// newSource returns a source for the secret name on srv, as an application
// would build it against Key Vault, with the server's credential and
// transport.
func newSource(t *testing.T, srv *azkvtest.Server, name string, opts ...azkv.Option) *azkv.Source {
	t.Helper()
	base := []azkv.Option{azkv.WithCredential(srv.Credential()), azkv.WithClientOptions(srv.ClientOptions())}
	src, err := azkv.New(srv.URL()+"/", name, append(base, opts...)...)
	if err != nil {
		t.Fatalf("azkv.New: %v", err)
	}
	return src
}

// wantAs returns err's first error of type E, failing t if there is none.
func wantAs[E error](t *testing.T, err error) E {
	t.Helper()
	var target E
	if !errors.As(err, &target) {
		t.Fatalf("error %v (%T) holds no %T", err, err, target)
	}
	return target
}

// wantNoSecret fails t if any rendering of err, or text, holds one of
// values.
func wantNoSecret(t *testing.T, what string, err error, text string, values ...string) {
	t.Helper()
	if err != nil {
		text += fmt.Sprintf(" | %v | %+v | %#v | %s | %q", err, err, err, err, err)
	}
	for _, v := range values {
		if v != "" && strings.Contains(text, v) {
			t.Errorf("%s contains a secret value or token (%d bytes of text)", what, len(text))
		}
	}
}

func TestFetch(t *testing.T) {
	exp := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	cases := []struct {
		name    string
		value   string
		opts    []azkv.Option
		expires time.Time
		want    secrets.Credential
	}{
		{
			name:  "RDS JSON",
			value: rdsJSON,
			want:  secrets.Credential{Username: "app", Password: password, Host: "db.example", Port: 5432, Database: "app"},
		},
		{
			name:    "plain password with a trailing newline, expiring",
			value:   password + "\n",
			expires: exp,
			want:    secrets.Credential{Password: password, Expires: exp},
		},
		{
			name:  "other keys",
			value: `{"user":"svc","pass":"` + password + `","server":"pg.internal"}`,
			opts:  []azkv.Option{azkv.WithKeys(secrets.Keys{Username: "user", Password: "pass", Host: "server"})},
			want:  secrets.Credential{Username: "svc", Password: password, Host: "pg.internal"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := start(t)
			version := srv.SetSecret("db-app", tc.value)
			if !tc.expires.IsZero() {
				srv.SetExpires("db-app", version, tc.expires)
			}
			src := newSource(t, srv, "db-app", tc.opts...)
			got, err := src.Fetch(t.Context())
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			tc.want.Version = version
			if got != tc.want {
				t.Errorf("Fetch = %v, want %v", got, tc.want)
			}
			if !got.Expires.Equal(tc.want.Expires) {
				t.Errorf("Expires = %v, want %v", got.Expires, tc.want.Expires)
			}
			if n := srv.Calls(azkvtest.OpGetSecret); n != 1 {
				t.Errorf("Fetch made %d GetSecret requests, want 1", n)
			}
		})
	}
}

// TestFetchFollowsLatest checks that each Fetch reads the vault anew: a
// new version is seen at once, and only one request is made per Fetch
// after the client's first challenge.
func TestFetchFollowsLatest(t *testing.T) {
	srv := start(t)
	src := newSource(t, srv, "db-app")
	ctx := t.Context()
	for i := range 4 {
		pw := fmt.Sprintf("%s-%d", password, i)
		version := srv.SetSecret("db-app", `{"username":"app","password":"`+pw+`"}`)
		got, err := src.Fetch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.Password != pw || got.Version != version {
			t.Fatalf("Fetch %d returned version %s, want %s", i, got.Version, version)
		}
	}
	if n, c := srv.Calls(azkvtest.OpGetSecret), srv.Challenges(); n != 4 || c != 1 {
		t.Errorf("4 Fetches made %d GetSecret requests and met %d challenges, want 4 and 1", n, c)
	}
}

// TestFetchPinnedVersion pins a version: newer versions are not seen, and
// the description names the version.
func TestFetchPinnedVersion(t *testing.T) {
	srv := start(t)
	pinned := srv.SetSecret("db-app", password)
	srv.SetSecret("db-app", "newer-password")
	src := newSource(t, srv, "db-app", azkv.WithVersion(pinned))
	got, err := src.Fetch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got.Password != password || got.Version != pinned {
		t.Errorf("Fetch returned version %s, want the pinned %s", got.Version, pinned)
	}
	if want := "azure-keyvault " + srv.URL() + "/secrets/db-app/" + pinned; src.Describe() != want {
		t.Errorf("Describe() = %q, want %q", src.Describe(), want)
	}

	// A pinned version that does not exist.
	missing := newSource(t, srv, "db-app", azkv.WithVersion(strings.Repeat("a", 32)))
	_, err = missing.Fetch(t.Context())
	if !errors.Is(err, azkv.ErrNotFound) {
		t.Errorf("Fetch of a missing version: %v, want ErrNotFound", err)
	}
}

// TestFetchDisabled disables the latest version: Key Vault answers 403
// SecretDisabled rather than fall back to an older version, and the error
// says so.
func TestFetchDisabled(t *testing.T) {
	srv := start(t)
	old := srv.SetSecret("db-app", password)
	latest := srv.SetSecret("db-app", password+"-2")
	srv.SetEnabled("db-app", latest, false)
	ctx := t.Context()

	_, err := newSource(t, srv, "db-app").Fetch(ctx)
	if !errors.Is(err, azkv.ErrDisabled) || errors.Is(err, azkv.ErrAccessDenied) {
		t.Fatalf("Fetch of a disabled latest version: %v, want ErrDisabled and not ErrAccessDenied", err)
	}
	re := wantAs[*azcore.ResponseError](t, err)
	e := wantAs[*azkv.Error](t, err)
	if re.StatusCode != http.StatusForbidden || e.Code != "Forbidden" || e.InnerCode != "SecretDisabled" {
		t.Errorf("status %d, codes %q/%q, want 403 Forbidden/SecretDisabled", re.StatusCode, e.Code, e.InnerCode)
	}
	if !strings.Contains(err.Error(), "disabled secret") || strings.Contains(err.Error(), "\n") {
		t.Errorf("error text %q: want one line quoting Key Vault's message", err)
	}

	// The older version, pinned, still works; the disabled one pinned does
	// not.
	if _, err := newSource(t, srv, "db-app", azkv.WithVersion(old)).Fetch(ctx); err != nil {
		t.Errorf("Fetch of the enabled older version: %v", err)
	}
	if _, err := newSource(t, srv, "db-app", azkv.WithVersion(latest)).Fetch(ctx); !errors.Is(err, azkv.ErrDisabled) {
		t.Errorf("Fetch of the disabled version by id: %v, want ErrDisabled", err)
	}
	// Enabled again, it is read.
	srv.SetEnabled("db-app", latest, true)
	if got, err := newSource(t, srv, "db-app").Fetch(ctx); err != nil || got.Version != latest {
		t.Errorf("Fetch after re-enabling: %v, version %q, want %s", err, got.Version, latest)
	}
}

// stubAPI answers GetSecret with a fixed secret, for answers a real vault
// does not give.
type stubAPI struct{ secret azsecrets.Secret }

func (a stubAPI) GetSecret(context.Context, string, string, *azsecrets.GetSecretOptions) (azsecrets.GetSecretResponse, error) {
	return azsecrets.GetSecretResponse{Secret: a.secret}, nil
}

// TestAnswerMarkedDisabled covers a compatible store that returns a
// version's value with enabled=false: the source refuses it.
func TestAnswerMarkedDisabled(t *testing.T) {
	id := azsecrets.ID("https://v.vault.azure.net/secrets/db-app/0123456789abcdef0123456789abcdef")
	src, err := azkv.NewFromClient(stubAPI{azsecrets.Secret{
		ID:         &id,
		Value:      to.Ptr(password),
		Attributes: &azsecrets.SecretAttributes{Enabled: to.Ptr(false)},
	}}, "db-app")
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.Fetch(t.Context())
	if !errors.Is(err, azkv.ErrDisabled) {
		t.Fatalf("Fetch: %v, want ErrDisabled", err)
	}
	if e := wantAs[*azkv.Error](t, err); e.Version != id.Version() {
		t.Errorf("Error.Version = %q, want %q", e.Version, id.Version())
	}
	wantNoSecret(t, "the error", err, "", password)
}

// TestFetchUnusableValues stores values that are no credential: each
// Fetch fails with the secrets package's sentinel, naming the problem and
// the version, and quoting nothing of the value.
func TestFetchUnusableValues(t *testing.T) {
	cases := []struct {
		name, value, contentType string
		want                     error
	}{
		{"truncated JSON", `{"username":"app","password":"` + password, "", secrets.ErrMalformed},
		{"JSON without a password", `{"username":"app"}`, "", secrets.ErrEmptyPassword},
		{"empty JSON password", `{"username":"app","password":""}`, "", secrets.ErrEmptyPassword},
		{"password not a string", `{"password":5432}`, "", secrets.ErrMalformed},
		{"empty value", "", "", secrets.ErrEmptyPassword},
		{"blank value", " \n", "", secrets.ErrEmptyPassword},
		{"two lines", "app\n" + password, "", secrets.ErrMalformed},
		{"NUL byte", password + "\x00x", "", secrets.ErrMalformed},
		{"NUL in a JSON field", `{"username":"a\u0000b","password":"` + password + `"}`, "", secrets.ErrMalformed},
		{"a certificate's secret", password, "application/x-pkcs12", secrets.ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := start(t)
			client := srv.Client()
			resp, err := client.SetSecret(t.Context(), "db-app", azsecrets.SetSecretParameters{
				Value: to.Ptr(tc.value), ContentType: to.Ptr(tc.contentType),
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = newSource(t, srv, "db-app").Fetch(t.Context())
			if !errors.Is(err, tc.want) {
				t.Fatalf("Fetch: %v, want %v", err, tc.want)
			}
			e := wantAs[*azkv.Error](t, err)
			if e.Version != resp.ID.Version() {
				t.Errorf("Error.Version = %q, want %q", e.Version, resp.ID.Version())
			}
			wantNoSecret(t, "the error", err, "", password)
		})
	}
}

// TestFetchErrorAnswers injects Key Vault's error answers: each is an
// *azkv.Error wrapping the *azcore.ResponseError, matching the right
// sentinel, on one line, with no token in it.
func TestFetchErrorAnswers(t *testing.T) {
	cases := []struct {
		name     string
		fault    azkvtest.Fault
		breakIt  func(srv *azkvtest.Server)
		status   int
		sentinel error
		requests int64 // GetSecret requests one Fetch makes
	}{
		{name: "401 token rejected", fault: azkvtest.Fault{Status: 401}, status: 401, sentinel: azkv.ErrAccessDenied, requests: 2},
		{name: "403 no role assignment", fault: azkvtest.Fault{Status: 403}, status: 403, sentinel: azkv.ErrAccessDenied, requests: 1},
		{name: "404 deleted", breakIt: func(srv *azkvtest.Server) { srv.Delete("db-app") }, status: 404, sentinel: azkv.ErrNotFound, requests: 1},
		{name: "429 Retry-After beyond the retry cap", fault: azkvtest.Fault{Status: 429, RetryAfter: 30 * time.Second}, status: 429, sentinel: azkv.ErrThrottled, requests: 1},
		{name: "429 Retry-After 1s, retried twice", fault: azkvtest.Fault{Status: 429, RetryAfter: time.Second}, status: 429, sentinel: azkv.ErrThrottled, requests: 3},
		{name: "503, retried twice", fault: azkvtest.Fault{Status: 503}, status: 503, requests: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := start(t)
			srv.SetSecret("db-app", rdsJSON)
			src := newSource(t, srv, "db-app")
			ctx := t.Context()
			if _, err := src.Fetch(ctx); err != nil { // the challenge, done
				t.Fatal(err)
			}
			srv.ResetCalls()
			if tc.breakIt != nil {
				tc.breakIt(srv)
			} else {
				srv.InjectFault(azkvtest.OpGetSecret, tc.fault)
			}
			began := time.Now()
			_, err := src.Fetch(ctx)
			took := time.Since(began)
			re := wantAs[*azcore.ResponseError](t, err)
			e := wantAs[*azkv.Error](t, err)
			if re.StatusCode != tc.status || e.StatusCode != tc.status {
				t.Errorf("status %d (Error.StatusCode %d), want %d", re.StatusCode, e.StatusCode, tc.status)
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Errorf("errors.Is(err, %v) = false", tc.sentinel)
			}
			if tc.fault.RetryAfter > 0 && e.RetryAfter != tc.fault.RetryAfter {
				t.Errorf("Error.RetryAfter = %v, want %v", e.RetryAfter, tc.fault.RetryAfter)
			}
			if n := srv.Calls(azkvtest.OpGetSecret); n != tc.requests {
				t.Errorf("one Fetch made %d GetSecret requests, want %d", n, tc.requests)
			}
			// Two retries at most 1 s apart: well inside the connector's
			// 5 s fetch timeout even on a loaded machine.
			if took > 4*time.Second {
				t.Errorf("Fetch took %v, want under 4 s", took)
			}
			if text := err.Error(); strings.Contains(text, "\n") || !strings.Contains(text, `"db-app"`) || !strings.Contains(text, srv.URL()) {
				t.Errorf("error text %q: want one line naming the secret and the vault", text)
			}
			t.Logf("%s: %d requests in %v: %v", tc.name, srv.Calls(azkvtest.OpGetSecret), took.Round(time.Millisecond), err)
			wantNoSecret(t, "the error", err, "", password, srv.Token())
		})
	}
}

// TestFetchTimeoutWhileThrottled gives a Fetch less time than the
// Retry-After of a 429 that the retry policy would wait for: the fetch
// ends with the context's error at its deadline, and still reports the
// 429.
func TestFetchTimeoutWhileThrottled(t *testing.T) {
	srv := start(t)
	srv.SetSecret("db-app", rdsJSON)
	src := newSource(t, srv, "db-app")
	srv.InjectFault(azkvtest.OpGetSecret, azkvtest.Fault{Status: 429, RetryAfter: time.Second})
	ctx, cancel := context.WithTimeout(t.Context(), 400*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, err := src.Fetch(ctx)
	took := time.Since(began)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Fetch: %v, want context.DeadlineExceeded", err)
	}
	e := wantAs[*azkv.Error](t, err)
	if e.StatusCode != http.StatusTooManyRequests || !errors.Is(err, azkv.ErrThrottled) {
		t.Errorf("Error.StatusCode = %d, want the last answer's 429", e.StatusCode)
	}
	if !strings.Contains(err.Error(), "the last answer was HTTP 429") {
		t.Errorf("error text %q does not report the last answer", err)
	}
	if took < 400*time.Millisecond || took > 3*time.Second {
		t.Errorf("Fetch took %v, want its 400 ms deadline", took)
	}
}

// TestFetchUnreachable covers a vault that is down, one that hangs and an
// answer the client cannot parse.
func TestFetchUnreachable(t *testing.T) {
	t.Run("down", func(t *testing.T) {
		srv := start(t)
		srv.SetSecret("db-app", rdsJSON)
		src := newSource(t, srv, "db-app")
		srv.SetDown(true)
		began := time.Now()
		_, err := src.Fetch(t.Context())
		took := time.Since(began)
		e := wantAs[*azkv.Error](t, err)
		if errors.As(err, new(*azcore.ResponseError)) || e.StatusCode != 0 {
			t.Errorf("Fetch from a vault that is down: %v, want a transport error without a status", err)
		}
		if took > 4*time.Second {
			t.Errorf("Fetch took %v with the vault down, want the retries' ~1 s", took)
		}
		t.Logf("down: %v after %v, %d connections refused", err, took.Round(time.Millisecond), srv.Refused())
	})
	t.Run("hang", func(t *testing.T) {
		srv := start(t)
		srv.SetSecret("db-app", rdsJSON)
		src := newSource(t, srv, "db-app")
		srv.InjectFault(azkvtest.OpGetSecret, azkvtest.Fault{Hang: true})
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		began := time.Now()
		_, err := src.Fetch(ctx)
		if took := time.Since(began); took < 300*time.Millisecond || took > 3*time.Second {
			t.Errorf("Fetch took %v, want its 300 ms deadline", took)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Fetch: %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("unparsable answer", func(t *testing.T) {
		srv := start(t)
		srv.SetSecret("db-app", rdsJSON)
		src := newSource(t, srv, "db-app")
		srv.InjectFault(azkvtest.OpGetSecret, azkvtest.Fault{MalformedBody: true})
		_, err := src.Fetch(t.Context())
		if err == nil || !strings.Contains(err.Error(), "could not be parsed") {
			t.Fatalf("Fetch: %v, want the redacted parse error", err)
		}
		if e := wantAs[*azkv.Error](t, err); e.StatusCode != http.StatusOK {
			t.Errorf("Error.StatusCode = %d, want 200", e.StatusCode)
		}
		if strings.Contains(err.Error(), "trunc") {
			t.Errorf("the error quotes the answer: %v", err)
		}
	})
}

// TestConcurrentFetch runs Fetch from many goroutines at once.
func TestConcurrentFetch(t *testing.T) {
	srv := start(t)
	version := srv.SetSecret("db-app", rdsJSON)
	src := newSource(t, srv, "db-app")
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Go(func() {
			got, err := src.Fetch(t.Context())
			if err == nil && got.Version != version {
				err = fmt.Errorf("version %q, want %q", got.Version, version)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := srv.Calls(azkvtest.OpGetSecret); n != 32 {
		t.Errorf("32 Fetches made %d GetSecret requests, want 32", n)
	}
}

// TestRetryOptionsHoldForAnyClient builds a client that would retry ten
// times: the source's per-request retry options still apply, and
// WithRetryOptions replaces them.
func TestRetryOptionsHoldForAnyClient(t *testing.T) {
	srv := start(t)
	srv.SetSecret("db-app", rdsJSON)
	o := srv.ClientOptions()
	o.Retry = policy.RetryOptions{MaxRetries: 10, RetryDelay: time.Millisecond}
	client, err := azsecrets.NewClient(srv.URL(), srv.Credential(), o)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		opts []azkv.Option
		want int64
	}{
		{nil, 3},
		{[]azkv.Option{azkv.WithRetryOptions(policy.RetryOptions{MaxRetries: -1})}, 1},
		{[]azkv.Option{azkv.WithRetryOptions(policy.RetryOptions{MaxRetries: 4, RetryDelay: time.Millisecond})}, 5},
	} {
		src, err := azkv.NewFromClient(client, "db-app", tc.opts...)
		if err != nil {
			t.Fatal(err)
		}
		srv.InjectFault(azkvtest.OpGetSecret, azkvtest.Fault{Status: 503})
		srv.ResetCalls()
		if _, err := src.Fetch(t.Context()); err == nil {
			t.Fatal("Fetch succeeded against a 503")
		}
		if n := srv.Calls(azkvtest.OpGetSecret); n != tc.want {
			t.Errorf("%d options: %d requests, want %d", len(tc.opts), n, tc.want)
		}
	}
}

func TestNew(t *testing.T) {
	srv := start(t)
	cred := azkv.WithCredential(srv.Credential())
	bad := []struct {
		name, url, secret string
		opts              []azkv.Option
	}{
		{"http", "http://v.vault.azure.net", "db", []azkv.Option{cred}},
		{"user info", "https://admin:" + password + "@v.vault.azure.net", "db", []azkv.Option{cred}},
		{"path", "https://v.vault.azure.net/secrets/db", "db", []azkv.Option{cred}},
		{"query", "https://v.vault.azure.net/?x=1", "db", []azkv.Option{cred}},
		{"no host", "https:///", "db", []azkv.Option{cred}},
		{"not a URL", "://", "db", []azkv.Option{cred}},
		{"empty name", "https://v.vault.azure.net", "", []azkv.Option{cred}},
		{"underscore in name", "https://v.vault.azure.net", "db_app", []azkv.Option{cred}},
		{"long name", "https://v.vault.azure.net", strings.Repeat("a", 128), []azkv.Option{cred}},
		{"bad version", "https://v.vault.azure.net", "db", []azkv.Option{cred, azkv.WithVersion("../x")}},
		{"empty version", "https://v.vault.azure.net", "db", []azkv.Option{cred, azkv.WithVersion("")}},
		{"nil logger", "https://v.vault.azure.net", "db", []azkv.Option{cred, azkv.WithLogger(nil)}},
		{"nil credential", "https://v.vault.azure.net", "db", []azkv.Option{azkv.WithCredential(nil)}},
		{"nil client options", "https://v.vault.azure.net", "db", []azkv.Option{cred, azkv.WithClientOptions(nil)}},
	}
	for _, tc := range bad {
		_, err := azkv.New(tc.url, tc.secret, tc.opts...)
		if !errors.Is(err, azkv.ErrInvalidOption) {
			t.Errorf("%s: New: %v, want ErrInvalidOption", tc.name, err)
		}
		wantNoSecret(t, tc.name+": the error", err, "", password)
	}
	// Several problems are reported together.
	_, err := azkv.New("http://x", "db_app", azkv.WithLogger(nil))
	if n := strings.Count(err.Error(), "invalid option"); n != 3 {
		t.Errorf("New with three problems reported %d: %v", n, err)
	}

	// With azidentity's default credential: built, not used (a Fetch would
	// ask the environment's identity endpoints, which tests must not).
	src, err := azkv.New("https://myvault.vault.azure.net/", "db-app")
	if err != nil {
		t.Fatalf("New with the default credential: %v", err)
	}
	if want := "azure-keyvault https://myvault.vault.azure.net/secrets/db-app"; src.Describe() != want {
		t.Errorf("Describe() = %q, want %q", src.Describe(), want)
	}
}

func TestNewFromClient(t *testing.T) {
	srv := start(t)
	client := srv.Client()
	for name, opts := range map[string][]azkv.Option{
		"WithCredential":    {azkv.WithCredential(srv.Credential())},
		"WithClientOptions": {azkv.WithClientOptions(srv.ClientOptions())},
	} {
		if _, err := azkv.NewFromClient(client, "db-app", opts...); !errors.Is(err, azkv.ErrInvalidOption) {
			t.Errorf("NewFromClient with %s: %v, want ErrInvalidOption", name, err)
		}
	}
	if _, err := azkv.NewFromClient(nil, "db-app"); !errors.Is(err, azkv.ErrInvalidOption) {
		t.Errorf("NewFromClient(nil): %v, want ErrInvalidOption", err)
	}
	if _, err := azkv.NewFromClient((*azsecrets.Client)(nil), "db-app"); !errors.Is(err, azkv.ErrInvalidOption) {
		t.Errorf("NewFromClient((*azsecrets.Client)(nil)): %v, want ErrInvalidOption", err)
	}
	version := srv.SetSecret("db-app", rdsJSON)
	src, err := azkv.NewFromClient(client, "db-app")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := src.Fetch(t.Context()); err != nil || got.Version != version {
		t.Errorf("Fetch: %v, version %q, want %s", err, got.Version, version)
	}
	if want := "azure-keyvault secret db-app"; src.Describe() != want {
		t.Errorf("Describe() = %q, want %q", src.Describe(), want)
	}
}

// TestLogsVersionsNotValues checks what the logger sees: names, versions
// and expiry, never the value or the token.
func TestLogsVersionsNotValues(t *testing.T) {
	srv := start(t)
	version := srv.SetSecret("db-app", rdsJSON)
	srv.SetExpires("db-app", version, time.Now().Add(time.Hour))
	var logs testkit.LogBuffer
	src := newSource(t, srv, "db-app", azkv.WithLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	ctx := t.Context()
	if _, err := src.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	srv.InjectFault(azkvtest.OpGetSecret, azkvtest.Fault{Status: 403})
	if _, err := src.Fetch(ctx); err == nil {
		t.Fatal("Fetch succeeded against a 403")
	}
	out := logs.String()
	for _, want := range []string{`"version":"` + version + `"`, `"secret":"db-app"`, `"expires":`, `"status":403`} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %s:\n%s", want, out)
		}
	}
	wantNoSecret(t, "the log", nil, out, password, srv.Token())
}

// TestSilentByDefault checks that a source without a logger writes
// nothing to slog's default logger.
func TestSilentByDefault(t *testing.T) {
	var logs testkit.LogBuffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(old) })
	srv := start(t)
	srv.SetSecret("db-app", rdsJSON)
	src := newSource(t, srv, "db-app")
	if _, err := src.Fetch(t.Context()); err != nil {
		t.Fatal(err)
	}
	if logs.String() != "" {
		t.Errorf("the default logger got %q", logs.String())
	}
}

func TestErrorText(t *testing.T) {
	cases := []struct {
		err  *azkv.Error
		want string
	}{
		{
			&azkv.Error{Vault: "https://v.vault.azure.net", Name: "db", StatusCode: 403, Code: "Forbidden", InnerCode: "SecretDisabled",
				Message: "Operation get is not allowed on a disabled secret.", Err: &azcore.ResponseError{StatusCode: 403}},
			`azkv: GetSecret "db" (latest) from https://v.vault.azure.net: HTTP 403 Forbidden (Forbidden/SecretDisabled): Operation get is not allowed on a disabled secret.`,
		},
		{
			&azkv.Error{Name: "db", Version: "abc", StatusCode: 429, Code: "Throttled", RetryAfter: 30 * time.Second, Err: context.DeadlineExceeded},
			`azkv: GetSecret "db" version abc: context deadline exceeded (the last answer was HTTP 429 Too Many Requests (Throttled), Retry-After 30s)`,
		},
		{
			&azkv.Error{Name: "db", Version: "abc", Err: fmt.Errorf("%w: field \"password\" is missing or null", secrets.ErrEmptyPassword)},
			`azkv: GetSecret "db" version abc: secrets: credential has an empty password: field "password" is missing or null`,
		},
		{
			&azkv.Error{Name: "db", StatusCode: 404, Code: "NotFound", Err: &azcore.ResponseError{StatusCode: 404}},
			`azkv: GetSecret "db" (latest): HTTP 404 Not Found`,
		},
	}
	for _, tc := range cases {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() =\n%s\nwant\n%s", got, tc.want)
		}
	}
}
