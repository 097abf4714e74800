package gcpsm_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/gcpsm"
	"github.com/pgrotate/rotating/secrets/gcpsm/gcpsmtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestFetch reads JSON and plain payloads, the latest version and pinned
// ones, through the real client, with exactly one AccessSecretVersion
// request per Fetch; Version is the number of the version that answered,
// whatever name (alias, project id or number) asked for it.
func TestFetch(t *testing.T) {
	e := newEnv(t)
	pw1, pw2, pw3 := randomPassword(t), randomPassword(t), randomPassword(t)
	name := e.srv.CreateSecret("projects/my-project/secrets/db")
	if want := "projects/" + e.srv.ProjectNumber("my-project") + "/secrets/db"; name != want {
		t.Fatalf("CreateSecret = %q, want %q", name, want)
	}
	e.srv.AddVersion(name, rdsJSON(t, "app", pw1))
	e.srv.AddVersion(name, []byte(pw2+"\n"))
	e.srv.AddVersion(name, []byte(`{"user":"other","secret":"`+pw3+`"}`))

	for _, tc := range []struct {
		name string
		opts []gcpsm.Option
		want secrets.Credential
	}{
		{"projects/my-project/secrets/db/versions/1", nil,
			secrets.Credential{Username: "app", Password: pw1, Host: "db.internal", Port: 5432, Database: "app", Version: "1"}},
		{"projects/my-project/secrets/db/versions/2", nil, secrets.Credential{Password: pw2, Version: "2"}},
		{name + "/versions/2", nil, secrets.Credential{Password: pw2, Version: "2"}},
		{"projects/my-project/secrets/db", []gcpsm.Option{gcpsm.WithKeys(secrets.Keys{Username: "user", Password: "secret"})},
			secrets.Credential{Username: "other", Password: pw3, Version: "3"}},
		{"projects/my-project/secrets/db/versions/latest", []gcpsm.Option{gcpsm.WithKeys(secrets.Keys{Username: "user", Password: "secret"})},
			secrets.Credential{Username: "other", Password: pw3, Version: "3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := e.source(t, tc.name, tc.opts...)
			e.srv.ResetCalls()
			got, err := src.Fetch(t.Context())
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if got != tc.want {
				t.Errorf("Fetch = %v, want %v", got, tc.want)
			}
			if n := e.srv.Calls(gcpsmtest.MethodAccessSecretVersion); n != 1 {
				t.Errorf("AccessSecretVersion requests = %d, want 1", n)
			}
			if n := e.srv.TotalCalls(); n != 1 {
				t.Errorf("requests of any method = %d, want 1", n)
			}
		})
	}
	assertNoSecret(t, "the source's log", e.logs.String(), pw1, pw2, pw3)
	if !strings.Contains(e.logs.String(), `"msg":"gcpsm: accessed secret version","secret":"projects/my-project/secrets/db/versions/latest","version":"3","attempts":1`) {
		t.Errorf("no Debug line names the secret, the version and the attempts:\n%s", e.logs.String())
	}
}

