package smagent_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"go.uber.org/goleak"

	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
	"github.com/pgrotate/rotating/secrets/awssm/smagent"
)

// startAgent returns a Secrets Manager endpoint and an agent in front of
// it, serving on loopback, both closed when the test ends.
func startAgent(t *testing.T, opts ...awssmtest.AgentOption) (*awssmtest.Server, *awssmtest.Agent) {
	t.Helper()
	srv := awssmtest.NewServer()
	t.Cleanup(srv.Close)
	agent := srv.NewAgent(opts...).Start()
	t.Cleanup(agent.Close)
	return srv, agent
}

// newSource returns a source for agent with its token.
func newSource(t *testing.T, agent *awssmtest.Agent, id string, opts ...smagent.Option) *smagent.Source {
	t.Helper()
	base := []smagent.Option{smagent.WithEndpoint(agent.URL()), smagent.WithToken(agent.Token())}
	src, err := smagent.New(id, append(base, opts...)...)
	if err != nil {
		t.Fatalf("smagent.New: %v", err)
	}
	return src
}

// wantNoSecret fails the test if s contains any of values.
func wantNoSecret(t *testing.T, what, s string, values ...string) {
	t.Helper()
	for _, v := range values {
		if v != "" && strings.Contains(s, v) {
			t.Errorf("%s contains a secret (%d bytes of text)", what, len(s))
		}
	}
}

// wantErrorSecretFree checks err's text in every format.
func wantErrorSecretFree(t *testing.T, err error, values ...string) {
	t.Helper()
	for _, verb := range []string{"%v", "%+v", "%s", "%q", "%#v"} {
		wantNoSecret(t, "the error formatted with "+verb, fmt.Sprintf(verb, err), values...)
	}
}

func wantAs[E error](t *testing.T, err error) E {
	t.Helper()
	var target E
	if !errors.As(err, &target) {
		t.Fatalf("errors.As(%v, %T) = false", err, target)
	}
	return target
}

// secretBinaryInput creates a secret whose value is binary, through the
// SDK (the tests may use it; the package does not).
func secretBinaryInput(name string, value []byte) *secretsmanager.CreateSecretInput {
	return &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretBinary: value}
}

const rdsJSON = `{"engine":"postgres","host":"db.internal","port":5432,"username":"app","password":"p1-secret","dbname":"app"}`

func TestFetch(t *testing.T) {
	srv, agent := startAgent(t)
	arn, v1 := srv.CreateSecret("prod/app/db", rdsJSON)
	for _, id := range []string{"prod/app/db", arn} {
		cred, err := newSource(t, agent, id).Fetch(t.Context())
		if err != nil {
			t.Fatalf("Fetch(%s): %v", id, err)
		}
		want := secrets.Credential{Username: "app", Password: "p1-secret", Host: "db.internal", Port: 5432, Database: "app", Version: v1}
		if cred != want {
			t.Errorf("Fetch(%s) = %v, want %v", id, cred, want)
		}
	}

	// A plain-text secret is the password; a version stage of one's own.
	_, pv := srv.CreateSecret("plain", "just-a-password\n")
	cred, err := newSource(t, agent, "plain").Fetch(t.Context())
	if err != nil || cred.Password != "just-a-password" || cred.Username != "" || cred.Version != pv {
		t.Errorf("plain secret: %v, %v", cred, err)
	}
	blue := srv.PutValue("prod/app/db", `{"username":"blue","password":"b"}`, "BLUE")
	cred, err = newSource(t, agent, "prod/app/db", smagent.WithVersionStage("BLUE")).Fetch(t.Context())
	if err != nil || cred.Username != "blue" || cred.Version != blue {
		t.Errorf("WithVersionStage(BLUE): %v, %v", cred, err)
	}
	// Custom keys.
	srv.CreateSecret("custom", `{"user":"u","pass":"pw"}`)
	cred, err = newSource(t, agent, "custom", smagent.WithKeys(secrets.Keys{Username: "user", Password: "pass"})).Fetch(t.Context())
	if err != nil || cred.Username != "u" || cred.Password != "pw" {
		t.Errorf("WithKeys: %v, %v", cred, err)
	}
}

