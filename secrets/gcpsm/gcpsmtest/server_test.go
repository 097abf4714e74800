package gcpsmtest_test

import (
	"context"
	"errors"
	"hash/crc32"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"github.com/googleapis/gax-go/v2"
	"go.uber.org/goleak"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets/gcpsm/gcpsmtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T, opts ...gcpsmtest.Option) (*gcpsmtest.Server, *secretmanager.Client) {
	t.Helper()
	srv := gcpsmtest.NewServer(opts...).Start()
	t.Cleanup(srv.Close)
	c, err := srv.Client(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return srv, c
}

func automatic() *secretmanagerpb.Replication {
	return &secretmanagerpb.Replication{Replication: &secretmanagerpb.Replication_Automatic_{Automatic: &secretmanagerpb.Replication_Automatic{}}}
}

func wantCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Errorf("%s: code %v (%v), want %v", what, got, err, code)
	}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// TestSecretLifecycle drives every implemented method through the real
// client: a secret is created, versions are added, listed, read,
// disabled, enabled and destroyed, with the service's rules and codes.
func TestSecretLifecycle(t *testing.T) {
	srv, c := start(t)
	ctx := t.Context()
	number := srv.ProjectNumber("my-project")

	_, err := c.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{Parent: "projects/my-project", SecretId: "db", Secret: &secretmanagerpb.Secret{}})
	wantCode(t, "CreateSecret without replication", err, codes.InvalidArgument)
	_, err = c.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{Parent: "projects/my-project", SecretId: "bad id", Secret: &secretmanagerpb.Secret{Replication: automatic()}})
	wantCode(t, "CreateSecret with an invalid id", err, codes.InvalidArgument)
	sec, err := c.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{
		Parent: "projects/my-project", SecretId: "db",
		Secret: &secretmanagerpb.Secret{Replication: automatic(), Labels: map[string]string{"team": "db"},
			Topics: []*secretmanagerpb.Topic{{Name: "projects/my-project/topics/rotations"}}},
	})
	if err != nil {
		t.Fatalf("CreateSecret: %v", err)
	}
	secretName := "projects/" + number + "/secrets/db"
	if sec.GetName() != secretName || sec.GetLabels()["team"] != "db" || sec.GetCreateTime() == nil {
		t.Errorf("CreateSecret = %v", sec)
	}
	_, err = c.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{Parent: "projects/" + number, SecretId: "db", Secret: &secretmanagerpb.Secret{Replication: automatic()}})
	wantCode(t, "CreateSecret again, by project number", err, codes.AlreadyExists)
	if got, err := c.GetSecret(ctx, &secretmanagerpb.GetSecretRequest{Name: "projects/my-project/secrets/db"}); err != nil || len(got.GetTopics()) != 1 {
		t.Errorf("GetSecret = %v, %v", got, err)
	}

	_, err = c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: "projects/my-project/secrets/db/versions/latest"})
	wantCode(t, "AccessSecretVersion latest with no versions", err, codes.NotFound)

	payloads := [][]byte{[]byte("one"), []byte("two"), []byte("three")}
	for i, p := range payloads {
		crc := int64(crc32.Checksum(p, castagnoli))
		v, err := c.AddSecretVersion(ctx, &secretmanagerpb.AddSecretVersionRequest{
			Parent: "projects/my-project/secrets/db", Payload: &secretmanagerpb.SecretPayload{Data: p, DataCrc32C: &crc}})
		if err != nil {
			t.Fatalf("AddSecretVersion %d: %v", i+1, err)
		}
		if want := secretName + "/versions/" + string(rune('1'+i)); v.GetName() != want || v.GetState() != secretmanagerpb.SecretVersion_ENABLED || !v.GetClientSpecifiedPayloadChecksum() {
			t.Errorf("AddSecretVersion %d = %v, want %s ENABLED with a client checksum", i+1, v, want)
		}
	}
	bad := int64(1)
	_, err = c.AddSecretVersion(ctx, &secretmanagerpb.AddSecretVersionRequest{
		Parent: "projects/my-project/secrets/db", Payload: &secretmanagerpb.SecretPayload{Data: []byte("x"), DataCrc32C: &bad}})
	wantCode(t, "AddSecretVersion with a wrong checksum", err, codes.InvalidArgument)
	_, err = c.AddSecretVersion(ctx, &secretmanagerpb.AddSecretVersionRequest{
		Parent: "projects/my-project/secrets/db", Payload: &secretmanagerpb.SecretPayload{Data: make([]byte, gcpsmtest.MaxPayload+1)}})
	wantCode(t, "AddSecretVersion over 64 KiB", err, codes.InvalidArgument)
	_, err = c.AddSecretVersion(ctx, &secretmanagerpb.AddSecretVersionRequest{Parent: "projects/my-project/secrets/nope", Payload: &secretmanagerpb.SecretPayload{Data: []byte("x")}})
	wantCode(t, "AddSecretVersion to a missing secret", err, codes.NotFound)

	resp, err := c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: "projects/my-project/secrets/db/versions/latest"})
	if err != nil || resp.GetName() != secretName+"/versions/3" || string(resp.GetPayload().GetData()) != "three" ||
		resp.GetPayload().GetDataCrc32C() != int64(crc32.Checksum([]byte("three"), castagnoli)) {
		t.Errorf("AccessSecretVersion latest: name %q, payload right: %v, %v", resp.GetName(), string(resp.GetPayload().GetData()) == "three", err)
	}
	if v, err := c.GetSecretVersion(ctx, &secretmanagerpb.GetSecretVersionRequest{Name: "projects/my-project/secrets/db/versions/2"}); err != nil || v.GetName() != secretName+"/versions/2" {
		t.Errorf("GetSecretVersion 2 = %v, %v", v, err)
	}

	// Disable 3: latest still means 3, so it fails; 2 still reads.
	v3 := "projects/my-project/secrets/db/versions/3"
	got, err := c.DisableSecretVersion(ctx, &secretmanagerpb.DisableSecretVersionRequest{Name: v3})
	if err != nil || got.GetState() != secretmanagerpb.SecretVersion_DISABLED {
		t.Fatalf("DisableSecretVersion = %v, %v", got, err)
	}
	_, err = c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: "projects/my-project/secrets/db/versions/latest"})
	wantCode(t, "AccessSecretVersion latest, disabled", err, codes.FailedPrecondition)
	if err == nil || !strings.Contains(status.Convert(err).Message(), "is in DISABLED state") {
		t.Errorf("message %q does not say DISABLED", status.Convert(err).Message())
	}
	if r, err := c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: "projects/my-project/secrets/db/versions/2"}); err != nil || string(r.GetPayload().GetData()) != "two" {
		t.Errorf("AccessSecretVersion 2: %v", err)
	}
	_, err = c.EnableSecretVersion(ctx, &secretmanagerpb.EnableSecretVersionRequest{Name: v3, Etag: `"stale"`})
	wantCode(t, "EnableSecretVersion with a stale etag", err, codes.Aborted)
	if got, err = c.EnableSecretVersion(ctx, &secretmanagerpb.EnableSecretVersionRequest{Name: v3, Etag: got.GetEtag()}); err != nil || got.GetState() != secretmanagerpb.SecretVersion_ENABLED {
		t.Fatalf("EnableSecretVersion with the etag = %v, %v", got, err)
	}
	got, err = c.DestroySecretVersion(ctx, &secretmanagerpb.DestroySecretVersionRequest{Name: "projects/my-project/secrets/db/versions/1"})
	if err != nil || got.GetState() != secretmanagerpb.SecretVersion_DESTROYED || got.GetDestroyTime() == nil {
		t.Fatalf("DestroySecretVersion = %v, %v", got, err)
	}
	_, err = c.EnableSecretVersion(ctx, &secretmanagerpb.EnableSecretVersionRequest{Name: "projects/my-project/secrets/db/versions/1"})
	wantCode(t, "EnableSecretVersion of a destroyed version", err, codes.FailedPrecondition)
	_, err = c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: "projects/my-project/secrets/db/versions/1"})
	wantCode(t, "AccessSecretVersion of a destroyed version", err, codes.FailedPrecondition)

	// Listing: newest first, paged, filtered.
	var listed []string
	it := c.ListSecretVersions(ctx, &secretmanagerpb.ListSecretVersionsRequest{Parent: "projects/my-project/secrets/db", PageSize: 2})
	for {
		v, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			t.Fatalf("ListSecretVersions: %v", err)
		}
		listed = append(listed, v.GetName()[len(secretName)+len("/versions/"):]+":"+v.GetState().String())
	}
	if want := []string{"3:ENABLED", "2:ENABLED", "1:DESTROYED"}; !slices.Equal(listed, want) {
		t.Errorf("ListSecretVersions = %v, want %v", listed, want)
	}
	resp2, err := c.ListSecretVersions(ctx, &secretmanagerpb.ListSecretVersionsRequest{Parent: "projects/my-project/secrets/db", Filter: "state:DESTROYED"}).Next()
	if err != nil || resp2.GetName() != secretName+"/versions/1" {
		t.Errorf("ListSecretVersions state:DESTROYED: first %v, %v", resp2, err)
	}
	var infos []string
	for v := range srv.Versions("projects/my-project/secrets/db") {
		infos = append(infos, v.String())
	}
	if len(infos) != 3 || infos[0] != secretName+"/versions/1 (DESTROYED)" {
		t.Errorf("Versions = %v", infos)
	}

	_, err = c.ListSecrets(ctx, &secretmanagerpb.ListSecretsRequest{Parent: "projects/my-project"}).Next()
	wantCode(t, "ListSecrets (not implemented)", err, codes.Unimplemented)
	if err := c.DeleteSecret(ctx, &secretmanagerpb.DeleteSecretRequest{Name: "projects/my-project/secrets/db"}); err != nil {
		t.Fatalf("DeleteSecret: %v", err)
	}
	_, err = c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: "projects/my-project/secrets/db/versions/2"})
	wantCode(t, "AccessSecretVersion after DeleteSecret", err, codes.NotFound)
}

