package awssmtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/smithy-go"
	"go.uber.org/goleak"

	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
)

// post sends a raw request to srv and returns the status and the body.
func post(t *testing.T, srv *awssmtest.Server, method string, header map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL()+"/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=00")
	for k, v := range header {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-amz-json-1.1" {
		t.Errorf("Content-Type %q", ct)
	}
	return resp.StatusCode, string(b)
}

func TestWireFormat(t *testing.T) {
	t.Parallel()
	srv, _ := start(t)
	srv.CreateSecret("db", "v")

	cases := []struct {
		name   string
		method string
		header map[string]string
		body   string
		status int
		match  string // regexp the body must match
	}{
		{name: "timestamps are epoch-second numbers", header: map[string]string{"X-Amz-Target": "secretsmanager.GetSecretValue"},
			body: `{"SecretId":"db"}`, status: 200, match: `"CreatedDate":\d{10}\.\d{3}[,}]`},
		{name: "binary is base64", header: map[string]string{"X-Amz-Target": "secretsmanager.CreateSecret"},
			body: `{"Name":"bin","SecretBinary":"AAH/"}`, status: 200, match: `"VersionId":"[0-9a-f-]{36}"`},
		{name: "missing signature", header: map[string]string{"X-Amz-Target": "secretsmanager.GetSecretValue", "Authorization": ""},
			body: `{"SecretId":"db"}`, status: 400, match: `^\{"__type":"MissingAuthenticationTokenException","Message":".+"\}$`},
		{name: "unknown operation", header: map[string]string{"X-Amz-Target": "secretsmanager.ListSecrets"},
			body: `{}`, status: 400, match: `"__type":"UnknownOperationException"`},
		{name: "other service", header: map[string]string{"X-Amz-Target": "kms.Decrypt"},
			body: `{}`, status: 400, match: `"__type":"UnknownOperationException"`},
		{name: "no target", body: `{}`, status: 400, match: `"__type":"UnknownOperationException"`},
		{name: "wrong content type", header: map[string]string{"X-Amz-Target": "secretsmanager.GetSecretValue", "Content-Type": "application/json"},
			body: `{"SecretId":"db"}`, status: 400, match: `"__type":"SerializationException"`},
		{name: "bad JSON", header: map[string]string{"X-Amz-Target": "secretsmanager.GetSecretValue"},
			body: `{"SecretId":`, status: 400, match: `"__type":"SerializationException"`},
		{name: "GET", method: http.MethodGet, header: map[string]string{"X-Amz-Target": "secretsmanager.GetSecretValue"},
			status: 405, match: `"__type":"UnknownOperationException"`},
		{name: "not found body", header: map[string]string{"X-Amz-Target": "secretsmanager.GetSecretValue"},
			body: `{"SecretId":"nope"}`, status: 400, match: `^\{"__type":"ResourceNotFoundException","Message":"Secrets Manager can't find the specified secret."\}$`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			status, body := post(t, srv, method, tc.header, tc.body)
			if status != tc.status || !regexp.MustCompile(tc.match).MatchString(body) {
				t.Errorf("got %d %s, want %d matching %s", status, body, tc.status, tc.match)
			}
		})
	}

	_, body := post(t, srv, http.MethodPost, map[string]string{"X-Amz-Target": "secretsmanager.GetSecretValue"}, `{"SecretId":"bin"}`)
	var got struct{ SecretBinary string }
	if err := json.Unmarshal([]byte(body), &got); err != nil || got.SecretBinary != "AAH/" {
		t.Errorf("SecretBinary on the wire = %q (%v), want AAH/", got.SecretBinary, err)
	}
}

// TestUnsignedSDKRequest checks the SDK's view of a request without an
// Authorization header.
func TestUnsignedSDKRequest(t *testing.T) {
	t.Parallel()
	srv, _ := start(t)
	c := srv.Client(t.Context(), noBackoff, func(o *secretsmanager.Options) { o.Credentials = aws.AnonymousCredentials{} })
	_, err := c.GetSecretValue(t.Context(), &secretsmanager.GetSecretValueInput{SecretId: s("db")})
	wantCode(t, err, "MissingAuthenticationTokenException")
	if n := srv.TotalCalls(); n != 0 {
		t.Errorf("TotalCalls = %d; unsigned requests must not count", n)
	}
}