func TestFetchBinarySecret(t *testing.T) {
	srv, agent := startAgent(t)
	srv.Start()
	if _, err := srv.Client(t.Context()).CreateSecret(t.Context(), secretBinaryInput("bin", []byte(`{"username":"b","password":"bin-pw"}`))); err != nil {
		t.Fatal(err)
	}
	cred, err := newSource(t, agent, "bin").Fetch(t.Context())
	if err != nil || cred.Username != "b" || cred.Password != "bin-pw" {
		t.Errorf("binary secret: %v, %v", cred, err)
	}
}

func TestFetchMalformedSecret(t *testing.T) {
	srv, agent := startAgent(t)
	cases := []struct {
		value string
		want  error
		text  string
	}{
		{`{"username":"app"}`, secrets.ErrEmptyPassword, `field "password" is missing or null`},
		{`{"username":"app","password":"p-secret-1",}`, secrets.ErrMalformed, "invalid JSON"},
		{`{"username":"app","password":5}`, secrets.ErrMalformed, `field "password" is a number`},
		{"two\nlines-secret", secrets.ErrMalformed, "line break"},
	}
	for i, tc := range cases {
		id := "bad" + strconv.Itoa(i)
		_, v := srv.CreateSecret(id, tc.value)
		_, err := newSource(t, agent, id).Fetch(t.Context())
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) || !strings.Contains(err.Error(), v) {
			t.Errorf("%q: %v, want %v naming %q and the version", tc.value, err, tc.want, tc.text)
		}
		e := wantAs[*smagent.Error](t, err)
		if e.Op != smagent.OpFetch || e.VersionID != v || e.SecretID != id {
			t.Errorf("%q: %+v", tc.value, e)
		}
		wantErrorSecretFree(t, err, "p-secret-1", "lines-secret", agent.Token())
	}
}

// Fetch reads the agent's cache: after a rotation through the Secrets
// Manager API it returns the old version, with no call to the store, as
// long as nothing told it the old one was rejected.
func TestFetchReadsTheAgentsCache(t *testing.T) {
	srv, agent := startAgent(t)
	_, v1 := srv.CreateSecret("s", `{"username":"app","password":"p1"}`)
	src := newSource(t, agent, "s")
	for range 3 {
		if c, err := src.Fetch(t.Context()); err != nil || c.Version != v1 {
			t.Fatalf("Fetch: %v, %v", c, err)
		}
	}
	srv.PutValue("s", `{"username":"app","password":"p2"}`)
	if c, err := src.Fetch(t.Context()); err != nil || c.Version != v1 {
		t.Fatalf("Fetch after the rotation: %v, %v; want the agent's cached %s", c, err, v1)
	}
	if st := agent.Stats(); st.Requests != 4 || st.RefreshNow != 0 || st.GetSecretValueCalls != 1 || st.CacheHits != 3 {
		t.Errorf("agent stats %+v, want 4 requests, 1 store call, no refreshNow", st)
	}
}