// TestVersionAlias: a version alias set at creation names its version.
func TestVersionAlias(t *testing.T) {
	srv, c := start(t)
	ctx := t.Context()
	if _, err := c.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{Parent: "projects/p", SecretId: "db",
		Secret: &secretmanagerpb.Secret{Replication: automatic(), VersionAliases: map[string]int64{"blue": 1}}}); err != nil {
		t.Fatal(err)
	}
	srv.AddVersion("projects/p/secrets/db", []byte("one"))
	srv.AddVersion("projects/p/secrets/db", []byte("two"))
	r, err := c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: "projects/p/secrets/db/versions/blue"})
	if err != nil || string(r.GetPayload().GetData()) != "one" || !strings.HasSuffix(r.GetName(), "/versions/1") {
		t.Errorf("AccessSecretVersion blue: %q, %v", r.GetName(), err)
	}
	_, err = c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: "projects/p/secrets/db/versions/green"})
	wantCode(t, "an unknown alias", err, codes.NotFound)
}

// TestFaults: codes, counts, the catch-all, latency within and past the
// client's deadline, a hang ended by the client, and corrupt checksums;
// Calls counts every request that reached the server, the client's
// retries included.
func TestFaults(t *testing.T) {
	srv, c := start(t)
	name := srv.CreateSecret("projects/p/secrets/db")
	srv.AddVersion(name, []byte("value"))
	access := func(timeout time.Duration) (*secretmanagerpb.AccessSecretVersionResponse, error) {
		ctx, cancel := context.WithTimeout(t.Context(), timeout)
		defer cancel()
		return c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: name + "/versions/latest"})
	}

	srv.InjectFault(gcpsmtest.MethodAccessSecretVersion, gcpsmtest.Fault{Code: codes.PermissionDenied, Count: 2})
	for i := range 2 {
		_, err := access(10 * time.Second)
		wantCode(t, "a counted PermissionDenied", err, codes.PermissionDenied)
		_ = i
	}
	if _, err := access(10 * time.Second); err != nil {
		t.Errorf("after the counted fault: %v", err)
	}

	srv.InjectFault(gcpsmtest.AllMethods, gcpsmtest.Fault{Code: codes.Internal, Message: "boom"})
	_, err := c.GetSecretVersion(t.Context(), &secretmanagerpb.GetSecretVersionRequest{Name: name + "/versions/1"})
	wantCode(t, "AllMethods", err, codes.Internal)
	if status.Convert(err).Message() != "boom" {
		t.Errorf("message %q, want boom", status.Convert(err).Message())
	}
	srv.ClearFaults()

	srv.ResetCalls()
	srv.InjectFault(gcpsmtest.MethodAccessSecretVersion, gcpsmtest.Fault{Code: codes.Unavailable, Count: 1})
	if _, err := access(20 * time.Second); err != nil {
		t.Errorf("one Unavailable, retried by the client: %v", err)
	}
	if n := srv.Calls(gcpsmtest.MethodAccessSecretVersion); n != 2 {
		t.Errorf("Calls = %d after one retried Unavailable, want 2", n)
	}

	srv.InjectFault(gcpsmtest.MethodAccessSecretVersion, gcpsmtest.Fault{Latency: 200 * time.Millisecond, Count: 1})
	begin := time.Now()
	if _, err := access(10 * time.Second); err != nil || time.Since(begin) < 200*time.Millisecond {
		t.Errorf("latency within the deadline: %v after %v", err, time.Since(begin))
	}
	srv.InjectFault(gcpsmtest.MethodAccessSecretVersion, gcpsmtest.Fault{Latency: time.Hour, Count: 1})
	begin = time.Now()
	_, err = access(300 * time.Millisecond)
	wantCode(t, "latency past the deadline", err, codes.DeadlineExceeded)
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("latency past a 300 ms deadline returned after %v", d)
	}
	srv.InjectFault(gcpsmtest.MethodAccessSecretVersion, gcpsmtest.Fault{Hang: true, Count: 1})
	_, err = access(300 * time.Millisecond)
	wantCode(t, "hang", err, codes.DeadlineExceeded)

	srv.InjectFault(gcpsmtest.MethodAccessSecretVersion, gcpsmtest.Fault{CorruptChecksum: true, Count: 1})
	r, err := access(10 * time.Second)
	if err != nil || r.GetPayload().GetDataCrc32C() == int64(crc32.Checksum(r.GetPayload().GetData(), castagnoli)) {
		t.Errorf("CorruptChecksum: %v; checksum still right", err)
	}
	if r, err := access(10 * time.Second); err != nil || r.GetPayload().GetDataCrc32C() != int64(crc32.Checksum(r.GetPayload().GetData(), castagnoli)) {
		t.Errorf("after the corrupt answer: %v; checksum wrong", err)
	}
}