func TestFaultThrottling(t *testing.T) {
	t.Parallel()
	srv, c := start(t)
	ctx := t.Context()
	srv.CreateSecret("db", "v")
	in := &secretsmanager.GetSecretValueInput{SecretId: s("db")}

	srv.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{Error: "ThrottlingException"})
	_, err := c.GetSecretValue(ctx, in)
	wantCode(t, err, "ThrottlingException")
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != 400 {
		t.Errorf("HTTP status: %v", err)
	}
	if n := srv.Calls(awssmtest.OpGetSecretValue); n != 3 {
		t.Errorf("%d attempts, want the standard retryer's 3", n)
	}

	// Two throttled answers, then success on the retryer's third attempt.
	srv.ResetCalls()
	srv.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{Error: "ThrottlingException", Count: 2})
	if _, err := c.GetSecretValue(ctx, in); err != nil {
		t.Fatalf("third attempt: %v", err)
	}
	if n := srv.Calls(awssmtest.OpGetSecretValue); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
	// The fault is used up.
	if _, err := c.GetSecretValue(ctx, in); err != nil || srv.Calls(awssmtest.OpGetSecretValue) != 4 {
		t.Errorf("after Count ran out: %v, %d calls", err, srv.Calls(awssmtest.OpGetSecretValue))
	}
}

func TestFaultInternalServiceError(t *testing.T) {
	t.Parallel()
	srv, c := start(t)
	ctx := t.Context()
	srv.CreateSecret("db", "v")

	srv.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{Error: "InternalServiceError"})
	_, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s("db")})
	wantAs[*types.InternalServiceError](t, err)
	if re := wantAs[*awshttp.ResponseError](t, err); re.HTTPStatusCode() != 500 {
		t.Errorf("status %d, want 500", re.HTTPStatusCode())
	}
	if n := srv.Calls(awssmtest.OpGetSecretValue); n != 3 {
		t.Errorf("%d attempts; a 500 is retried, want 3", n)
	}

	// Status alone picks the code.
	srv.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{Status: 503, Count: 1})
	srv.InjectFault(awssmtest.OpDescribeSecret, awssmtest.Fault{Status: 503})
	if _, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s("db")}); err != nil {
		t.Errorf("503 once, then success: %v", err)
	}
	_, err = c.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: s("db")})
	if re := wantAs[*awshttp.ResponseError](t, err); re.HTTPStatusCode() != 503 || errorCode(err) != "InternalServiceError" {
		t.Errorf("got %v", err)
	}

	// A modeled client error is not retried.
	srv.ClearFaults()
	srv.ResetCalls()
	srv.InjectFault(awssmtest.OpPutSecretValue, awssmtest.Fault{Error: "ResourceNotFoundException", Message: "gone"})
	_, err = c.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: s("db"), SecretString: s("x")})
	if e := wantAs[*types.ResourceNotFoundException](t, err); e.ErrorMessage() != "gone" {
		t.Errorf("message %q", e.ErrorMessage())
	}
	if n := srv.Calls(awssmtest.OpPutSecretValue); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
	if len(srv.Versions("db")) != 1 {
		t.Error("a faulted PutSecretValue ran")
	}
}

func TestFaultHang(t *testing.T) {
	t.Parallel()
	srv, c := start(t)
	srv.CreateSecret("db", "v")
	srv.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{Hang: true})

	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	begin := time.Now()
	_, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s("db")})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want the client's deadline", err)
	}
	if d := time.Since(begin); d < 200*time.Millisecond || d > 5*time.Second {
		t.Errorf("returned after %v", d)
	}
	if n := srv.Calls(awssmtest.OpGetSecretValue); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
	// Other operations are unaffected.
	if _, err := c.DescribeSecret(t.Context(), &secretsmanager.DescribeSecretInput{SecretId: s("db")}); err != nil {
		t.Error(err)
	}
}