// TestFetchSeesNewVersion is a rotation as the store sees it: each
// AddSecretVersion makes the next Fetch of "latest" return the new
// password and number; disabling the newest makes Fetch fail (latest is
// the newest version whatever its state) until it is enabled again.
func TestFetchSeesNewVersion(t *testing.T) {
	e := newEnv(t)
	name := e.srv.CreateSecret("projects/p/secrets/rotating")
	src := e.source(t, name)
	var pws []string
	for i := 1; i <= 3; i++ {
		pw := randomPassword(t)
		pws = append(pws, pw)
		if v := e.srv.AddVersion(name, rdsJSON(t, "app", pw)); v != fmt.Sprint(i) {
			t.Fatalf("AddVersion = %q, want %d", v, i)
		}
		c, err := src.Fetch(t.Context())
		if err != nil {
			t.Fatalf("Fetch after version %d: %v", i, err)
		}
		if c.Password != pw || c.Version != fmt.Sprint(i) {
			t.Fatalf("Fetch after version %d: version %q, password the new one: %v", i, c.Version, c.Password == pw)
		}
	}
	if err := e.srv.DisableVersion(name + "/versions/3"); err != nil {
		t.Fatal(err)
	}
	_, err := src.Fetch(t.Context())
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Fetch with the newest version disabled: code %v (%v), want FailedPrecondition", status.Code(err), err)
	}
	if err := e.srv.EnableVersion(name + "/versions/3"); err != nil {
		t.Fatal(err)
	}
	if c, err := src.Fetch(t.Context()); err != nil || c.Version != "3" {
		t.Fatalf("Fetch after re-enabling: %v, %v", c, err)
	}
	if err := e.srv.DestroyVersion(name + "/versions/3"); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.EnableVersion(name + "/versions/3"); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("EnableVersion of a destroyed version: %v, want FailedPrecondition", err)
	}
	assertNoSecret(t, "the source's log", e.logs.String(), pws...)
}

