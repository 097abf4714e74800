package vault_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/pgrotate/rotating/secrets/vault"
)

// TestMain keeps the process environment's Vault variables (VAULT_ADDR,
// VAULT_TOKEN, ...) out of the tests.
func TestMain(m *testing.M) {
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "VAULT_") {
			os.Unsetenv(name)
		}
	}
	os.Exit(m.Run())
}

// fakeVault answers the Vault endpoints the sources use, with the JSON
// shapes Vault gives, for unit tests of the sources' logic. Its clock is
// time.Now, so that inside a synctest bubble it runs on the bubble's fake
// time. (The real-protocol server backed by PostgreSQL is vaulttest.)
type fakeVault struct {
	mu      sync.Mutex
	static  map[string]*fakeStatic  // by name, mount "database"
	dynamic map[string]*fakeDynamic // by role, mount "database"
	leases  map[string]*fakeLease   // by lease id
	kv      map[string][]fakeKV     // by path, mount "secret"; version n at n-1
	tokens  map[string]*fakeToken   // by token value
	approle struct {
		roleID, secretID string
		token            fakeTokenSpec
	}
	k8s struct {
		role, jwt string
		token     fakeTokenSpec
	}
	// fault, if set, answers a request before the endpoints do: status
	// and body, or down for a network failure; ok false lets it through.
	fault func(r *http.Request) (status int, body string, down, ok bool)
	calls map[string]int // "GET database/creds/app": count
	seq   int
	// onCreate, if set, is called (with mu held) for each user a
	// database/creds read creates, as Vault's CREATE ROLE would.
	onCreate func(user, password string)
}

type fakeStatic struct {
	username, password string
	lastRotation       time.Time
	period             time.Duration
}

type fakeDynamic struct {
	ttl, maxTTL time.Duration
	renewable   bool
}

type fakeLease struct {
	role, username, password string
	expires, maxEnd          time.Time
	renewable                bool
	token                    string
}

type fakeKV struct {
	data      string // the JSON object
	created   time.Time
	deleted   bool
	destroyed bool
}

type fakeTokenSpec struct {
	ttl, maxTTL time.Duration // maxTTL 0: none
	renewable   bool
}

type fakeToken struct {
	accessor   string
	creation   time.Duration
	expires    time.Time // zero: never
	maxEnd     time.Time // zero: none
	renewable  bool
	revoked    bool
	policyDeny bool // 403 on store paths while the token is valid
}

func newFakeVault() *fakeVault {
	return &fakeVault{
		static:  map[string]*fakeStatic{},
		dynamic: map[string]*fakeDynamic{},
		leases:  map[string]*fakeLease{},
		kv:      map[string][]fakeKV{},
		tokens:  map[string]*fakeToken{},
		calls:   map[string]int{},
	}
}

// addToken makes a token that is valid for spec.ttl (0: never expires).
func (f *fakeVault) addToken(value string, spec fakeTokenSpec) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addTokenLocked(value, spec)
}

func (f *fakeVault) addTokenLocked(value string, spec fakeTokenSpec) {
	f.seq++
	now := time.Now()
	t := &fakeToken{accessor: fmt.Sprintf("accessor-%d", f.seq), creation: spec.ttl, renewable: spec.renewable}
	if spec.ttl > 0 {
		t.expires = now.Add(spec.ttl)
	}
	if spec.maxTTL > 0 {
		t.maxEnd = now.Add(spec.maxTTL)
	}
	f.tokens[value] = t
}

func (f *fakeVault) revokeToken(value string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revokeTokenLocked(value)
}

// revokeTokenLocked revokes a token and, as Vault does, its leases.
func (f *fakeVault) revokeTokenLocked(value string) {
	if t := f.tokens[value]; t != nil {
		t.revoked = true
	}
	for id, l := range f.leases {
		if l.token == value {
			delete(f.leases, id)
		}
	}
}

func (f *fakeVault) revokeLease(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.leases, id)
}

func (f *fakeVault) setFault(fault func(r *http.Request) (status int, body string, down, ok bool)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fault = fault
}

func (f *fakeVault) rotate(name, password string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.static[name]
	s.password = password
	s.lastRotation = time.Now()
}

func (f *fakeVault) putKV(path, data string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kv[path] = append(f.kv[path], fakeKV{data: data, created: time.Now()})
}

// count returns the number of requests to "METHOD path".
func (f *fakeVault) count(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[key]
}

// total returns the number of requests.
func (f *fakeVault) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		n += c
	}
	return n
}

var errDown = errors.New("connection refused")