func TestFaultHangEndsAtClose(t *testing.T) {
	t.Parallel()
	srv := awssmtest.NewServer().Start()
	defer srv.Close()
	c := srv.Client(t.Context(), func(o *secretsmanager.Options) { o.RetryMaxAttempts = 1 })
	srv.InjectFault(awssmtest.AllOperations, awssmtest.Fault{Hang: true})

	done := make(chan error, 1)
	go func() {
		_, err := c.DescribeSecret(context.Background(), &secretsmanager.DescribeSecretInput{SecretId: s("db")})
		done <- err
	}()
	testkit.WaitFor(t.Context(), t, 10*time.Second, "the DescribeSecret call to arrive", func() bool { return srv.Calls(awssmtest.OpDescribeSecret) == 1 })
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("hung request succeeded after Close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("hung request did not end at Close")
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
}

func TestFaultLatency(t *testing.T) {
	t.Parallel()
	srv, c := start(t)
	srv.CreateSecret("db", "v")
	srv.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{Latency: 150 * time.Millisecond, Count: 1})
	begin := time.Now()
	if _, err := c.GetSecretValue(t.Context(), &secretsmanager.GetSecretValueInput{SecretId: s("db")}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d < 150*time.Millisecond {
		t.Errorf("answered after %v, want at least 150ms", d)
	}

	// Latency longer than the client waits.
	srv.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{Latency: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s("db")})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v", err)
	}

	// Latency, then an error.
	srv.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{Latency: 50 * time.Millisecond, Error: "DecryptionFailure", Count: 1})
	_, err = c.GetSecretValue(t.Context(), &secretsmanager.GetSecretValueInput{SecretId: s("db")})
	wantAs[*types.DecryptionFailure](t, err)
}

func TestFaultMalformedBody(t *testing.T) {
	t.Parallel()
	srv, c := start(t)
	srv.CreateSecret("db", "v")
	srv.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{MalformedBody: true, Count: 1})
	_, err := c.GetSecretValue(t.Context(), &secretsmanager.GetSecretValueInput{SecretId: s("db")})
	wantAs[*smithy.DeserializationError](t, err)
	if n := srv.Calls(awssmtest.OpGetSecretValue); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}

	// A malformed error body.
	srv.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{MalformedBody: true, Status: 400, Count: 1})
	_, err = c.GetSecretValue(t.Context(), &secretsmanager.GetSecretValueInput{SecretId: s("db")})
	wantAs[*smithy.DeserializationError](t, err)

	if _, err := c.GetSecretValue(t.Context(), &secretsmanager.GetSecretValueInput{SecretId: s("db")}); err != nil {
		t.Errorf("after the fault: %v", err)
	}
}

func TestFaultAllOperations(t *testing.T) {
	t.Parallel()
	srv, c := start(t)
	srv.CreateSecret("db", "v")
	srv.InjectFault(awssmtest.AllOperations, awssmtest.Fault{Error: "AccessDeniedException"})
	srv.InjectFault(awssmtest.OpDescribeSecret, awssmtest.Fault{Error: "DecryptionFailure"})

	_, err := c.GetSecretValue(t.Context(), &secretsmanager.GetSecretValueInput{SecretId: s("db")})
	wantCode(t, err, "AccessDeniedException")
	wantAs[*smithy.GenericAPIError](t, err) // not a modeled Secrets Manager error
	_, err = c.DescribeSecret(t.Context(), &secretsmanager.DescribeSecretInput{SecretId: s("db")})
	wantCode(t, err, "DecryptionFailure") // the operation's own fault wins

	srv.ClearFaults()
	if _, err := c.GetSecretValue(t.Context(), &secretsmanager.GetSecretValueInput{SecretId: s("db")}); err != nil {
		t.Errorf("after ClearFaults: %v", err)
	}
}

func TestCalls(t *testing.T) {
	t.Parallel()
	srv, c := start(t)
	ctx := t.Context()
	srv.CreateSecret("db", "v")
	v2 := srv.PutValue("db", "w", "AWSPENDING")

	gets := []*secretsmanager.GetSecretValueInput{
		{SecretId: s("db")},
		{SecretId: s("db"), VersionStage: s("AWSCURRENT")},
		{SecretId: s("db"), VersionStage: s("AWSPENDING")},
		{SecretId: s("db"), VersionId: s(v2)},
		{SecretId: s("nope")}, // fails, still counts
	}
	for _, in := range gets {
		c.GetSecretValue(ctx, in)
	}
	c.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: s("db")})

	for _, tc := range []struct {
		got, want int64
		what      string
	}{
		{srv.Calls(awssmtest.OpGetSecretValue), 5, "Calls(GetSecretValue)"},
		{srv.Calls(awssmtest.OpDescribeSecret), 1, "Calls(DescribeSecret)"},
		{srv.Calls(awssmtest.OpPutSecretValue), 0, "Calls(PutSecretValue)"},
		{srv.TotalCalls(), 6, "TotalCalls"},
		{srv.CallsByStage("AWSCURRENT"), 3, "CallsByStage(AWSCURRENT)"},
		{srv.CallsByStage("AWSPENDING"), 1, "CallsByStage(AWSPENDING)"},
		{srv.CallsByStage(""), 1, `CallsByStage("")`},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %d, want %d", tc.what, tc.got, tc.want)
		}
	}
	srv.ResetCalls()
	if srv.TotalCalls() != 0 || srv.Calls(awssmtest.OpGetSecretValue) != 0 || srv.CallsByStage("AWSCURRENT") != 0 {
		t.Error("ResetCalls left counts")
	}
}