// The single-user rotation window: AWSCURRENT is the rejected credential,
// AWSPENDING the live one. The first process brings AWSPENDING into the
// agent's cache; the others read it from there.
func TestFetchPendingInTheRotationWindow(t *testing.T) {
	srv, agent := startAgent(t)
	_, v1 := srv.CreateSecret("s", `{"username":"app","password":"p1"}`)
	procs := []*smagent.Source{newSource(t, agent, "s"), newSource(t, agent, "s"), newSource(t, agent, "s")}
	var old secrets.Credential
	for _, src := range procs {
		c, err := src.Fetch(t.Context())
		if err != nil || c.Version != v1 {
			t.Fatalf("Fetch: %v, %v", c, err)
		}
		old = c
	}
	v2 := srv.PutValue("s", `{"username":"app","password":"p2"}`, awssmtest.StagePending)
	agent.ResetStats()
	for i, src := range procs {
		c, err := src.Fetch(t.Context()) // the connector's Fetch after the rejection
		if err != nil || c.Version != v1 {
			t.Fatalf("process %d: Fetch in the window: %v, %v", i, c, err)
		}
		p, err := src.FetchPending(t.Context(), c)
		if err != nil || p.Version != v2 || p.Password != "p2" {
			t.Fatalf("process %d: FetchPending: %v, %v", i, p, err)
		}
	}
	// 3 Fetches from the cache, 3 AWSPENDING reads: one store call.
	if st := agent.Stats(); st.Requests != 6 || st.RefreshNow != 0 || st.GetSecretValueCalls != 1 {
		t.Errorf("agent stats for 3 processes in the window: %+v, want 6 requests, no refreshNow, 1 store call", st)
	}

	// finishSecret; AWS leaves AWSPENDING on the new current version.
	srv.MoveStage("s", awssmtest.StageCurrent, v2)
	if p, err := procs[0].FetchPending(t.Context(), old); err != nil || p.Version != v2 {
		t.Errorf("FetchPending after finishSecret: %v, %v", p, err)
	}
	// The next rotation, within the agent's TTL: the cached AWSPENDING is
	// the previous rotation's, now the rejected one; FetchPending asks
	// again with refreshNow.
	cur := secrets.Credential{Username: "app", Password: "p2", Version: v2}
	v3 := srv.PutValue("s", `{"username":"app","password":"p3"}`, awssmtest.StagePending)
	agent.ResetStats()
	if p, err := procs[1].FetchPending(t.Context(), cur); err != nil || p.Version != v3 {
		t.Fatalf("FetchPending in the next window: %v, %v", p, err)
	}
	if st := agent.Stats(); st.Requests != 2 || st.RefreshNow != 1 || st.GetSecretValueCalls != 1 {
		t.Errorf("agent stats: %+v, want a cached read then one refreshNow", st)
	}
	// The other processes now read v3 from the cache.
	agent.ResetStats()
	if p, err := procs[2].FetchPending(t.Context(), cur); err != nil || p.Version != v3 {
		t.Fatalf("FetchPending, another process: %v, %v", p, err)
	}
	if st := agent.Stats(); st.Requests != 1 || st.GetSecretValueCalls != 0 {
		t.Errorf("agent stats: %+v, want one cached read", st)
	}
}

// A runbook rotation: ALTER ROLE first, the secret updated later. While
// Secrets Manager is behind, every Fetch that the agent answers with the
// rejected credential asks again with refreshNow; once Secrets Manager has
// the new one, Fetch gets it at once, not after the agent's TTL.
func TestFetchAfterARejectionRefreshes(t *testing.T) {
	srv, agent := startAgent(t)
	_, v1 := srv.CreateSecret("s", `{"username":"app","password":"p1"}`)
	src := newSource(t, agent, "s")
	old, err := src.Fetch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The database rejects p1; Secrets Manager still has it.
	agent.ResetStats()
	c, err := src.Fetch(t.Context())
	if err != nil || c.Version != v1 {
		t.Fatalf("Fetch: %v, %v", c, err)
	}
	_, err = src.FetchPending(t.Context(), c)
	if !errors.Is(err, secrets.ErrNoPending) {
		t.Fatalf("FetchPending with nothing pending: %v, want ErrNoPending", err)
	}
	if ae := wantAs[*smagent.AgentError](t, err); ae.StatusCode != 400 || ae.Code != "ResourceNotFoundException" {
		t.Errorf("the agent's answer: %+v", ae)
	}
	// Fetch (cache), AWSPENDING (not found, never cached), AWSCURRENT with
	// refreshNow.
	if st := agent.Stats(); st.Requests != 3 || st.RefreshNow != 1 || st.GetSecretValueCalls != 2 {
		t.Errorf("agent stats: %+v, want 3 requests, 1 refreshNow", st)
	}

	// Each later step of the incident: one refreshNow read.
	agent.ResetStats()
	for range 3 {
		if c, err := src.Fetch(t.Context()); err != nil || c.Version != v1 {
			t.Fatalf("Fetch while Secrets Manager is behind: %v, %v", c, err)
		}
	}
	if st := agent.Stats(); st.Requests != 6 || st.RefreshNow != 3 {
		t.Errorf("agent stats: %+v, want 3 cached reads each followed by a refreshNow", st)
	}

	// The secret is updated: the next Fetch has it, although the agent's
	// copy of v1 is younger than its TTL.
	v2 := srv.PutValue("s", `{"username":"app","password":"p2"}`)
	if c, err := src.Fetch(t.Context()); err != nil || c.Version != v2 {
		t.Fatalf("Fetch after the update: %v, %v, want %s", c, err, v2)
	}
	// And from then on the cache serves v2 without refreshNow.
	agent.ResetStats()
	if c, err := src.Fetch(t.Context()); err != nil || c.Version != v2 {
		t.Fatalf("Fetch: %v, %v", c, err)
	}
	if st := agent.Stats(); st.RefreshNow != 0 || st.CacheHits != 1 {
		t.Errorf("agent stats: %+v, want one cache hit", st)
	}
	_ = old
}

