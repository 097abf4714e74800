package awssmtest_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"go.uber.org/goleak"

	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
)

// agentAnswer is the agent's JSON answer, as a client reads it.
type agentAnswer struct {
	ARN           string
	Name          string
	VersionId     string
	SecretString  *string
	SecretBinary  []byte
	VersionStages []string
	CreatedDate   any
}

// agentGet sends GET base+pathQuery with token (none if empty) through
// client and returns the status and the body.
func agentGet(t *testing.T, client *http.Client, base, pathQuery, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+pathQuery, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set(awssmtest.AgentTokenHeader, token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", pathQuery, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// getSecret asks the agent for a secret and decodes a 200 answer; it fails
// the test for any other status.
func getSecret(t *testing.T, client *http.Client, base, query, token string) agentAnswer {
	t.Helper()
	status, body := agentGet(t, client, base, "/secretsmanager/get?"+query, token)
	if status != http.StatusOK {
		t.Fatalf("GET ?%s: status %d, body %q", query, status, body)
	}
	var a agentAnswer
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		t.Fatalf("GET ?%s: body is not JSON: %v", query, err)
	}
	return a
}

func wantAgentStats(t *testing.T, a *awssmtest.Agent, want awssmtest.AgentStats) {
	t.Helper()
	if got := a.Stats(); got != want {
		t.Fatalf("agent stats\n got %+v\nwant %+v", got, want)
	}
}

func TestAgentAnswersLikeGetSecretValue(t *testing.T) {
	srv := awssmtest.NewServer().Start()
	defer srv.Close()
	arn, v1 := srv.CreateSecret("prod/app/db", `{"username":"app","password":"p1"}`)
	agent := srv.NewAgent().Start()
	defer agent.Close()

	a := getSecret(t, http.DefaultClient, agent.URL(), "secretId="+url.QueryEscape("prod/app/db"), agent.Token())
	if a.ARN != arn || a.Name != "prod/app/db" || a.VersionId != v1 || a.SecretString == nil ||
		*a.SecretString != `{"username":"app","password":"p1"}` || len(a.VersionStages) != 1 || a.VersionStages[0] != "AWSCURRENT" {
		t.Errorf("answer %+v", a)
	}
	// The agent writes CreatedDate as a string of epoch seconds.
	if s, ok := a.CreatedDate.(string); !ok || !strings.Contains(s, ".") {
		t.Errorf("CreatedDate = %#v, want a string like \"1700000000.123\"", a.CreatedDate)
	}
	// By ARN, on the path form, by stage: the same version.
	for _, pq := range []string{
		"/secretsmanager/get?secretId=" + url.QueryEscape(arn),
		"/v1/prod/app/db",
		"/v1/prod/app/db?versionStage=AWSCURRENT",
		"/secretsmanager/get?secretId=prod/app/db&versionId=" + v1,
	} {
		status, body := agentGet(t, http.DefaultClient, agent.URL(), pq, agent.Token())
		if status != http.StatusOK || !strings.Contains(body, v1) {
			t.Errorf("GET %s: %d %q", pq, status, body)
		}
	}
	// SecretBinary comes back in base64, as GetSecretValue has it.
	if _, err := srv.Client(t.Context()).CreateSecret(t.Context(), &secretsmanager.CreateSecretInput{
		Name: aws.String("bin"), SecretBinary: []byte{0, 1, 2, 'x'},
	}); err != nil {
		t.Fatal(err)
	}
	status, body := agentGet(t, http.DefaultClient, agent.URL(), "/secretsmanager/get?secretId=bin", agent.Token())
	if status != http.StatusOK || !strings.Contains(body, `"SecretBinary":"AAECeA=="`) || strings.Contains(body, "SecretString") {
		t.Errorf("GET bin: %d %q", status, body)
	}
}

func TestAgentRequestRules(t *testing.T) {
	srv := awssmtest.NewServer()
	defer srv.Close()
	srv.CreateSecret("s", "v")
	agent := srv.NewAgent(awssmtest.WithAgentToken("tok-123")).Start()
	defer agent.Close()
	base := agent.URL()

	do := func(method, pq string, header map[string]string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, base+pq, nil)
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tok := map[string]string{awssmtest.AgentTokenHeader: "tok-123"}
	cases := []struct {
		name, method, pq string
		header           map[string]string
		status           int
		body             string
	}{
		{"ping needs no token", "GET", "/ping", nil, 200, "healthy"},
		{"no token", "GET", "/secretsmanager/get?secretId=s", nil, 403, "Bad Token"},
		{"wrong token", "GET", "/secretsmanager/get?secretId=s", map[string]string{awssmtest.AgentTokenHeader: "tok-124"}, 403, "Bad Token"},
		{"X-Vault-Token", "GET", "/secretsmanager/get?secretId=s", map[string]string{"X-Vault-Token": "tok-123"}, 200, `"SecretString":"v"`},
		{"forwarded", "GET", "/secretsmanager/get?secretId=s", map[string]string{awssmtest.AgentTokenHeader: "tok-123", "X-Forwarded-For": "10.0.0.1"}, 400, "Forwarded"},
		{"POST", "POST", "/secretsmanager/get?secretId=s", tok, 405, "Not allowed"},
		{"unknown path", "GET", "/secretsmanager/list", tok, 404, "Not found"},
		{"unknown parameter", "GET", "/secretsmanager/get?secretId=s&color=red", tok, 400, "unknown parameter: color"},
		{"no secretId", "GET", "/secretsmanager/get?versionStage=AWSCURRENT", tok, 400, "missing parameter secretId"},
		{"bad refreshNow", "GET", "/secretsmanager/get?secretId=s&refreshNow=yes", tok, 400, "invalid refreshNow value"},
		{"refreshNow=1", "GET", "/secretsmanager/get?secretId=s&refreshNow=1", tok, 200, `"SecretString":"v"`},
		{"refreshNow=FALSE", "GET", "/secretsmanager/get?secretId=s&refreshNow=FALSE", tok, 200, `"SecretString":"v"`},
		{"path form without id", "GET", "/v1/", tok, 400, "missing secret ID"},
		{"secretId on the path form", "GET", "/v1/s?secretId=s", tok, 400, "unknown parameter: secretId"},
		{"unknown secret", "GET", "/secretsmanager/get?secretId=nope", tok, 400, `{"__type":"ResourceNotFoundException","message":"Secrets Manager can't find the specified secret."}`},
		{"no such stage", "GET", "/secretsmanager/get?secretId=s&versionStage=AWSPENDING", tok, 400, `"__type":"ResourceNotFoundException"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := do(tc.method, tc.pq, tc.header)
			if status != tc.status || !strings.Contains(body, tc.body) {
				t.Errorf("%s %s: %d %q, want %d and %q", tc.method, tc.pq, status, body, tc.status, tc.body)
			}
		})
	}
	st := agent.Stats()
	if st.BadToken != 2 {
		t.Errorf("BadToken = %d, want 2", st.BadToken)
	}
	// Requests counts what reached the cache: X-Vault-Token, the two
	// refreshNow spellings, the unknown secret and the missing stage.
	if st.Requests != 5 || st.RefreshNow != 1 {
		t.Errorf("Requests = %d, RefreshNow = %d, want 5 and 1", st.Requests, st.RefreshNow)
	}

	// A restarted agent with a new token refuses the old one.
	agent.SetToken("tok-456")
	if status, _ := do("GET", "/secretsmanager/get?secretId=s", tok); status != 403 {
		t.Errorf("old token after SetToken: %d, want 403", status)
	}
	if status, _ := do("GET", "/secretsmanager/get?secretId=s", map[string]string{awssmtest.AgentTokenHeader: "tok-456"}); status != 200 {
		t.Errorf("new token after SetToken: %d, want 200", status)
	}
}

// The cache follows the agent's rules on a fake clock: served as is within
// the TTL (stale after a rotation), checked with DescribeSecret after it,
// bypassed by refreshNow, keyed by stage.
func TestAgentCacheTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := awssmtest.NewServer()
		defer srv.Close()
		_, v1 := srv.CreateSecret("s", "p1")
		agent := srv.NewAgent(awssmtest.WithAgentTTL(300 * time.Second))
		defer agent.Close()
		client, tok := agent.InProcessClient(), agent.Token()
		const base = "http://localhost:2773"
		version := func(query string) string { t.Helper(); return getSecret(t, client, base, query, tok).VersionId }

		if v := version("secretId=s"); v != v1 {
			t.Fatalf("first read: version %s, want %s", v, v1)
		}
		wantAgentStats(t, agent, awssmtest.AgentStats{Requests: 1, GetSecretValueCalls: 1})

		// A rotation through the Secrets Manager API: within the TTL the
		// agent still serves v1, without calling the store.
		time.Sleep(10 * time.Second)
		v2 := srv.PutValue("s", "p2")
		for range 3 {
			if v := version("secretId=s"); v != v1 {
				t.Fatalf("within the TTL: version %s, want the cached %s", v, v1)
			}
		}
		wantAgentStats(t, agent, awssmtest.AgentStats{Requests: 4, CacheHits: 3, GetSecretValueCalls: 1})

		// refreshNow skips the cache, and refreshes it.
		if v := version("secretId=s&refreshNow=true"); v != v2 {
			t.Fatalf("refreshNow: version %s, want %s", v, v2)
		}
		if v := version("secretId=s"); v != v2 {
			t.Fatalf("after refreshNow: version %s, want %s", v, v2)
		}
		wantAgentStats(t, agent, awssmtest.AgentStats{Requests: 6, RefreshNow: 1, CacheHits: 4, GetSecretValueCalls: 2})

		// Just before the TTL (counted from the refresh): a hit; after it,
		// DescribeSecret shows v2 still AWSCURRENT: revalidated.
		time.Sleep(300*time.Second - time.Nanosecond)
		version("secretId=s")
		time.Sleep(time.Nanosecond)
		if v := version("secretId=s"); v != v2 {
			t.Fatalf("revalidated: version %s, want %s", v, v2)
		}
		wantAgentStats(t, agent, awssmtest.AgentStats{Requests: 8, RefreshNow: 1, CacheHits: 5, Revalidations: 1, GetSecretValueCalls: 2, DescribeSecretCalls: 1})

		// Another rotation; after the TTL, DescribeSecret shows AWSCURRENT
		// moved: GetSecretValue.
		v3 := srv.PutValue("s", "p3")
		time.Sleep(300 * time.Second)
		if v := version("secretId=s"); v != v3 {
			t.Fatalf("after the TTL: version %s, want %s", v, v3)
		}
		wantAgentStats(t, agent, awssmtest.AgentStats{Requests: 9, RefreshNow: 1, CacheHits: 5, Revalidations: 1, GetSecretValueCalls: 3, DescribeSecretCalls: 2})

		// Each (secretId, versionId, versionStage) is its own entry: an
		// explicit AWSCURRENT is a miss, as is AWSPENDING.
		srv.PutValue("s", "p4", awssmtest.StagePending)
		if v := version("secretId=s&versionStage=AWSCURRENT"); v != v3 {
			t.Fatalf("explicit AWSCURRENT: %s, want %s", v, v3)
		}
		pending := version("secretId=s&versionStage=AWSPENDING")
		if v := version("secretId=s&versionStage=AWSPENDING"); v != pending {
			t.Fatalf("AWSPENDING twice: %s then %s", pending, v)
		}
		if got := agent.Stats().GetSecretValueCalls; got != 5 {
			t.Fatalf("GetSecretValueCalls = %d, want 5 (two new keys)", got)
		}
		// A versionId alone is revalidated by its existence (among the
		// versions with a label: v1 has none left).
		version("secretId=s&versionId=" + v3)
		time.Sleep(301 * time.Second)
		version("secretId=s&versionId=" + v3)
		if st := agent.Stats(); st.GetSecretValueCalls != 6 || st.Revalidations != 2 {
			t.Fatalf("versionId entry after the TTL: %+v, want it revalidated", st)
		}

		// The store's own counters see the agent's calls as a client's.
		if got := srv.Calls(awssmtest.OpGetSecretValue); got != 6 {
			t.Errorf("Server.Calls(GetSecretValue) = %d, want the agent's 6", got)
		}
		if got := srv.Calls(awssmtest.OpDescribeSecret); got != 3 {
			t.Errorf("Server.Calls(DescribeSecret) = %d, want 3", got)
		}
	})
}

// TTL zero turns the cache off.
func TestAgentWithoutCache(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := awssmtest.NewServer()
		defer srv.Close()
		srv.CreateSecret("s", "p1")
		agent := srv.NewAgent(awssmtest.WithAgentTTL(0))
		defer agent.Close()
		for range 3 {
			getSecret(t, agent.InProcessClient(), "http://localhost:2773", "secretId=s", agent.Token())
		}
		wantAgentStats(t, agent, awssmtest.AgentStats{Requests: 3, GetSecretValueCalls: 3})
	})
}

// Store failures reach the client with the store's status and __type, a
// store that hangs past the agent's timeout is a 504, and after the TTL a
// transient failure serves the cached value.
func TestAgentStoreFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := awssmtest.NewServer()
		defer srv.Close()
		_, v1 := srv.CreateSecret("s", "p1")
		agent := srv.NewAgent(awssmtest.WithAgentTTL(time.Minute))
		defer agent.Close()
		client, tok := agent.InProcessClient(), agent.Token()
		const base = "http://localhost:2773"
		get := func(query string) (int, string) {
			t.Helper()
			return agentGet(t, client, base, "/secretsmanager/get?"+query, tok)
		}

		cases := []struct {
			name   string
			fault  awssmtest.Fault
			status int
			body   string
		}{
			{"AccessDenied", awssmtest.Fault{Error: "AccessDeniedException", Message: "not allowed"}, 400,
				`{"__type":"AccessDeniedException","message":"not allowed"}`},
			{"throttled", awssmtest.Fault{Error: "ThrottlingException", Message: "Rate exceeded"}, 400,
				`{"__type":"ThrottlingException","message":"Rate exceeded"}`},
			{"InternalServiceError", awssmtest.Fault{Error: "InternalServiceError", Message: "oops"}, 500,
				`{"__type":"InternalServiceError","message":"oops"}`},
			{"hang", awssmtest.Fault{Hang: true}, 504, `{"__type":"TimeoutError","message":"Timeout"}`},
			{"malformed", awssmtest.Fault{MalformedBody: true}, 502, `{"__type":"ConnectionError","message":"Response Error"}`},
		}
		for _, tc := range cases {
			srv.InjectFault(awssmtest.OpGetSecretValue, tc.fault)
			status, body := get("secretId=s&refreshNow=true")
			srv.ClearFaults()
			if status != tc.status || body != tc.body {
				t.Errorf("%s: %d %q, want %d %q", tc.name, status, body, tc.status, tc.body)
			}
		}
		// refreshNow failures left the cache empty; a read fills it.
		if st := agent.Stats(); st.CacheHits != 0 {
			t.Fatalf("stats %+v", st)
		}
		if a := getSecret(t, client, base, "secretId=s", tok); a.VersionId != v1 {
			t.Fatalf("version %s", a.VersionId)
		}
		// After the TTL a throttled (or failing) store serves the cached
		// value, as the agent does by default; a non-transient error does
		// not.
		time.Sleep(time.Minute)
		srv.InjectFault(awssmtest.OpDescribeSecret, awssmtest.Fault{Error: "ThrottlingException"})
		if a := getSecret(t, client, base, "secretId=s", tok); a.VersionId != v1 {
			t.Fatalf("stale served: version %s", a.VersionId)
		}
		srv.InjectFault(awssmtest.OpDescribeSecret, awssmtest.Fault{Error: "AccessDeniedException", Message: "denied"})
		if status, body := get("secretId=s"); status != 400 || !strings.Contains(body, "AccessDeniedException") {
			t.Errorf("non-transient error after the TTL: %d %q", status, body)
		}
		srv.ClearFaults()
		if st := agent.Stats(); st.StaleServed != 1 {
			t.Errorf("StaleServed = %d, want 1", st.StaleServed)
		}
	})
}

// Agent faults: an error status, a truncated body, and latency that holds
// a request in flight against the connection limit (429).
func TestAgentFaultsAndConnectionLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := awssmtest.NewServer()
		defer srv.Close()
		srv.CreateSecret("s", "p1")
		agent := srv.NewAgent(awssmtest.WithAgentMaxConnections(1))
		defer agent.Close()
		client, tok := agent.InProcessClient(), agent.Token()
		const base = "http://localhost:2773"

		agent.InjectFault(awssmtest.Fault{Status: 503, Error: "ServiceUnavailable", Message: "not ready", Count: 1})
		if status, body := agentGet(t, client, base, "/secretsmanager/get?secretId=s", tok); status != 503 || !strings.Contains(body, "ServiceUnavailable") {
			t.Errorf("injected 503: %d %q", status, body)
		}
		agent.InjectFault(awssmtest.Fault{MalformedBody: true, Count: 1})
		if status, body := agentGet(t, client, base, "/secretsmanager/get?secretId=s", tok); status != 200 || json.Valid([]byte(body)) {
			t.Errorf("malformed body: %d %q", status, body)
		}

		agent.InjectFault(awssmtest.Fault{Latency: time.Second, Count: 1})
		var wg sync.WaitGroup
		wg.Go(func() { getSecret(t, client, base, "secretId=s", tok) })
		synctest.Wait() // the first request waits out its latency, in flight
		status, body := agentGet(t, client, base, "/secretsmanager/get?secretId=s", tok)
		if status != http.StatusTooManyRequests || body != "Connection limit exceeded" {
			t.Errorf("second request over the limit: %d %q, want 429", status, body)
		}
		// /ping has two spare slots.
		if status, _ := agentGet(t, client, base, "/ping", ""); status != 200 {
			t.Errorf("/ping while at the limit: %d", status)
		}
		wg.Wait()
		if st := agent.Stats(); st.OverLimit != 1 {
			t.Errorf("OverLimit = %d, want 1", st.OverLimit)
		}
		// A hang ends when the client gives up.
		agent.InjectFault(awssmtest.Fault{Hang: true, Count: 1})
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/secretsmanager/get?secretId=s", nil)
		req.Header.Set(awssmtest.AgentTokenHeader, tok)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			t.Errorf("a hanging agent answered %d", resp.StatusCode)
		}
	})
}

func TestAgentLogsNoSecret(t *testing.T) {
	srv := awssmtest.NewServer()
	defer srv.Close()
	srv.CreateSecret("s", "secret-value-123")
	var logs testkit.LogBuffer
	agent := srv.NewAgent(awssmtest.WithAgentToken("agent-token-456"),
		awssmtest.WithAgentLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))).Start()
	defer agent.Close()
	getSecret(t, http.DefaultClient, agent.URL(), "secretId=s", "agent-token-456")
	getSecret(t, http.DefaultClient, agent.URL(), "secretId=s", "agent-token-456")
	agentGet(t, http.DefaultClient, agent.URL(), "/secretsmanager/get?secretId=s", "wrong-token-789")
	text := logs.String()
	for _, want := range []string{`"cache":"miss"`, `"cache":"hit"`, `"status":403`, `"secret_id":"s"`} {
		if !strings.Contains(text, want) {
			t.Errorf("log lacks %s:\n%s", want, text)
		}
	}
	for _, secret := range []string{"secret-value-123", "agent-token-456", "wrong-token-789"} {
		if strings.Contains(text, secret) {
			t.Errorf("the agent's log contains %q", secret)
		}
	}
}

func TestAgentCloseAndServe(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	srv := awssmtest.NewServer()
	srv.CreateSecret("s", "v")
	agent := srv.NewAgent()
	ctx, cancel := context.WithCancel(t.Context())
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- agent.Serve(ctx, ln) }()
	testkit.WaitFor(ctx, t, 10*time.Second, "the agent's URL", func() bool { return agent.URL() != "" })
	getSecret(t, http.DefaultClient, agent.URL(), "secretId=s", agent.Token())
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if agent.URL() != "" {
		t.Errorf("URL after Serve returned: %q", agent.URL())
	}

	// Started and closed: connections are refused, as when the agent is
	// down.
	agent2 := srv.NewAgent().Start()
	u := agent2.URL()
	agent2.Close()
	agent2.Close() // idempotent
	if resp, err := http.Get(u + "/ping"); err == nil {
		resp.Body.Close()
		t.Errorf("a closed agent answered %d", resp.StatusCode)
	}
	srv.Close()
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
}

// WithAgentTimeout bounds the agent's store calls: a hanging store is a
// 504 after exactly that long (fake clock), with the default retryer's
// attempts inside it.
func TestAgentTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := awssmtest.NewServer()
		defer srv.Close()
		srv.CreateSecret("s", "p1")
		agent := srv.NewAgent(awssmtest.WithAgentTimeout(2 * time.Second))
		defer agent.Close()
		srv.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{Hang: true})
		start := time.Now()
		status, body := agentGet(t, agent.InProcessClient(), "http://localhost:2773", "/secretsmanager/get?secretId=s", agent.Token())
		if took := time.Since(start); status != http.StatusGatewayTimeout || took != 2*time.Second {
			t.Errorf("hanging store: %d %q after %v, want 504 after 2s", status, body, took)
		}
	})
}