// TestFetchErrors meets every failure the store can answer with, through
// the real client: each is an *gcpsm.Error naming the version asked for,
// with the gRPC status reachable (status.Code, errors.As) or the secrets
// sentinel, the right number of attempts, an end within the caller's
// deadline, and no secret in its text or in the log.
func TestFetchErrors(t *testing.T) {
	e := newEnv(t)
	pw := randomPassword(t)
	var secretValues []string
	addSecret := func(id string, payloads ...[]byte) string {
		name := e.srv.CreateSecret("projects/p/secrets/" + id)
		for _, p := range payloads {
			e.srv.AddVersion(name, p)
		}
		return name
	}
	ok := addSecret("ok", rdsJSON(t, "app", pw))
	secretValues = append(secretValues, pw)

	disabledPW, destroyedPW := randomPassword(t), randomPassword(t)
	disabled := addSecret("disabled", rdsJSON(t, "app", disabledPW))
	if err := e.srv.DisableVersion(disabled + "/versions/1"); err != nil {
		t.Fatal(err)
	}
	destroyed := addSecret("destroyed", rdsJSON(t, "app", destroyedPW))
	if err := e.srv.DestroyVersion(destroyed + "/versions/latest"); err != nil {
		t.Fatal(err)
	}
	empty := addSecret("empty")
	truncPW, nulPW, linesPW := randomPassword(t), randomPassword(t), randomPassword(t)
	truncated := addSecret("truncated", []byte(`{"username":"app","password":"`+truncPW+`",`))
	nul := addSecret("nul", []byte(`{"username":"app","password":"`+nulPW+`\u0000x"}`))
	lines := addSecret("lines", []byte("app\n"+linesPW+"\n"))
	noPassword := addSecret("nopassword", []byte(`{"username":"app"}`))
	emptyPayload := addSecret("emptypayload", []byte{})
	secretValues = append(secretValues, disabledPW, destroyedPW, truncPW, nulPW, linesPW)

	const (
		short = 1500 * time.Millisecond // a fetch timeout the client's 2 s backoff runs into
		long  = 20 * time.Second
	)
	for _, tc := range []struct {
		name      string
		secret    string
		setup     func() // after ResetCalls
		timeout   time.Duration
		code      codes.Code // status.Code(err); codes.Unknown for a non-RPC failure
		sentinel  error      // errors.Is, when not nil
		ctxErr    bool       // errors.Is(err, context.DeadlineExceeded)
		inText    string
		version   string // Error.Version
		attempts  [2]int // bounds of Error.Attempts (= requests the server saw)
		minElapse time.Duration
	}{
		{name: "secret missing", secret: "projects/p/secrets/nope", timeout: long,
			code: codes.NotFound, inText: "Secret [projects/100000000001/secrets/nope] not found", attempts: [2]int{1, 1}},
		{name: "no versions", secret: empty, timeout: long,
			code: codes.NotFound, inText: "not found or has no versions", attempts: [2]int{1, 1}},
		{name: "pinned version missing", secret: ok + "/versions/9", timeout: long,
			code: codes.NotFound, inText: "versions/9] not found", attempts: [2]int{1, 1}},
		{name: "latest disabled", secret: disabled, timeout: long,
			code: codes.FailedPrecondition, inText: "is in DISABLED state", attempts: [2]int{1, 1}},
		{name: "latest destroyed", secret: destroyed, timeout: long,
			code: codes.FailedPrecondition, inText: "is in DESTROYED state", attempts: [2]int{1, 1}},
		{name: "permission denied", secret: ok, timeout: long,
			setup: func() {
				e.srv.InjectFault(gcpsmtest.MethodAccessSecretVersion, gcpsmtest.Fault{Code: codes.PermissionDenied})
			},
			code: codes.PermissionDenied, inText: "Permission 'secretmanager.versions.access' denied", attempts: [2]int{1, 1}},
		{name: "unauthenticated", secret: ok, timeout: long,
			setup: func() {
				e.srv.InjectFault(gcpsmtest.MethodAccessSecretVersion, gcpsmtest.Fault{Code: codes.Unauthenticated})
			},
			code: codes.Unauthenticated, inText: "invalid authentication credentials", attempts: [2]int{1, 1}},
		{name: "throttled past the deadline", secret: ok, timeout: short,
			setup: func() {
				e.srv.InjectFault(gcpsmtest.MethodAccessSecretVersion, gcpsmtest.Fault{Code: codes.ResourceExhausted})
			},
			code: codes.ResourceExhausted, ctxErr: true, inText: "while waiting to retry; the last attempt failed: rpc error: code = ResourceExhausted",
			attempts: [2]int{1, 12}, minElapse: short},
		{name: "unavailable past the deadline", secret: ok, timeout: short,
			setup: func() {
				e.srv.InjectFault(gcpsmtest.MethodAccessSecretVersion, gcpsmtest.Fault{Code: codes.Unavailable})
			},
			code: codes.Unavailable, ctxErr: true, inText: "while waiting to retry; the last attempt failed: rpc error: code = Unavailable",
			attempts: [2]int{1, 12}, minElapse: short},
		{name: "hangs past the deadline", secret: ok, timeout: 500 * time.Millisecond,
			setup: func() { e.srv.InjectFault(gcpsmtest.MethodAccessSecretVersion, gcpsmtest.Fault{Hang: true}) },
			code:  codes.DeadlineExceeded, ctxErr: true, inText: "code = DeadlineExceeded", attempts: [2]int{1, 1}, minElapse: 500 * time.Millisecond},
		{name: "checksum mismatch", secret: ok, timeout: long,
			setup: func() {
				e.srv.InjectFault(gcpsmtest.MethodAccessSecretVersion, gcpsmtest.Fault{CorruptChecksum: true})
			},
			code: codes.Unknown, sentinel: gcpsm.ErrChecksum, inText: "do not match the checksum", version: "1", attempts: [2]int{1, 1}},
		{name: "truncated JSON", secret: truncated, timeout: long,
			code: codes.Unknown, sentinel: secrets.ErrMalformed, inText: "unexpected end of input", version: "1", attempts: [2]int{1, 1}},
		{name: "NUL in the password", secret: nul, timeout: long,
			code: codes.Unknown, sentinel: secrets.ErrMalformed, inText: `field "password" contains a NUL byte`, version: "1", attempts: [2]int{1, 1}},
		{name: "two lines of plain text", secret: lines, timeout: long,
			code: codes.Unknown, sentinel: secrets.ErrMalformed, inText: "contains a line break", version: "1", attempts: [2]int{1, 1}},
		{name: "no password field", secret: noPassword, timeout: long,
			code: codes.Unknown, sentinel: secrets.ErrEmptyPassword, inText: `field "password" is missing or null`, version: "1", attempts: [2]int{1, 1}},
		{name: "empty payload", secret: emptyPayload, timeout: long,
			code: codes.Unknown, sentinel: secrets.ErrEmptyPassword, inText: "plain-text secret is empty", version: "1", attempts: [2]int{1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := e.source(t, tc.secret)
			e.srv.ResetCalls()
			if tc.setup != nil {
				tc.setup()
			}
			defer e.srv.ClearFaults()
			ctx, cancel := context.WithTimeout(t.Context(), tc.timeout)
			defer cancel()
			begin := time.Now()
			c, err := src.Fetch(ctx)
			elapsed := time.Since(begin)
			if err == nil {
				t.Fatalf("Fetch = %v, want an error", c)
			}
			text := err.Error()
			t.Logf("after %v: %s", elapsed.Round(time.Millisecond), text)
			var ge *gcpsm.Error
			if !errors.As(err, &ge) {
				t.Fatalf("error is a %T, want *gcpsm.Error", err)
			}
			if ge.Name != src.Name() || ge.Op != gcpsm.OpAccess || ge.Version != tc.version {
				t.Errorf("Error{Op: %q, Name: %q, Version: %q}, want {%q, %q, %q}", ge.Op, ge.Name, ge.Version, gcpsm.OpAccess, src.Name(), tc.version)
			}
			if got := status.Code(err); got != tc.code {
				t.Errorf("status.Code(err) = %v, want %v", got, tc.code)
			}
			if st, ok := status.FromError(err); tc.code != codes.Unknown && (!ok || st.Code() != tc.code) {
				t.Errorf("status.FromError(err) = %v, %v; want code %v", st.Code(), ok, tc.code)
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Errorf("errors.Is(err, %v) = false", tc.sentinel)
			}
			if got := errors.Is(err, context.DeadlineExceeded); got != tc.ctxErr {
				t.Errorf("errors.Is(err, context.DeadlineExceeded) = %v, want %v", got, tc.ctxErr)
			}
			if !strings.Contains(text, tc.inText) || !strings.Contains(text, src.Name()) {
				t.Errorf("error does not name the version asked for and say %q", tc.inText)
			}
			requests := int(e.srv.Calls(gcpsmtest.MethodAccessSecretVersion))
			if ge.Attempts < tc.attempts[0] || ge.Attempts > tc.attempts[1] || ge.Attempts != requests {
				t.Errorf("Error.Attempts = %d, server saw %d requests; want equal, in %v", ge.Attempts, requests, tc.attempts)
			}
			// The deadline ends the client's retries: the call returns
			// soon after it, not after the client's 60 s timeout.
			if elapsed < tc.minElapse || elapsed > tc.timeout+3*time.Second {
				t.Errorf("Fetch returned after %v, want between %v and %v", elapsed, tc.minElapse, tc.timeout+3*time.Second)
			}
			for _, form := range []string{text, fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err), fmt.Sprint(c)} {
				assertNoSecret(t, "the error", form, secretValues...)
			}
		})
	}
	assertNoSecret(t, "the source's log", e.logs.String(), secretValues...)
	if n := strings.Count(e.logs.String(), `"msg":"gcpsm: AccessSecretVersion failed"`); n < 10 {
		t.Errorf("%d Debug lines about failed calls, want one per failed RPC case", n)
	}
}

