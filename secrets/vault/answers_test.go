package vault_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/vault"
)

// answering returns a fake whose answer to every GET of path is status
// and body.
func answering(path string, status int, body string) *fakeVault {
	f := fakeWithRoot()
	f.setFault(func(r *http.Request) (int, string, bool, bool) {
		return status, body, false, r.Method == "GET" && r.URL.Path == "/v1/"+path
	})
	return f
}

// The secret values of the answers below: none may appear in an error.
var answerSecrets = []string{"Pass@word1", "Pass@word2", "hvs.RootToken"}

func TestMalformedAnswers(t *testing.T) {
	tests := []struct {
		name   string
		kind   string // static, dynamic, kv
		status int
		body   string
		want   error
		msg    string
	}{
		{"static: password a number", "static", 200, `{"data":{"username":"app","password":12345678}}`,
			secrets.ErrMalformed, "data.password is a number, want a string"},
		{"static: password empty", "static", 200, `{"data":{"username":"app","password":""}}`,
			secrets.ErrEmptyPassword, "data.password is empty"},
		{"static: password missing", "static", 200, `{"data":{"username":"app"}}`,
			secrets.ErrEmptyPassword, "data.password is missing or null"},
		{"static: username missing", "static", 200, `{"data":{"password":"Pass@word1"}}`,
			secrets.ErrMalformed, "data.username is missing or empty"},
		{"static: NUL in the password", "static", 200, `{"data":{"username":"app","password":"Pass@word1\u0000x"}}`,
			secrets.ErrMalformed, "data.password contains a NUL byte"},
		{"static: NUL in the username", "static", 200, `{"data":{"username":"a\u0000pp","password":"Pass@word1"}}`,
			secrets.ErrMalformed, "data.username contains a NUL byte"},
		{"static: no data", "static", 200, `{"lease_id":""}`, secrets.ErrMalformed, "the answer has no data"},
		{"static: data an array", "static", 200, `{"data":["Pass@word1"]}`, secrets.ErrMalformed, "data is an array, want an object"},
		{"static: ttl a string", "static", 200, `{"data":{"username":"app","password":"Pass@word1","ttl":"Pass@word2"}}`,
			secrets.ErrMalformed, "data.ttl is a string, want a number"},
		{"static: not JSON", "static", 200, `{"data":{"username":"app","password":"Pass@word1"`,
			secrets.ErrMalformed, "the answer is not a JSON object"},
		{"static: invalid UTF-8", "static", 200, "{\"data\":{\"username\":\"app\",\"password\":\"Pass@word1\xff\"}}",
			secrets.ErrMalformed, "the answer is not valid UTF-8"},
		{"static: null", "static", 200, `null`, secrets.ErrMalformed, "the answer is null"},
		{"dynamic: no lease id", "dynamic", 200, `{"lease_duration":60,"renewable":true,"data":{"username":"v-1","password":"Pass@word1"}}`,
			secrets.ErrMalformed, "lease_id is missing or empty"},
		{"dynamic: lease_duration a string", "dynamic", 200, `{"lease_id":"database/creds/app/x","lease_duration":"60","data":{"username":"v-1","password":"Pass@word1"}}`,
			secrets.ErrMalformed, "lease_duration is a string, want a number"},
		{"dynamic: lease_duration zero", "dynamic", 200, `{"lease_id":"database/creds/app/x","lease_duration":0,"data":{"username":"v-1","password":"Pass@word1"}}`,
			secrets.ErrMalformed, "lease_duration is missing or zero"},
		{"dynamic: lease_duration fractional", "dynamic", 200, `{"lease_id":"database/creds/app/x","lease_duration":1.5,"data":{"username":"v-1","password":"Pass@word1"}}`,
			secrets.ErrMalformed, "lease_duration is not a whole number"},
		{"dynamic: renewable a string", "dynamic", 200, `{"lease_id":"database/creds/app/x","lease_duration":60,"renewable":"Pass@word2","data":{"username":"v-1","password":"Pass@word1"}}`,
			secrets.ErrMalformed, "renewable is a string, want a boolean"},
		{"dynamic: password null", "dynamic", 200, `{"lease_id":"database/creds/app/x","lease_duration":60,"data":{"username":"v-1","password":null}}`,
			secrets.ErrEmptyPassword, "data.password is missing or null"},
		{"kv: data.data a string", "kv", 200, `{"data":{"data":"Pass@word1","metadata":{"version":1}}}`,
			secrets.ErrMalformed, "data.data is a string, want an object"},
		{"kv: port out of range", "kv", 200, `{"data":{"data":{"password":"Pass@word1","port":70000},"metadata":{"version":4}}}`,
			secrets.ErrMalformed, `data.data: secrets: malformed secret: field "port" is out of range`},
		{"kv: no password", "kv", 200, `{"data":{"data":{"username":"app"},"metadata":{"version":4}}}`,
			secrets.ErrEmptyPassword, `field "password" is missing or null`},
		{"kv: destroyed", "kv", 200, `{"data":{"data":null,"metadata":{"version":4,"destroyed":true}}}`,
			secrets.ErrEmptyPassword, "version 4 is deleted or destroyed"},
		{"kv: password an object", "kv", 200, `{"data":{"data":{"password":{"v":"Pass@word1"}},"metadata":{"version":1}}}`,
			secrets.ErrMalformed, `field "password" is an object, want a string`},
		{"error answer not JSON", "static", 502, `<html>Pass@word1 proxy error</html>`,
			nil, "502 (an answer that is not Vault's JSON, 35 bytes, withheld)"},
		{"answer too large", "static", 200, `{"data":{"username":"app","password":"` + strings.Repeat("x", 1<<20) + `"}}`,
			secrets.ErrMalformed, "the answer is larger than 1048576 bytes"},
	}
	paths := map[string]string{"static": "database/static-creds/app", "dynamic": "database/creds/app", "kv": "secret/data/app"}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { // the client's retries of a 502 run on the fake clock
				f := answering(paths[tc.kind], tc.status, tc.body)
				var logs testkit.LogBuffer
				c := newClient(t, f, rootToken, vault.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
				var src secrets.Source
				switch tc.kind {
				case "static":
					src, _ = vault.StaticRole(c, "", "app")
				case "dynamic":
					src, _ = vault.DynamicRole(c, "", "app")
				case "kv":
					src, _ = vault.KV(c, "", "app")
				}
				cred, err := src.Fetch(t.Context())
				if err == nil {
					t.Fatalf("Fetch = %v, want an error", cred)
				}
				if cred != (secrets.Credential{}) {
					t.Errorf("with an error, a non-zero credential %v", cred)
				}
				if tc.want != nil && !errors.Is(err, tc.want) {
					t.Errorf("error %v, want one wrapping %v", err, tc.want)
				}
				ve := wantAs[*vault.Error](t, err)
				if ve.Op != vault.OpRead || ve.Path != paths[tc.kind] {
					t.Errorf("error names %q %q", ve.Op, ve.Path)
				}
				if !strings.Contains(err.Error(), tc.msg) {
					t.Errorf("error %q does not contain %q", err, tc.msg)
				}
				for _, text := range []string{err.Error(), fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err), logs.String()} {
					wantNoSecret(t, "error or log", text, answerSecrets...)
				}
			})
		})
	}
}