// ServeHTTP answers one request.
func (f *fakeVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	status, body := f.answer(r)
	if status == 0 { // down
		panic(http.ErrAbortHandler)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func vaultErr(msgs ...string) string {
	b, _ := json.Marshal(map[string][]string{"errors": append([]string{}, msgs...)})
	return string(b)
}

func asJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// answer returns the status and body for r; status 0 means the server is
// down.
func (f *fakeVault) answer(r *http.Request) (int, string) {
	path := strings.TrimPrefix(r.URL.Path, "/v1/")
	method := r.Method
	if method == http.MethodPost {
		method = http.MethodPut // Vault treats them alike
	}
	var req map[string]any
	if r.Body != nil {
		json.NewDecoder(r.Body).Decode(&req)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[method+" "+path]++
	if f.fault != nil {
		if status, body, down, ok := f.fault(r); ok {
			if down {
				return 0, ""
			}
			return status, body
		}
	}
	if r.Header.Get("X-Vault-Request") != "true" {
		return 400, vaultErr("missing X-Vault-Request header")
	}
	now := time.Now()

	// Logins need no token.
	switch path {
	case "auth/approle/login":
		if req["role_id"] != f.approle.roleID || req["secret_id"] != f.approle.secretID || f.approle.roleID == "" {
			return 400, vaultErr("invalid role or secret ID")
		}
		return f.loginLocked(f.approle.token)
	case "auth/kubernetes/login":
		if req["role"] != f.k8s.role || req["jwt"] != f.k8s.jwt || f.k8s.role == "" {
			return 403, vaultErr("permission denied")
		}
		return f.loginLocked(f.k8s.token)
	}

	value := r.Header.Get("X-Vault-Token")
	tok := f.tokens[value]
	if tok != nil && !tok.expires.IsZero() && !now.Before(tok.expires) {
		f.revokeTokenLocked(value)
	}
	if tok == nil || tok.revoked {
		return 403, vaultErr("permission denied")
	}
	switch {
	case method == "GET" && path == "auth/token/lookup-self":
		ttl := 0
		var expire any
		if !tok.expires.IsZero() {
			ttl = int(tok.expires.Sub(now).Round(time.Second) / time.Second)
			expire = tok.expires.UTC().Format(time.RFC3339Nano)
		}
		return 200, asJSON(map[string]any{"data": map[string]any{
			"accessor": tok.accessor, "creation_ttl": int(tok.creation / time.Second), "expire_time": expire,
			"explicit_max_ttl": 0, "id": value, "renewable": tok.renewable, "ttl": ttl, "type": "service",
			"policies": []string{"default", "app"},
		}})
	case method == "PUT" && path == "auth/token/renew-self":
		if !tok.renewable {
			return 400, vaultErr("lease is not renewable")
		}
		inc := time.Duration(toInt(req["increment"])) * time.Second
		if inc == 0 {
			inc = tok.creation
		}
		if !tok.maxEnd.IsZero() && now.Add(inc).After(tok.maxEnd) {
			inc = tok.maxEnd.Sub(now).Truncate(time.Second)
		}
		if inc <= 0 {
			return 400, vaultErr("past the max TTL, cannot renew")
		}
		tok.expires = now.Add(inc)
		return 200, asJSON(map[string]any{"auth": map[string]any{
			"client_token": value, "accessor": tok.accessor, "lease_duration": int(inc / time.Second),
			"renewable": tok.renewable, "policies": []string{"default", "app"},
		}})
	}
	if tok.policyDeny {
		return 403, vaultErr("permission denied")
	}

	switch {
	case method == "GET" && strings.HasPrefix(path, "database/static-creds/"):
		s := f.static[strings.TrimPrefix(path, "database/static-creds/")]
		if s == nil {
			return 400, vaultErr("unknown role")
		}
		next := s.lastRotation.Add(s.period)
		return 200, asJSON(map[string]any{"request_id": "r", "lease_id": "", "renewable": false, "lease_duration": 0,
			"data": map[string]any{
				"last_vault_rotation": s.lastRotation.UTC().Format(time.RFC3339Nano), "password": s.password,
				"rotation_period": int(s.period / time.Second), "ttl": max(0, int(next.Sub(now)/time.Second)), "username": s.username,
			}, "wrap_info": nil, "warnings": nil, "auth": nil})
	case method == "GET" && strings.HasPrefix(path, "database/creds/"):
		role := strings.TrimPrefix(path, "database/creds/")
		d := f.dynamic[role]
		if d == nil {
			return 400, vaultErr("unknown role")
		}
		f.seq++
		id := fmt.Sprintf("database/creds/%s/lease%04d", role, f.seq)
		l := &fakeLease{role: role, username: fmt.Sprintf("v-token-%s-%04d", role, f.seq), password: fmt.Sprintf("Dyn-pass@%04d", f.seq),
			expires: now.Add(d.ttl), maxEnd: now.Add(d.maxTTL), renewable: d.renewable, token: value}
		f.leases[id] = l
		if f.onCreate != nil {
			f.onCreate(l.username, l.password)
		}
		return 200, asJSON(map[string]any{"request_id": "r", "lease_id": id, "renewable": d.renewable,
			"lease_duration": int(d.ttl / time.Second),
			"data":           map[string]any{"username": l.username, "password": l.password},
			"wrap_info":      nil, "warnings": nil, "auth": nil})
	case method == "PUT" && path == "sys/leases/renew":
		id, _ := req["lease_id"].(string)
		l := f.leases[id]
		if l != nil && !now.Before(l.expires) {
			delete(f.leases, id)
			l = nil
		}
		if l == nil {
			return 400, vaultErr("lease not found")
		}
		if !l.renewable {
			return 400, vaultErr("lease is not renewable")
		}
		inc := time.Duration(toInt(req["increment"])) * time.Second
		if now.Add(inc).After(l.maxEnd) {
			inc = l.maxEnd.Sub(now).Truncate(time.Second)
		}
		if inc <= 0 {
			return 400, vaultErr("past the max TTL, cannot renew")
		}
		l.expires = now.Add(inc)
		return 200, asJSON(map[string]any{"request_id": "r", "lease_id": id, "renewable": true,
			"lease_duration": int(inc / time.Second), "data": nil, "wrap_info": nil, "warnings": nil, "auth": nil})
	case method == "GET" && strings.HasPrefix(path, "secret/data/"):
		versions := f.kv[strings.TrimPrefix(path, "secret/data/")]
		n := len(versions)
		if v := r.URL.Query().Get("version"); v != "" {
			n, _ = strconv.Atoi(v)
		}
		if n < 1 || n > len(versions) {
			return 404, vaultErr()
		}
		v := versions[n-1]
		meta := map[string]any{"created_time": v.created.UTC().Format(time.RFC3339Nano), "custom_metadata": nil,
			"deletion_time": "", "destroyed": v.destroyed, "version": n}
		var data any = json.RawMessage(v.data)
		if v.deleted || v.destroyed {
			meta["deletion_time"] = v.created.UTC().Format(time.RFC3339Nano)
			return 404, asJSON(map[string]any{"data": map[string]any{"data": nil, "metadata": meta}})
		}
		return 200, asJSON(map[string]any{"request_id": "r", "lease_id": "", "renewable": false, "lease_duration": 0,
			"data": map[string]any{"data": data, "metadata": meta}})
	}
	return 404, vaultErr()
}

func (f *fakeVault) loginLocked(spec fakeTokenSpec) (int, string) {
	f.seq++
	value := fmt.Sprintf("hvs.LoginToken%04d", f.seq)
	f.addTokenLocked(value, spec)
	t := f.tokens[value]
	return 200, asJSON(map[string]any{"request_id": "r", "lease_id": "", "renewable": false, "lease_duration": 0,
		"data": nil, "auth": map[string]any{
			"client_token": value, "accessor": t.accessor, "policies": []string{"default", "app"},
			"lease_duration": int(spec.ttl / time.Second), "renewable": spec.renewable, "orphan": true,
		}})
}

func toInt(v any) int {
	switch n := v.(type) {
	case float64:
		return int(n)
	case string:
		i, _ := strconv.Atoi(n)
		return i
	}
	return 0
}

// memTransport hands requests to a handler in the same goroutine, with no
// network: it works inside a synctest bubble.
type memTransport struct{ h http.Handler }

func (m memTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := r.Context().Err(); err != nil {
		return nil, err
	}
	rec := httptest.NewRecorder()
	aborted := func() (aborted bool) {
		defer func() {
			if p := recover(); p != nil {
				if p != http.ErrAbortHandler {
					panic(p)
				}
				aborted = true
			}
		}()
		m.h.ServeHTTP(rec, r)
		return false
	}()
	if aborted {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errDown}
	}
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}

const testAddr = "http://vault.test:8200"

// newAPI returns a vault/api client that reaches h in memory, with the
// client's default retries (which run on the bubble's clock in synctest)
// and token.
func newAPI(t testing.TB, h http.Handler, token string) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = testAddr
	cfg.HttpClient = &http.Client{Transport: memTransport{h}}
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(token)
	return c
}

func newClient(t testing.TB, h http.Handler, token string, opts ...vault.ClientOption) *vault.Client {
	t.Helper()
	c, err := vault.NewClient(newAPI(t, h, token), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sleep advances a synctest bubble's clock by d.
func sleep(d time.Duration) { time.Sleep(d) }