// TestConcurrentRotation runs readers against a secret while a writer
// rotates it, for the race detector, and checks the labels stay
// consistent.
func TestConcurrentRotation(t *testing.T) {
	t.Parallel()
	srv, c := start(t)
	ctx := t.Context()
	srv.CreateSecret("db", "p0")

	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s("db")}); err != nil {
					t.Error(err)
					return
				}
				srv.Versions("db")
			}
		})
	}
	for range 20 {
		rot, err := c.RotateSecret(ctx, &secretsmanager.RotateSecretInput{SecretId: s("db")})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: s("db"), ClientRequestToken: rot.VersionId, SecretString: s("p"), VersionStages: []string{"AWSPENDING"}}); err != nil {
			t.Fatal(err)
		}
		cur, err := c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s("db")})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.UpdateSecretVersionStage(ctx, &secretsmanager.UpdateSecretVersionStageInput{SecretId: s("db"), VersionStage: s("AWSCURRENT"), MoveToVersionId: rot.VersionId, RemoveFromVersionId: cur.VersionId}); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()

	count := map[string]int{}
	for _, stages := range srv.Versions("db") {
		for _, st := range stages {
			count[st]++
		}
	}
	if len(srv.Versions("db")) != 21 || count["AWSCURRENT"] != 1 || count["AWSPREVIOUS"] != 1 || count["AWSPENDING"] != 1 {
		t.Errorf("%d versions, label counts %v", len(srv.Versions("db")), count)
	}
}

func TestListenAndServe(t *testing.T) {
	t.Parallel()
	srv := awssmtest.NewServer()
	defer srv.Close()
	srv.CreateSecret("db", "v")
	srv.InjectFault(awssmtest.OpDescribeSecret, awssmtest.Fault{Hang: true})

	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe(ctx, "127.0.0.1:0") }()
	testkit.WaitFor(t.Context(), t, 10*time.Second, "the server to listen", func() bool { return srv.URL() != "" })
	if !strings.HasPrefix(srv.URL(), "http://127.0.0.1:") {
		t.Errorf("URL = %q", srv.URL())
	}

	c := srv.Client(t.Context(), noBackoff)
	out, err := c.GetSecretValue(t.Context(), &secretsmanager.GetSecretValueInput{SecretId: s("db")})
	if err != nil || *out.SecretString != "v" {
		t.Fatalf("GetSecretValue: %v", err)
	}

	// A request hanging when ctx ends must not hold the shutdown.
	hung := make(chan error, 1)
	go func() {
		_, err := c.DescribeSecret(context.Background(), &secretsmanager.DescribeSecretInput{SecretId: s("db")})
		hung <- err
	}()
	testkit.WaitFor(t.Context(), t, 10*time.Second, "the DescribeSecret call to arrive", func() bool { return srv.Calls(awssmtest.OpDescribeSecret) >= 1 })

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("ListenAndServe = %v, want nil after ctx ends", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ListenAndServe did not return after ctx ended")
	}
	select {
	case err := <-hung:
		if err == nil {
			t.Error("hung request succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("hung request did not end")
	}
	if srv.URL() != "" {
		t.Errorf("URL = %q after serving ended", srv.URL())
	}
}

func TestListenAndServeEndsAtClose(t *testing.T) {
	t.Parallel()
	srv := awssmtest.NewServer()
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe(context.Background(), "[::1]:0") }()
	testkit.WaitFor(t.Context(), t, 10*time.Second, "the server to listen on [::1]", func() bool {
		select {
		case err := <-served:
			t.Skipf("no IPv6 loopback: %v", err)
		default:
		}
		return srv.URL() != ""
	})
	srv.Close()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("ListenAndServe = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ListenAndServe did not return after Close")
	}
}