// TestRetryWithinDeadline: the client's own retry of an Unavailable or
// ResourceExhausted answer succeeds within the caller's deadline, and the
// retries are counted.
func TestRetryWithinDeadline(t *testing.T) {
	for _, code := range []codes.Code{codes.Unavailable, codes.ResourceExhausted} {
		t.Run(code.String(), func(t *testing.T) {
			e := newEnv(t)
			pw := randomPassword(t)
			name := e.srv.CreateSecret("projects/p/secrets/db")
			e.srv.AddVersion(name, rdsJSON(t, "app", pw))
			src := e.source(t, name)
			e.srv.InjectFault(gcpsmtest.MethodAccessSecretVersion, gcpsmtest.Fault{Code: code, Count: 2})
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			begin := time.Now()
			c, err := src.Fetch(ctx)
			elapsed := time.Since(begin)
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if c.Password != pw || c.Version != "1" {
				t.Errorf("Fetch = %v, want version 1 and its password", c)
			}
			n := e.srv.Calls(gcpsmtest.MethodAccessSecretVersion)
			t.Logf("%v twice, then an answer: %d requests in %v", code, n, elapsed.Round(time.Millisecond))
			if n != 3 {
				t.Errorf("requests = %d, want 3 (two %v, one answer)", n, code)
			}
			// The backoff draws up to 2 s, then up to 4 s.
			if elapsed > 6*time.Second+2*time.Second {
				t.Errorf("Fetch took %v, want at most the two backoffs (6 s) and some slack", elapsed)
			}
			if !strings.Contains(e.logs.String(), `"version":"1","attempts":3`) {
				t.Errorf("the Debug line does not count 3 attempts:\n%s", e.logs.String())
			}
			assertNoSecret(t, "the source's log", e.logs.String(), pw)
		})
	}
}

