package awssmtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/pgrotate/rotating/internal/loopback"
)

const (
	// Region is the AWS region in every ARN the server makes and the region
	// [Server.Client] configures.
	Region = "us-east-1"

	// AccountID is the AWS account in every ARN the server makes.
	AccountID = "123456789012"
)

// Staging labels that Secrets Manager gives a meaning to.
const (
	// StageCurrent marks the version that GetSecretValue returns by default.
	StageCurrent = "AWSCURRENT"
	// StagePrevious marks the version that had AWSCURRENT before it moved.
	StagePrevious = "AWSPREVIOUS"
	// StagePending marks the version a rotation is creating.
	StagePending = "AWSPENDING"
)

// Operation names, as they follow "secretsmanager." in the X-Amz-Target
// header. [Server.InjectFault] and [Server.Calls] take them.
const (
	OpCreateSecret             = "CreateSecret"
	OpGetSecretValue           = "GetSecretValue"
	OpPutSecretValue           = "PutSecretValue"
	OpUpdateSecretVersionStage = "UpdateSecretVersionStage"
	OpDescribeSecret           = "DescribeSecret"
	OpListSecretVersionIds     = "ListSecretVersionIds"
	OpGetRandomPassword        = "GetRandomPassword"
	OpRotateSecret             = "RotateSecret"
	OpDeleteSecret             = "DeleteSecret"

	// AllOperations makes [Server.InjectFault] apply to every operation that
	// has no fault of its own.
	AllOperations = "*"
)

// targetPrefix is what the SDK puts before the operation name in
// X-Amz-Target: the service shape's name in the Smithy model.
const targetPrefix = "secretsmanager."

// maxRequestBody bounds a request body; AWS's largest secret is 64 KiB and
// base64 makes binary ones a third bigger.
const maxRequestBody = 1 << 20

// ErrNotLoopback is returned (wrapped) by [Server.ListenAndServe] and
// [Server.Serve] for an address that is not a loopback address. The server
// accepts any signature, so it must not be reachable from other machines.
var ErrNotLoopback = loopback.ErrNotLoopback

// Option configures a [Server].
type Option func(*config)

type config struct {
	onRotate func(secretID, versionID string)
	logger   *slog.Logger
}

// WithOnRotate sets a function that RotateSecret calls after it has attached
// AWSPENDING to a new, empty version: secretID is the secret's ARN (as AWS
// passes it to a rotation Lambda) and versionID the new version's id, which
// is also the ClientRequestToken the rotation steps must use.
//
// The function runs in its own goroutine once RotateSecret has answered, as
// AWS invokes its Lambda asynchronously; it may call the server, through the
// SDK or the Go methods. [Server.Close] waits for running calls to return.
func WithOnRotate(f func(secretID, versionID string)) Option {
	return func(c *config) { c.onRotate = f }
}

// WithLogger makes the server log each request at debug level: operation,
// secret id, HTTP status and error code. It never logs secret values. The
// default is silent.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// Fault is a failure that [Server.InjectFault] makes an operation produce.
// The parts combine in this order: Latency, then Hang, then either an error
// response (Error or Status) or a malformed body, or else the normal answer.
type Fault struct {
	// Latency delays the answer. The operation runs after the delay.
	Latency time.Duration

	// Hang blocks the request until the client gives up or the server is
	// closed; the connection is then dropped without an answer.
	Hang bool

	// Error is the AWS error code to answer with, such as
	// "ThrottlingException" or "InternalServiceError". The operation does not
	// run.
	Error string

	// Message is the error message; empty means a generic one.
	Message string

	// Status is the HTTP status of the error answer. Zero means 500 for
	// InternalServiceError and 400 for other errors. A Status without an
	// Error answers InternalServiceError for 5xx, ThrottlingException for 429
	// and InvalidRequestException otherwise.
	Status int

	// MalformedBody answers with a truncated JSON body that the SDK cannot
	// deserialize, with status Status (200 when zero and Error is empty).
	MalformedBody bool

	// Count limits the fault to the next Count calls; zero means every call
	// until [Server.ClearFaults].
	Count int
}

// Server is an in-memory AWS Secrets Manager endpoint. It implements
// [http.Handler]; [Server.Start] serves it on a loopback port for the
// duration of a test. All methods are safe for concurrent use.
type Server struct {
	cfg    config
	closed chan struct{} // closed by Close; ends hanging and delayed requests
	ep     endpoint      // where s listens

	// transport carries the requests of the clients made by Client, so that
	// Close can drop their idle connections.
	transport *http.Transport
	closeOnce sync.Once
	hooks     sync.WaitGroup // running OnRotate calls; Add only with mu held and !closing

	// faults and calls have locks of their own, taken with or without mu.
	faults *loopback.Faults[string, Fault] // by operation name or AllOperations
	calls  loopback.Calls[string]          // by operation name

	// mu guards everything below. It is never held while a request sleeps,
	// hangs or writes its answer, nor while an OnRotate hook runs.
	mu         sync.Mutex
	closing    bool
	secrets    map[string]*secret // by name
	byARN      map[string]*secret
	stageCalls map[string]int64 // GetSecretValue calls by requested stage
}