// Secrets Manager was updated before the database rejected the old
// credential, but the agent still serves the old one: FetchPending finds
// no pending version and returns Secrets Manager's AWSCURRENT.
func TestFetchPendingReturnsAFresherCurrent(t *testing.T) {
	srv, agent := startAgent(t)
	srv.CreateSecret("s", `{"username":"app","password":"p1"}`)
	src := newSource(t, agent, "s")
	if _, err := src.Fetch(t.Context()); err != nil {
		t.Fatal(err)
	}
	v2 := srv.PutValue("s", `{"username":"app","password":"p2"}`)
	stale, err := src.Fetch(t.Context())
	if err != nil || stale.Password != "p1" {
		t.Fatalf("Fetch: %v, %v", stale, err)
	}
	c, err := src.FetchPending(t.Context(), stale)
	if err != nil || c.Version != v2 || c.Password != "p2" {
		t.Fatalf("FetchPending: %v, %v, want %s", c, err, v2)
	}
}

// FetchPending's rules for what is not a pending credential, and a
// malformed pending version.
func TestFetchPendingNone(t *testing.T) {
	srv, agent := startAgent(t)
	_, v1 := srv.CreateSecret("s", `{"username":"app","password":"p1"}`)
	src := newSource(t, agent, "s")
	cur, err := src.Fetch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// AWSPENDING on the current version.
	srv.MoveStage("s", awssmtest.StagePending, v1)
	_, err = src.FetchPending(t.Context(), cur)
	if !errors.Is(err, secrets.ErrNoPending) || !strings.Contains(err.Error(), "also AWSCURRENT") {
		t.Errorf("AWSPENDING on AWSCURRENT: %v", err)
	}
	// A pending version with the rejected login under another id.
	srv.PutValue("s", `{"username":"app","password":"p1"}`, awssmtest.StagePending)
	_, err = src.FetchPending(t.Context(), cur)
	if !errors.Is(err, secrets.ErrNoPending) || !strings.Contains(err.Error(), "holds the rejected login") {
		t.Errorf("pending with the rejected login: %v", err)
	}
	// A malformed pending version.
	pv := srv.PutValue("s", `{"username":"app"}`, awssmtest.StagePending)
	_, err = src.FetchPending(t.Context(), cur)
	if !errors.Is(err, secrets.ErrEmptyPassword) || errors.Is(err, secrets.ErrNoPending) || !strings.Contains(err.Error(), pv) {
		t.Errorf("malformed pending: %v", err)
	}
	if e := wantAs[*smagent.Error](t, err); e.Op != smagent.OpFetchPending || e.Stage != smagent.StagePending {
		t.Errorf("%+v", e)
	}
}