// TestDownUp: Down makes the service unreachable (Unavailable) and drops
// a request in flight; Up serves the same secrets on the same address.
func TestDownUp(t *testing.T) {
	srv, c := start(t)
	name := srv.CreateSecret("projects/p/secrets/db")
	srv.AddVersion(name, []byte("value"))
	addr := srv.Addr()

	srv.InjectFault(gcpsmtest.MethodAccessSecretVersion, gcpsmtest.Fault{Hang: true, Count: 1})
	inFlight := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// Without the client's retries, which would try again until the
		// deadline.
		_, err := c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: name + "/versions/1"},
			gax.WithRetry(func() gax.Retryer { return nil }))
		inFlight <- err
	}()
	testkit.WaitFor(t.Context(), t, 10*time.Second, "the hanging request", func() bool {
		return srv.Calls(gcpsmtest.MethodAccessSecretVersion) == 1
	})
	srv.Down()
	select {
	case err := <-inFlight:
		t.Logf("the request in flight at Down: %v", err)
		wantCode(t, "the request in flight at Down", err, codes.Unavailable)
	case <-time.After(25 * time.Second):
		t.Fatal("the request in flight at Down did not end")
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	_, err := c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: name + "/versions/1"},
		gax.WithRetry(func() gax.Retryer { return nil }))
	cancel()
	t.Logf("while down: %v", err)
	wantCode(t, "while down", err, codes.Unavailable)
	if err := srv.Up(); err != nil {
		t.Fatal(err)
	}
	if srv.Addr() != addr {
		t.Errorf("Addr after Up = %s, want %s", srv.Addr(), addr)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if r, err := c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: name + "/versions/1"}); err != nil || string(r.GetPayload().GetData()) != "value" {
		t.Errorf("after Up: %v", err)
	}
	if err := srv.Up(); err != nil {
		t.Errorf("Up when up: %v", err)
	}
}