var _ http.Handler = (*Server)(nil)

// NewServer returns a Server with no secrets. It does not listen: call
// [Server.Start], [Server.ListenAndServe] or [Server.Serve], or mount it as
// an [http.Handler]. Call [Server.Close] when done.
func NewServer(opts ...Option) *Server {
	s := &Server{
		closed:     make(chan struct{}),
		secrets:    make(map[string]*secret),
		byARN:      make(map[string]*secret),
		stageCalls: make(map[string]int64),
		faults:     loopback.NewFaults[string, Fault](AllOperations),
	}
	s.ep = endpoint{name: "Server", h: s, closed: s.closed}
	for _, opt := range opts {
		opt(&s.cfg)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil // the server is always on loopback
	s.transport = t
	return s
}

// Start serves s on a random port of 127.0.0.1 and returns s. It panics if s
// is already started or closed, or if it cannot listen.
func (s *Server) Start() *Server {
	s.ep.start()
	return s
}

// URL returns the server's base URL, such as "http://127.0.0.1:41234", or ""
// before [Server.Start] or [Server.Serve].
func (s *Server) URL() string { return s.ep.URL() }

// Client returns a Secrets Manager client for s: region [Region], static
// dummy credentials, BaseEndpoint set to [Server.URL], and an HTTP transport
// whose idle connections [Server.Close] drops. Everything else, the retryer
// included, is the SDK's default. optFns are applied last. The client reads
// no environment variables or shared config files. ctx is unused; it is
// there so that loading configuration later needs no API change.
//
// Client panics if s is not serving yet: a client with an empty endpoint
// would go to AWS.
func (s *Server) Client(ctx context.Context, optFns ...func(*secretsmanager.Options)) *secretsmanager.Client {
	url := s.URL()
	if url == "" {
		panic("awssmtest: Client called before Start or Serve")
	}
	return secretsmanager.New(secretsmanager.Options{
		Region:       Region,
		BaseEndpoint: aws.String(url),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{
				AccessKeyID:     "AKIAAWSSMTEST0000000",
				SecretAccessKey: "awssmtest-dummy-secret-access-key",
				Source:          "awssmtest",
			}, nil
		}),
		HTTPClient: &http.Client{Transport: s.transport},
	}, optFns...)
}

// Close ends requests that hang or wait for an injected latency, stops
// serving (for [Server.Start] and [Server.Serve] alike), waits for running
// OnRotate hooks and drops the idle connections of clients from
// [Server.Client]. Close is idempotent. The state stays readable.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		s.mu.Unlock()

		close(s.closed)
		s.ep.stop() // waits for handlers, which closed has released
		s.hooks.Wait()
		s.transport.CloseIdleConnections()
	})
}

// ListenAndServe serves s on addr, which must be a loopback address such as
// "127.0.0.1:0", "[::1]:8080" or "localhost:8080", until ctx is done or
// [Server.Close] is called; it then returns nil. An addr with any other host
// (or none, which would mean every interface) returns an error wrapping
// [ErrNotLoopback]. While serving, [Server.URL] names the address, if
// [Server.Start] has not set it already.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	ln, err := loopback.Listen(ctx, addr)
	if err != nil {
		return fmt.Errorf("awssmtest: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves s on ln until ctx is done or [Server.Close] is called, then
// closes ln and returns nil; it returns the error if serving fails first. ln
// must be bound to a loopback address, else Serve closes it and returns an
// error wrapping [ErrNotLoopback]. Requests in flight when ctx ends see
// their context cancelled. While serving, [Server.URL] names ln's address,
// if [Server.Start] has not set it already.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return s.ep.serve(ctx, ln)
}

// InjectFault makes the next calls of op (an Op constant, or AllOperations
// for every operation without a fault of its own) fail as f says, replacing
// any fault op had. Calls that a fault affects still count in [Server.Calls].
// InjectFault panics if op is not an operation the server implements.
func (s *Server) InjectFault(op string, f Fault) {
	if op != AllOperations && !knownOp(op) {
		panic(fmt.Sprintf("awssmtest: InjectFault: unknown operation %q", op))
	}
	s.faults.Set(op, f, f.Count)
}

// ClearFaults removes every injected fault.
func (s *Server) ClearFaults() { s.faults.Clear() }

// Calls returns how many requests for op reached the server since it was
// made or since [Server.ResetCalls]: every well-formed, signed request,
// whether it succeeded, failed or met an injected fault. The SDK's retries
// are separate requests.
func (s *Server) Calls(op string) int64 { return s.calls.Of(op) }

// CallsByStage returns how many GetSecretValue requests asked for stage, as
// [Server.Calls] counts them. A request that names neither a VersionStage
// nor a VersionId counts as AWSCURRENT; one that names only a VersionId
// counts under "".
func (s *Server) CallsByStage(stage string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stageCalls[stage]
}

// TotalCalls returns the sum of [Server.Calls] over all operations.
func (s *Server) TotalCalls() int64 { return s.calls.Total() }

// ResetCalls sets every call counter to zero.
func (s *Server) ResetCalls() {
	s.calls.Reset()
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.stageCalls)
}