func TestAgentErrors(t *testing.T) {
	srv, agent := startAgent(t, awssmtest.WithAgentTimeout(300*time.Millisecond))
	srv.CreateSecret("s", `{"username":"app","password":"p1-secret"}`)
	token := agent.Token()
	var logs testkit.LogBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	t.Run("bad token", func(t *testing.T) {
		src := newSource(t, agent, "s", smagent.WithToken("not-the-agents-token"), smagent.WithLogger(logger))
		_, err := src.Fetch(t.Context())
		if !errors.Is(err, smagent.ErrBadToken) {
			t.Fatalf("wrong token: %v, want ErrBadToken", err)
		}
		ae := wantAs[*smagent.AgentError](t, err)
		if ae.StatusCode != 403 || ae.Message != "Bad Token" || ae.TokenSource != "WithToken" ||
			!strings.Contains(err.Error(), "403 Forbidden (Bad Token); it refused the token from WithToken") {
			t.Errorf("%+v: %v", ae, err)
		}
		wantErrorSecretFree(t, err, "not-the-agents-token", token, "p1-secret")
	})
	t.Run("no token", func(t *testing.T) {
		src, err := smagent.New("s", smagent.WithEndpoint(agent.URL()),
			smagent.WithTokenDiscovery(func(string) string { return "" }, filepath.Join(t.TempDir(), "absent")))
		if err != nil {
			t.Fatal(err)
		}
		before := agent.Stats().Requests + agent.Stats().BadToken
		_, err = src.Fetch(t.Context())
		if !errors.Is(err, smagent.ErrNoToken) || !strings.Contains(err.Error(), "AWS_TOKEN, /var/run/awssmatoken, AWS_SESSION_TOKEN or AWS_CONTAINER_AUTHORIZATION_TOKEN") {
			t.Errorf("no token: %v", err)
		}
		if after := agent.Stats().Requests + agent.Stats().BadToken; after != before {
			t.Errorf("a request was sent without a token")
		}
	})
	t.Run("over the connection limit", func(t *testing.T) {
		// An agent that allows one request at a time; the first one waits
		// out an injected latency, in flight.
		agent := srv.NewAgent(awssmtest.WithAgentMaxConnections(1), awssmtest.WithAgentToken(token)).Start()
		defer agent.Close()
		agent.InjectFault(awssmtest.Fault{Latency: 2 * time.Second, Count: 1})
		src := newSource(t, agent, "s", smagent.WithLogger(logger))
		before := agent.Stats().Requests
		slow := make(chan error, 1)
		go func() { _, err := src.Fetch(t.Context()); slow <- err }()
		testkit.WaitFor(t.Context(), t, 10*time.Second, "the slow request to be in flight", func() bool { return agent.Stats().Requests > before })
		_, err := src.Fetch(t.Context())
		if !errors.Is(err, smagent.ErrTooManyConnections) {
			t.Fatalf("a second request while one is in flight: %v, want ErrTooManyConnections", err)
		}
		ae := wantAs[*smagent.AgentError](t, err)
		if ae.StatusCode != 429 || !strings.Contains(err.Error(), "429 Too Many Requests (Connection limit exceeded)") {
			t.Errorf("%+v: %v", ae, err)
		}
		wantErrorSecretFree(t, err, token, "p1-secret")
		if err := <-slow; err != nil {
			t.Errorf("the slow request: %v", err)
		}
	})
	t.Run("store errors passed through", func(t *testing.T) {
		src := newSource(t, agent, "no/such/secret")
		_, err := src.Fetch(t.Context())
		ae := wantAs[*smagent.AgentError](t, err)
		if ae.StatusCode != 400 || ae.Code != "ResourceNotFoundException" || !strings.Contains(err.Error(), "HTTP 400 Bad Request: ResourceNotFoundException: Secrets Manager can't find the specified secret.") {
			t.Errorf("unknown secret: %+v: %v", ae, err)
		}
		srv.CreateSecret("denied", `{"username":"app","password":"p1-secret"}`) // not in the agent's cache
		srv.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{Error: "AccessDeniedException", Message: "User is not authorized"})
		defer srv.ClearFaults()
		_, err = newSource(t, agent, "denied").Fetch(t.Context())
		if ae := wantAs[*smagent.AgentError](t, err); ae.StatusCode != 400 || ae.Code != "AccessDeniedException" || ae.Message != "User is not authorized" {
			t.Errorf("access denied: %+v", ae)
		}
	})
	t.Run("agent timeout", func(t *testing.T) {
		srv.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{Hang: true})
		defer srv.ClearFaults()
		src := newSource(t, agent, "timeout-secret")
		_, err := src.Fetch(t.Context())
		if !errors.Is(err, smagent.ErrAgentTimeout) {
			t.Fatalf("store hang: %v, want ErrAgentTimeout", err)
		}
		if ae := wantAs[*smagent.AgentError](t, err); ae.StatusCode != 504 || ae.Code != "TimeoutError" {
			t.Errorf("%+v", ae)
		}
	})
	t.Run("agent hangs past the context", func(t *testing.T) {
		agent.InjectFault(awssmtest.Fault{Hang: true, Count: 1})
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := newSource(t, agent, "s").Fetch(ctx)
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, smagent.ErrAgentUnreachable) || time.Since(start) > 5*time.Second {
			t.Errorf("hanging agent: %v after %v", err, time.Since(start))
		}
	})
	t.Run("malformed answer", func(t *testing.T) {
		agent.InjectFault(awssmtest.Fault{MalformedBody: true, Count: 1})
		_, err := newSource(t, agent, "s", smagent.WithLogger(logger)).Fetch(t.Context())
		if !errors.Is(err, secrets.ErrMalformed) || !strings.Contains(err.Error(), "not valid JSON") {
			t.Errorf("malformed answer: %v", err)
		}
	})
	t.Run("agent down", func(t *testing.T) {
		down := srv.NewAgent().Start()
		u := down.URL()
		down.Close()
		src, err := smagent.New("s", smagent.WithEndpoint(u), smagent.WithToken(token))
		if err != nil {
			t.Fatal(err)
		}
		_, err = src.Fetch(t.Context())
		if !errors.Is(err, smagent.ErrAgentUnreachable) || !strings.Contains(err.Error(), "at "+u+": dial tcp") {
			t.Errorf("agent down: %v", err)
		}
		wantAs[*net.OpError](t, err)
		wantErrorSecretFree(t, err, token)
	})
	wantNoSecret(t, "the source's logs", logs.String(), token, "not-the-agents-token", "p1-secret")
	if !strings.Contains(logs.String(), `"msg":"smagent: request failed"`) {
		t.Errorf("no failure logged:\n%s", logs.String())
	}
}