// TestCloseEndsHangingRequests: Close ends a request that hangs with no
// deadline, closes the clients it made, and leaves no goroutine (TestMain
// checks with goleak).
func TestCloseEndsHangingRequests(t *testing.T) {
	srv := gcpsmtest.NewServer().Start()
	c, err := srv.Client(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	name := srv.CreateSecret("projects/p/secrets/db")
	srv.AddVersion(name, []byte("value"))
	srv.InjectFault(gcpsmtest.AllMethods, gcpsmtest.Fault{Hang: true})
	done := make(chan error, 1)
	go func() {
		_, err := c.AccessSecretVersion(context.Background(), &secretmanagerpb.AccessSecretVersionRequest{Name: name + "/versions/1"})
		done <- err
	}()
	testkit.WaitFor(t.Context(), t, 10*time.Second, "the hanging request", func() bool { return srv.TotalCalls() == 1 })
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("the hanging request succeeded")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not end the hanging request")
	}
	<-closed
	srv.Close() // idempotent
	if err := srv.Up(); err == nil {
		t.Error("Up after Close: no error")
	}
	if _, err := srv.Client(t.Context()); err == nil {
		t.Error("Client after Close: no error")
	}
}

// TestLogsNoPayload: the server's log names methods, resources and codes,
// never payloads.
func TestLogsNoPayload(t *testing.T) {
	logs := new(testkit.LogBuffer)
	srv, c := start(t, gcpsmtest.WithLogger(slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	value := "pw-distinctive-" + strings.Repeat("q", 20)
	srv.CreateSecret("projects/p/secrets/db")
	if _, err := c.AddSecretVersion(t.Context(), &secretmanagerpb.AddSecretVersionRequest{Parent: "projects/p/secrets/db", Payload: &secretmanagerpb.SecretPayload{Data: []byte(value)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AccessSecretVersion(t.Context(), &secretmanagerpb.AccessSecretVersionRequest{Name: "projects/p/secrets/db/versions/latest"}); err != nil {
		t.Fatal(err)
	}
	text := logs.String()
	if strings.Contains(text, value) {
		t.Error("the server's log contains a payload")
	}
	if !strings.Contains(text, `"method":"AccessSecretVersion","resource":"projects/p/secrets/db/versions/latest","code":"OK"`) {
		t.Errorf("the log does not name the method, resource and code:\n%s", text)
	}
}

// TestHookPanics: the test hooks refuse invalid input loudly.
func TestHookPanics(t *testing.T) {
	srv, _ := start(t)
	for what, fn := range map[string]func(){
		"CreateSecret with a bad name": func() { srv.CreateSecret("db") },
		"CreateSecret twice":           func() { srv.CreateSecret("projects/p/secrets/a"); srv.CreateSecret("projects/p/secrets/a") },
		"AddVersion to a missing one":  func() { srv.AddVersion("projects/p/secrets/missing", []byte("x")) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", what)
				}
			}()
			fn()
		}()
	}
	if err := srv.DisableVersion("projects/p/secrets/a/versions/9"); status.Code(err) != codes.NotFound {
		t.Errorf("DisableVersion of a missing version: %v", err)
	}
}