// TestServerDownAndUp: with the service unreachable Fetch fails with
// Unavailable within the deadline; once it is back, Fetch succeeds again
// on the same client.
func TestServerDownAndUp(t *testing.T) {
	e := newEnv(t)
	pw := randomPassword(t)
	name := e.srv.CreateSecret("projects/p/secrets/db")
	e.srv.AddVersion(name, rdsJSON(t, "app", pw))
	src := e.source(t, name)
	if _, err := src.Fetch(t.Context()); err != nil {
		t.Fatalf("Fetch before: %v", err)
	}
	e.srv.Down()
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	begin := time.Now()
	_, err := src.Fetch(ctx)
	elapsed := time.Since(begin)
	cancel()
	t.Logf("down: after %v: %v", elapsed.Round(time.Millisecond), err)
	if code := status.Code(err); code != codes.Unavailable {
		t.Errorf("Fetch with the service down: code %v, want Unavailable", code)
	}
	if !errors.Is(err, context.DeadlineExceeded) || elapsed > 4*time.Second {
		t.Errorf("Fetch with the service down returned after %v, errors.Is(err, DeadlineExceeded) = %v; want the deadline to end the retries",
			elapsed, errors.Is(err, context.DeadlineExceeded))
	}
	if err := e.srv.Up(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	begin = time.Now()
	c, err := src.Fetch(ctx) // the client's retries bridge gRPC's reconnect backoff
	if err != nil || c.Password != pw {
		t.Fatalf("Fetch once the service is back: %v (the password the stored one: %v)", err, c.Password == pw)
	}
	t.Logf("up: a Fetch succeeded after %v", time.Since(begin).Round(time.Millisecond))
}

// TestSlowAnswer: a slow service within the deadline is only slow.
func TestSlowAnswer(t *testing.T) {
	e := newEnv(t)
	name := e.srv.CreateSecret("projects/p/secrets/db")
	e.srv.AddVersion(name, rdsJSON(t, "app", randomPassword(t)))
	src := e.source(t, name)
	e.srv.InjectFault(gcpsmtest.MethodAccessSecretVersion, gcpsmtest.Fault{Latency: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	begin := time.Now()
	if _, err := src.Fetch(ctx); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if d := time.Since(begin); d < 300*time.Millisecond || d > 5*time.Second {
		t.Errorf("Fetch took %v, want 300 ms and a little", d)
	}
}

// TestNames: what New accepts and what Fetch then asks for.
func TestNames(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct{ in, want, err string }{
		{"projects/p/secrets/s", "projects/p/secrets/s/versions/latest", ""},
		{"projects/123/secrets/s/versions/7", "projects/123/secrets/s/versions/7", ""},
		{"projects/p/secrets/s/versions/latest", "projects/p/secrets/s/versions/latest", ""},
		{"projects/p/secrets/s/versions/blue", "projects/p/secrets/s/versions/blue", ""},
		{"projects/p/locations/europe-west1/secrets/s", "projects/p/locations/europe-west1/secrets/s/versions/latest", ""},
		{"projects/p/locations/europe-west1/secrets/s/versions/2", "projects/p/locations/europe-west1/secrets/s/versions/2", ""},
		{"", "", "empty secret name"},
		{"db", "", "does not start with projects/PROJECT/secrets/SECRET"},
		{"projects/p/secrets/", "", "empty segment 4"},
		{"projects/p/secrets/s/", "", "empty segment 5"},
		{"projects/p/secrets/s/versions", "", "is not projects/PROJECT/[locations/LOCATION/]secrets/SECRET[/versions/VERSION]"},
		{"projects/p/topics/s", "", "is not projects/PROJECT"},
		{"projects/p/secrets/s/versions/1/extra", "", "is not projects/PROJECT"},
		{"projects/p/secrets/my secret", "", "space, control or non-ASCII character in segment 4"},
		{"projects/p/secrets/sé", "", "non-ASCII"},
		{" projects/p/secrets/s", "", "segment 1"},
	} {
		src, err := gcpsm.New(e.client, tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("New(%q) = %v, want an error saying %q", tc.in, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("New(%q): %v", tc.in, err)
		case tc.err == "" && (src.Name() != tc.want || src.Describe() != "gcp-secretmanager "+tc.want):
			t.Errorf("New(%q): Name() = %q, Describe() = %q; want %q", tc.in, src.Name(), src.Describe(), tc.want)
		}
	}
}

// TestOptions: invalid options are refused, all of them at once.
func TestOptions(t *testing.T) {
	e := newEnv(t)
	if _, err := gcpsm.New(nil, "projects/p/secrets/s"); err == nil || !strings.Contains(err.Error(), "nil client") {
		t.Errorf("New(nil) = %v, want a nil-client error", err)
	}
	_, err := gcpsm.New(e.client, "projects/p/secrets/s", gcpsm.WithLogger(nil))
	if !errors.Is(err, gcpsm.ErrInvalidOption) || !strings.Contains(err.Error(), "WithLogger: nil logger") {
		t.Errorf("WithLogger(nil): %v", err)
	}
	_, err = gcpsm.New(e.client, "projects/p/secrets/s", gcpsm.WithClientOptions(e.srv.ClientOptions()...))
	if !errors.Is(err, gcpsm.ErrInvalidOption) || !strings.Contains(err.Error(), "WithClientOptions is for Open") {
		t.Errorf("New with WithClientOptions: %v", err)
	}
	if _, err := gcpsm.Open(t.Context(), "nope"); err == nil {
		t.Error("Open with an invalid name: no error")
	}
}

// TestOpen builds the client from options, and Close closes it; a Source
// from New leaves its client open.
func TestOpen(t *testing.T) {
	e := newEnv(t)
	pw := randomPassword(t)
	name := e.srv.CreateSecret("projects/p/secrets/db")
	e.srv.AddVersion(name, []byte(pw))
	src, err := gcpsm.Open(t.Context(), "projects/p/secrets/db", gcpsm.WithClientOptions(e.srv.ClientOptions()...))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	c, err := src.Fetch(t.Context())
	if err != nil || c.Password != pw || c.Version != "1" {
		t.Fatalf("Fetch through Open's client: %v, %v", c, err)
	}
	if err := src.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := src.Fetch(t.Context()); err == nil {
		t.Error("Fetch after Close succeeded: the client was not closed")
	}

	borrowed := e.source(t, name)
	if err := borrowed.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := borrowed.Fetch(t.Context()); err != nil {
		t.Errorf("Fetch after Close of a Source from New: %v; want its client left open", err)
	}
}