// TestErrorsReachTheClientsError checks the statuses and failures a
// caller may want to tell apart, and that none of them lets a token out:
// the client's own ResponseError quotes the URL, which holds no token
// (tokens travel in a header).
func TestErrorsReachTheClientsError(t *testing.T) {
	tests := []struct {
		name   string
		fault  func(r *http.Request) (int, string, bool, bool)
		ctx    func() (context.Context, context.CancelFunc)
		is     error
		status int
		msg    string
	}{
		{name: "sealed", fault: func(*http.Request) (int, string, bool, bool) { return 503, vaultErr("Vault is sealed"), false, true },
			is: vault.ErrSealed, status: 503, msg: "vault: read database/static-creds/app: 503 Vault is sealed"},
		{name: "forbidden", fault: func(*http.Request) (int, string, bool, bool) { return 403, vaultErr("permission denied"), false, true },
			is: vault.ErrPermissionDenied, status: 403, msg: "vault: read database/static-creds/app: 403 permission denied"},
		{name: "unknown role", fault: func(*http.Request) (int, string, bool, bool) { return 400, vaultErr("unknown role: app"), false, true },
			status: 400, msg: "vault: read database/static-creds/app: 400 unknown role: app"},
		{name: "down", fault: func(*http.Request) (int, string, bool, bool) { return 0, "", true, true },
			msg: "vault: read database/static-creds/app: Get \"" + testAddr + "/v1/database/static-creds/app\": dial tcp: connection refused"},
		{name: "slow", fault: func(r *http.Request) (int, string, bool, bool) {
			<-r.Context().Done()
			return 0, "", true, true
		}, ctx: func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 2*time.Second)
		},
			is: context.DeadlineExceeded, msg: "context deadline exceeded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := fakeWithRoot()
				staticFake(f)
				// The lookup-self answers; the fault is on the read.
				f.setFault(func(r *http.Request) (int, string, bool, bool) {
					if r.URL.Path != "/v1/database/static-creds/app" {
						return 0, "", false, false
					}
					if tc.name == "slow" {
						f.mu.Unlock() // the fake holds its lock while asking the fault
						defer f.mu.Lock()
					}
					return tc.fault(r)
				})
				src, _ := vault.StaticRole(newClient(t, f, rootToken), "", "app")
				ctx, cancel := t.Context(), context.CancelFunc(func() {})
				if tc.ctx != nil {
					ctx, cancel = tc.ctx()
				}
				defer cancel()
				start := time.Now()
				_, err := src.Fetch(ctx)
				if err == nil {
					t.Fatal("no error")
				}
				if tc.is != nil && !errors.Is(err, tc.is) {
					t.Errorf("error %v, want errors.Is %v", err, tc.is)
				}
				if tc.status != 0 {
					if re := wantAs[*api.ResponseError](t, err); re.StatusCode != tc.status {
						t.Errorf("ResponseError status %d, want %d", re.StatusCode, tc.status)
					}
				}
				if !strings.Contains(err.Error(), tc.msg) {
					t.Errorf("error %q, want %q", err, tc.msg)
				}
				if tc.ctx != nil {
					if took := time.Since(start); took != 2*time.Second {
						t.Errorf("Fetch took %v, want the context's 2 s", took)
					}
				}
				wantNoSecret(t, "error", err.Error(), rootToken)
				if re := (*api.ResponseError)(nil); errors.As(err, &re) {
					wantNoSecret(t, "the client's own error", re.Error(), rootToken)
				}
			})
		})
	}
}