// Whatever listens on the port, its error text is bounded, printable and
// never echoes the token; a redirect is not followed (the token would go
// with it).
func TestForeignAnswers(t *testing.T) {
	const token = "tok-ABCDEF-123456"
	var (
		mu        sync.Mutex
		leaked    []string
		elsewhere = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			leaked = append(leaked, r.Header.Get(smagent.TokenHeader))
			mu.Unlock()
		}))
	)
	defer elsewhere.Close()
	foreign := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("secretId") {
		case "redirect":
			http.Redirect(w, r, elsewhere.URL+"/steal", http.StatusFound)
		case "echo":
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, "bad token %s\x00\x1b[31m%s", r.Header.Get(smagent.TokenHeader), strings.Repeat("x", 500))
		case "json":
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"__type":"com.amazonaws.secretsmanager#InvalidRequestException","Message":"You can't do that"}`)
		}
	}))
	defer foreign.Close()
	src := func(id string) error {
		s, err := smagent.New(id, smagent.WithEndpoint(foreign.URL), smagent.WithToken(token))
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Fetch(t.Context())
		return err
	}
	err := src("redirect")
	if ae := wantAs[*smagent.AgentError](t, err); ae.StatusCode != http.StatusFound {
		t.Errorf("redirect: %v", err)
	}
	if len(leaked) != 0 {
		t.Errorf("the redirect was followed")
	}
	err = src("echo")
	ae := wantAs[*smagent.AgentError](t, err)
	if !strings.Contains(ae.Message, "bad token [REDACTED]") || len(ae.Message) > 210 || strings.ContainsAny(ae.Message, "\x00\x1b") {
		t.Errorf("echoing body: message %q", ae.Message)
	}
	wantErrorSecretFree(t, err, token)
	err = src("json")
	if ae := wantAs[*smagent.AgentError](t, err); ae.Code != "InvalidRequestException" || ae.Message != "You can't do that" {
		t.Errorf("JSON error body: %+v", ae)
	}
}

func TestTokenDiscovery(t *testing.T) {
	_, agent := startAgent(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := agent.Token()
	goodFile := write("good", " "+good+"\n")
	badFile := write("bad", "stale-token\n")
	absent := filepath.Join(dir, "absent")
	cases := []struct {
		name        string
		env         map[string]string
		defaultFile string
		from        string // the token's source, as a 403 names it
		ok          bool
	}{
		{"AWS_TOKEN first", map[string]string{"AWS_TOKEN": good, "AWS_SESSION_TOKEN": "session"}, badFile, "AWS_TOKEN", true},
		{"AWS_TOKEN=file://", map[string]string{"AWS_TOKEN": "file://" + goodFile}, badFile, "AWS_TOKEN (file " + goodFile + ")", true},
		{"the default file before AWS_SESSION_TOKEN", map[string]string{"AWS_SESSION_TOKEN": "session"}, goodFile, "file " + goodFile, true},
		{"the default file, stale", map[string]string{"AWS_SESSION_TOKEN": good}, badFile, "file " + badFile, false},
		{"AWS_SESSION_TOKEN (Lambda)", map[string]string{"AWS_SESSION_TOKEN": good, "AWS_CONTAINER_AUTHORIZATION_TOKEN": "x"}, absent, "AWS_SESSION_TOKEN", true},
		{"AWS_CONTAINER_AUTHORIZATION_TOKEN", map[string]string{"AWS_CONTAINER_AUTHORIZATION_TOKEN": good}, absent, "AWS_CONTAINER_AUTHORIZATION_TOKEN", true},
		{"wrong AWS_TOKEN wins over a right session token", map[string]string{"AWS_TOKEN": "nope", "AWS_SESSION_TOKEN": good}, absent, "AWS_TOKEN", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src, err := smagent.New("s", smagent.WithEndpoint(agent.URL()),
				smagent.WithTokenDiscovery(func(k string) string { return tc.env[k] }, tc.defaultFile))
			if err != nil {
				t.Fatal(err)
			}
			_, err = src.Fetch(t.Context())
			var ae *smagent.AgentError
			if !errors.As(err, &ae) {
				t.Fatalf("got %v, want an answer from the agent", err)
			}
			switch {
			case tc.ok && ae.StatusCode == 403:
				t.Errorf("the agent refused the token from %s", ae.TokenSource)
			case !tc.ok && !errors.Is(err, smagent.ErrBadToken):
				t.Errorf("got %v, want a 403", err)
			case !tc.ok && ae.TokenSource != tc.from:
				t.Errorf("403 names the token's source %q, want %q", ae.TokenSource, tc.from)
			}
			// The secret does not exist: a token that passed gets the
			// store's 400.
			if tc.ok && ae.StatusCode != 400 {
				t.Errorf("got %v, want the store's ResourceNotFoundException", err)
			}
			wantErrorSecretFree(t, err, good, "stale-token", "session")
		})
	}

	t.Run("problems", func(t *testing.T) {
		for _, tc := range []struct {
			name        string
			env         map[string]string
			defaultFile string
			want        string
		}{
			{"AWS_TOKEN file missing", map[string]string{"AWS_TOKEN": "file://" + absent}, goodFile, "reading the agent's token file: open " + absent},
			{"default file unreadable", nil, dir, "reading the agent's token file " + dir},
			{"empty token file", map[string]string{"AWS_TOKEN": "file://" + write("empty", " \n")}, absent, "is empty"},
			{"control character", map[string]string{"AWS_SESSION_TOKEN": "ab\x01cd"}, absent, "AWS_SESSION_TOKEN holds a control character at byte 2"},
		} {
			src, err := smagent.New("s", smagent.WithEndpoint(agent.URL()),
				smagent.WithTokenDiscovery(func(k string) string { return tc.env[k] }, tc.defaultFile))
			if err != nil {
				t.Fatal(err)
			}
			_, err = src.Fetch(t.Context())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: %v, want it to say %q", tc.name, err, tc.want)
			}
		}
	})
}

// A token file is read anew for every request: a restarted agent's new
// token is picked up.
func TestTokenFileIsReread(t *testing.T) {
	srv, agent := startAgent(t)
	srv.CreateSecret("s", `{"username":"app","password":"p1"}`)
	path := filepath.Join(t.TempDir(), "awssmatoken")
	if err := os.WriteFile(path, []byte(agent.Token()), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, opt := range []smagent.Option{
		smagent.WithTokenFile(path),
		smagent.WithTokenDiscovery(func(k string) string {
			if k == "AWS_TOKEN" {
				return "file://" + path
			}
			return ""
		}, ""),
	} {
		src, err := smagent.New("s", smagent.WithEndpoint(agent.URL()), opt)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := src.Fetch(t.Context()); err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		next := "restarted-" + agent.Token()
		agent.SetToken(next)
		if _, err := src.Fetch(t.Context()); !errors.Is(err, smagent.ErrBadToken) {
			t.Fatalf("Fetch with the old file: %v, want ErrBadToken", err)
		}
		if err := os.WriteFile(path, []byte(next+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := src.Fetch(t.Context()); err != nil {
			t.Fatalf("Fetch after the file changed: %v", err)
		}
	}
}

func TestEndpoint(t *testing.T) {
	for _, bad := range []string{
		"http://10.0.0.5:2773", "http://agent.internal:2773", "https://localhost:2773", "http://localhost:2773/secretsmanager/get",
		"http://localhost:2773?x=1", "http://user:hunter2@localhost:2773", "localhost:2773", "http://localhost:99999", "http://[::ffff:10.0.0.1]:2773",
	} {
		_, err := smagent.New("s", smagent.WithEndpoint(bad), smagent.WithToken("t"))
		if !errors.Is(err, smagent.ErrInvalidOption) {
			t.Errorf("WithEndpoint(%q): %v, want ErrInvalidOption", bad, err)
		}
		wantNoSecret(t, "the error for "+bad, fmt.Sprint(err), "hunter2")
	}
	for _, good := range []string{"http://localhost:2773", "http://127.0.0.1:2773/", "http://[::1]:2773", "http://127.0.0.2:8080"} {
		if _, err := smagent.New("s", smagent.WithEndpoint(good), smagent.WithToken("t")); err != nil {
			t.Errorf("WithEndpoint(%q): %v", good, err)
		}
	}

	// The Lambda extension's port variable sets the default endpoint.
	srv, agent := startAgent(t)
	srv.CreateSecret("s", `{"username":"app","password":"p1"}`)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(agent.URL(), "http://"))
	t.Setenv(smagent.EnvLambdaPort, port)
	src, err := smagent.New("s", smagent.WithToken(agent.Token()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Fetch(t.Context()); err != nil {
		t.Errorf("Fetch through %s=%s: %v", smagent.EnvLambdaPort, port, err)
	}
	t.Setenv(smagent.EnvLambdaPort, "http")
	if _, err := smagent.New("s", smagent.WithToken("t")); !errors.Is(err, smagent.ErrInvalidOption) {
		t.Errorf("a bad %s: %v", smagent.EnvLambdaPort, err)
	}
}

func TestNew(t *testing.T) {
	if _, err := smagent.New(""); err == nil {
		t.Error("empty secret id accepted")
	}
	if _, err := smagent.New("a\nb"); err == nil {
		t.Error("secret id with a line break accepted")
	}
	_, err := smagent.New("s", smagent.WithHTTPClient(nil), smagent.WithLogger(nil), smagent.WithVersionStage(""),
		smagent.WithToken(""), smagent.WithTokenFile("f"))
	for _, want := range []string{"nil client", "nil logger", "staging label", "WithToken's token is empty", "exclusive"} {
		if !strings.Contains(fmt.Sprint(err), want) {
			t.Errorf("New's joined error %q lacks %q", err, want)
		}
	}
	if !errors.Is(err, smagent.ErrInvalidOption) {
		t.Errorf("%v is not ErrInvalidOption", err)
	}
}

func TestDescribeAndFormat(t *testing.T) {
	const token = "a-token-that-must-not-show"
	src, err := smagent.New("prod/app/db", smagent.WithToken(token))
	if err != nil {
		t.Fatal(err)
	}
	if d := src.Describe(); d != "aws-secretsmanager-agent prod/app/db" {
		t.Errorf("Describe() = %q", d)
	}
	blue, _ := smagent.New("prod/app/db", smagent.WithToken(token), smagent.WithVersionStage("BLUE"))
	if d := blue.Describe(); d != "aws-secretsmanager-agent prod/app/db BLUE" {
		t.Errorf("Describe() = %q", d)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		got := fmt.Sprintf(verb, src)
		if got != src.Describe() {
			t.Errorf("Sprintf(%s, src) = %q, want the description", verb, got)
		}
	}
	var logs testkit.LogBuffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "source", src, "struct", struct{ S *smagent.Source }{src})
	wantNoSecret(t, "a log line with the source", logs.String(), token)
}

func TestConcurrentUse(t *testing.T) {
	srv, agent := startAgent(t)
	_, v1 := srv.CreateSecret("s", `{"username":"app","password":"p1"}`)
	src := newSource(t, agent, "s")
	rejected := secrets.Credential{Username: "app", Password: "p1", Version: v1}
	srv.PutValue("s", `{"username":"app","password":"p2"}`, awssmtest.StagePending)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			var err error
			if i%2 == 0 {
				_, err = src.Fetch(t.Context())
			} else {
				_, err = src.FetchPending(t.Context(), rejected)
			}
			if err != nil {
				t.Errorf("call %d: %v", i, err)
			}
		})
	}
	wg.Wait()
}

// The source starts no goroutine, and its default client keeps no idle
// connection to the agent.
func TestNoGoroutineLeft(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	srv := awssmtest.NewServer()
	defer srv.Close()
	srv.CreateSecret("s", `{"username":"app","password":"p1"}`)
	agent := srv.NewAgent().Start()
	defer agent.Close()
	src, err := smagent.New("s", smagent.WithEndpoint(agent.URL()), smagent.WithToken(agent.Token()))
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := src.Fetch(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}