func TestListenAndServeRefusesNonLoopback(t *testing.T) {
	t.Parallel()
	srv := awssmtest.NewServer()
	defer srv.Close()
	for _, addr := range []string{":0", "0.0.0.0:0", "[::]:0", "192.0.2.1:0", "example.com:80"} {
		err := srv.ListenAndServe(t.Context(), addr)
		if !errors.Is(err, awssmtest.ErrNotLoopback) {
			t.Errorf("ListenAndServe(%q) = %v, want ErrNotLoopback", addr, err)
		}
	}
	if err := srv.ListenAndServe(t.Context(), "no-port"); err == nil || errors.Is(err, awssmtest.ErrNotLoopback) {
		t.Errorf("ListenAndServe without port = %v", err)
	}

	// Serve checks the listener it is given.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := srv.Serve(ctx, ln); err != nil {
		t.Errorf("Serve on loopback with a done ctx = %v", err)
	}
}

// TestEnvironmentEndpoint checks the documented way to point an
// unmodified application at the server.
func TestEnvironmentEndpoint(t *testing.T) {
	srv := awssmtest.NewServer().Start()
	defer srv.Close()
	srv.CreateSecret("db", "from-env")

	dir := t.TempDir()
	t.Setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", srv.URL())
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_REGION", awssmtest.Region)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	for _, k := range []string{"AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"} {
		if v, ok := os.LookupEnv(k); ok {
			t.Setenv(k, v)
			os.Unsetenv(k)
		}
	}

	cfg, err := config.LoadDefaultConfig(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c := secretsmanager.NewFromConfig(cfg)
	out, err := c.GetSecretValue(t.Context(), &secretsmanager.GetSecretValueInput{SecretId: s("db")})
	if err != nil {
		t.Fatal(err)
	}
	if *out.SecretString != "from-env" {
		t.Errorf("SecretString = %q", *out.SecretString)
	}
	if tr, ok := cfg.HTTPClient.(interface{ CloseIdleConnections() }); ok {
		tr.CloseIdleConnections()
	}
}

// TestNoGoroutinesAfterClose exercises every source of goroutines (served
// requests, a hanging request, latency, an OnRotate hook) and checks that
// none outlives Close.
func TestNoGoroutinesAfterClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	hookRan := make(chan struct{})
	srv := awssmtest.NewServer(awssmtest.WithOnRotate(func(secretID, versionID string) {
		close(hookRan)
	})).Start()
	c := srv.Client(t.Context(), func(o *secretsmanager.Options) { o.RetryMaxAttempts = 1 })
	srv.CreateSecret("db", "v")
	if _, err := c.RotateSecret(t.Context(), &secretsmanager.RotateSecretInput{SecretId: s("db")}); err != nil {
		t.Fatal(err)
	}
	<-hookRan

	srv.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{Hang: true})
	srv.InjectFault(awssmtest.OpDescribeSecret, awssmtest.Fault{Latency: time.Hour})
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { c.GetSecretValue(context.Background(), &secretsmanager.GetSecretValueInput{SecretId: s("db")}) })
		wg.Go(func() { c.DescribeSecret(context.Background(), &secretsmanager.DescribeSecretInput{SecretId: s("db")}) })
	}
	testkit.WaitFor(t.Context(), t, 10*time.Second, "7 calls to arrive", func() bool { return srv.TotalCalls() == 7 })

	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- awssmtest.NewServer().ListenAndServe(ctx, "127.0.0.1:0") }()

	srv.Close()
	wg.Wait()
	cancel()
	<-served
}

func TestLoggerNeverSeesValues(t *testing.T) {
	t.Parallel()
	var buf testkit.LogBuffer
	srv, c := start(t, awssmtest.WithLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	ctx := t.Context()
	const value = "hunter2-very-secret"
	if _, err := c.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: s("db"), SecretString: s(value)}); err != nil {
		t.Fatal(err)
	}
	c.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: s("db"), SecretString: s(value + "2")})
	c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s("db")})
	c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s("nope")})
	srv.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{Error: "ThrottlingException", Count: 1})
	c.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s("db")})

	out := buf.String()
	if strings.Contains(out, "hunter2") {
		t.Errorf("log holds a secret value:\n%s", out)
	}
	for _, want := range []string{"op=GetSecretValue secret_id=db status=200", "error_code=ResourceNotFoundException", "error_code=ThrottlingException", "op=CreateSecret"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}