// apiError is an AWS error answer.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func newAPIError(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

func errNotFound(format string, args ...any) *apiError {
	return newAPIError(http.StatusBadRequest, "ResourceNotFoundException", format, args...)
}

func errInvalidParameter(format string, args ...any) *apiError {
	return newAPIError(http.StatusBadRequest, "InvalidParameterException", format, args...)
}

func errInvalidRequest(format string, args ...any) *apiError {
	return newAPIError(http.StatusBadRequest, "InvalidRequestException", format, args...)
}

func errExists(format string, args ...any) *apiError {
	return newAPIError(http.StatusBadRequest, "ResourceExistsException", format, args...)
}

// faultError builds the error answer that f asks for, or nil.
func faultError(f Fault) *apiError {
	if f.Error == "" && f.Status == 0 {
		return nil
	}
	code, status := f.Error, f.Status
	if code == "" {
		switch {
		case status >= 500:
			code = "InternalServiceError"
		case status == http.StatusTooManyRequests:
			code = "ThrottlingException"
		default:
			code = "InvalidRequestException"
		}
	}
	if status == 0 {
		status = http.StatusBadRequest
		if code == "InternalServiceError" {
			status = http.StatusInternalServerError
		}
	}
	msg := f.Message
	if msg == "" {
		msg = "injected fault: " + code
	}
	return &apiError{status: status, code: code, message: msg}
}

// ServeHTTP implements the AWS JSON 1.1 protocol: POST with X-Amz-Target
// "secretsmanager.<Operation>", an Authorization header (any signature) and
// Content-Type application/x-amz-json-1.1.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Amzn-RequestId", newUUID())
	op, secretID, status, code := s.serve(w, r)
	if l := s.cfg.logger; l != nil {
		l.LogAttrs(r.Context(), slog.LevelDebug, "awssmtest request",
			slog.String("op", op), slog.String("secret_id", secretID),
			slog.Int("status", status), slog.String("error_code", code))
	}
}

// serve answers one request and reports what it did, for the log.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) (op, secretID string, status int, code string) {
	reply := func(e *apiError) (string, string, int, string) {
		writeError(w, e)
		return op, secretID, e.status, e.code
	}
	if r.Method != http.MethodPost {
		return reply(newAPIError(http.StatusMethodNotAllowed, "UnknownOperationException", "method %s not allowed; use POST", r.Method))
	}
	if r.Header.Get("Authorization") == "" {
		return reply(newAPIError(http.StatusBadRequest, "MissingAuthenticationTokenException", "Missing Authentication Token"))
	}
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, targetPrefix)
	if !ok || !knownOp(op) {
		return reply(newAPIError(http.StatusBadRequest, "UnknownOperationException", "awssmtest does not implement X-Amz-Target %q", target))
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-amz-json-1.1" {
		return reply(newAPIError(http.StatusBadRequest, "SerializationException", "Content-Type must be application/x-amz-json-1.1"))
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		return reply(newAPIError(http.StatusBadRequest, "SerializationException", "cannot read request body: %v", err))
	}
	if len(body) == 0 {
		body = []byte("{}")
	}
	var ids struct{ SecretId, VersionId, VersionStage string }
	_ = json.Unmarshal(body, &ids) // a bad body is reported by the operation
	secretID = ids.SecretId

	s.mu.Lock()
	s.calls.Add(op)
	if op == OpGetSecretValue {
		stage := ids.VersionStage
		if stage == "" && ids.VersionId == "" {
			stage = StageCurrent
		}
		s.stageCalls[stage]++
	}
	fault, faulted := s.faults.Take(op)
	s.mu.Unlock()

	if faulted {
		if !loopback.Wait(r.Context(), s.closed, fault.Latency, fault.Hang) {
			// The client gave up or the server is closing: drop the
			// connection rather than send an answer nobody asked for, or
			// an empty 200 that a client would take for success.
			panic(http.ErrAbortHandler)
		}
		if fault.MalformedBody {
			st := fault.Status
			if e := faultError(fault); e != nil {
				st = e.status
			}
			if st == 0 {
				st = http.StatusOK
			}
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.WriteHeader(st)
			io.WriteString(w, `{"ARN":"arn:aws:secretsmanager:`+Region+`:`+AccountID+`:secret:trunc`)
			return op, secretID, st, "MalformedBody"
		}
		if e := faultError(fault); e != nil {
			return reply(e)
		}
	}

	out, apiErr := s.dispatch(op, body)
	if apiErr != nil {
		return reply(apiErr)
	}
	writeJSON(w, http.StatusOK, out)
	return op, secretID, http.StatusOK, ""
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only programming errors get here; the message holds no value.
		writeError(w, newAPIError(http.StatusInternalServerError, "InternalServiceError", "awssmtest: encoding response: %v", err))
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(status)
	w.Write(b)
}

func writeError(w http.ResponseWriter, e *apiError) {
	b, _ := json.Marshal(struct {
		Type    string `json:"__type"`
		Message string `json:"Message"`
	}{e.code, e.message})
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(e.status)
	w.Write(b)
}