// TestNoSecretInLogs runs a lease's life, a login, a re-login and a token
// renewal with a debug logger and checks that no token, password or secret
// id reaches it, while the ids it should carry do.
func TestNoSecretInLogs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeVault()
		f.dynamic["app"] = &fakeDynamic{ttl: 30 * time.Second, maxTTL: 90 * time.Second, renewable: true}
		f.approle.roleID, f.approle.secretID = "role-1", "Secret-id@one"
		f.approle.token = fakeTokenSpec{ttl: 60 * time.Second, maxTTL: 120 * time.Second, renewable: true}
		var logs testkit.LogBuffer
		c := newClient(t, f, "", appRole("Secret-id@one"),
			vault.WithLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
		src, _ := vault.DynamicRole(c, "", "app")
		var versions []string
		var errs []string
		for range 12 {
			cred, err := src.Fetch(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			versions = append(versions, cred.Version)
			errs = append(errs, fmt.Sprintf("%v %+v %#v %s", cred, cred, cred, cred))
			sleep(20 * time.Second)
		}
		f.setFault(func(r *http.Request) (int, string, bool, bool) {
			return 400, vaultErr("invalid role or secret ID"), false, strings.HasSuffix(r.URL.Path, "/login")
		})
		f.mu.Lock()
		for v := range f.tokens {
			f.revokeTokenLocked(v)
		}
		f.mu.Unlock()
		_, err := src.Fetch(t.Context())
		if err == nil {
			t.Fatal("Fetch with a refused login: no error")
		}
		errs = append(errs, err.Error(), fmt.Sprintf("%+v", err))
		all := logs.String() + strings.Join(errs, "\n")
		wantNoSecret(t, "logs, credentials and errors", all, "Secret-id@", "hvs.LoginToken", "Dyn-pass@")
		for _, want := range []string{`"lease_id":"` + versions[0], `"accessor":"accessor-`, `"msg":"vault: logged in"`, `"msg":"vault: renewed lease"`, `"msg":"vault: token renewed"`} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("the log lacks %s", want)
			}
		}
		if l := f.count("PUT auth/approle/login"); l < 2 {
			t.Errorf("%d logins, want a re-login at least", l)
		}
	})
}
