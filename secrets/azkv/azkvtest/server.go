package azkvtest

import (
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/pgrotate/rotating/internal/loopback"
	"github.com/pgrotate/rotating/internal/testca"
)

// The authentication challenge the server answers unauthenticated requests
// with, as Key Vault does:
//
//	WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<TenantID>", resource="https://vault.azure.net"
const (
	// TenantID is the Microsoft Entra tenant the challenge names; the
	// client asks its credential for a token in it.
	TenantID = "00000000-0000-4000-8000-00000000a2c5"
	// Authority is the challenge's authorization parameter.
	Authority = "https://login.microsoftonline.com/" + TenantID
	// Resource is the challenge's resource parameter, Key Vault's own.
	Resource = "https://vault.azure.net"
)

// Operation names, as the azsecrets client's methods are named.
// [Server.InjectFault] and [Server.Calls] take them.
const (
	OpGetSecret                    = "GetSecret"
	OpSetSecret                    = "SetSecret"
	OpUpdateSecretProperties       = "UpdateSecretProperties"
	OpListSecretPropertiesVersions = "ListSecretPropertiesVersions"
	OpDeleteSecret                 = "DeleteSecret"

	// AllOperations makes [Server.InjectFault] apply to every operation
	// that has no fault of its own.
	AllOperations = "*"
)

func knownOp(op string) bool {
	switch op {
	case OpGetSecret, OpSetSecret, OpUpdateSecretProperties, OpListSecretPropertiesVersions, OpDeleteSecret:
		return true
	}
	return false
}

// maxRequestBody bounds a request body; Key Vault's largest secret value
// is 25 KiB.
const maxRequestBody = 1 << 20

// Option configures a [Server].
type Option func(*config)

type config struct {
	logger *slog.Logger
}

// WithLogger makes the server log each request at debug level: method,
// operation, secret name, version, HTTP status and error code. It never
// logs secret values or tokens. The default is silent.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// Fault is a failure that [Server.InjectFault] makes an operation produce.
// It applies to requests that carry the server's token (the client's
// unauthenticated first request always gets its challenge). The parts
// combine in this order: Latency, then Hang or Drop, then either an error
// answer (Status) or a malformed body, or else the normal answer.
type Fault struct {
	// Latency delays the answer. The operation runs after the delay.
	Latency time.Duration

	// Hang blocks the request until the client gives up or the server is
	// closed; the connection is then dropped without an answer.
	Hang bool

	// Drop closes the connection without an answer, as a crashed server or
	// a reset by a load balancer would. Go's http.Transport sends a GET
	// that met this on a reused connection once more on a new one, so a
	// Drop with Count 1 may go unnoticed.
	Drop bool

	// Status is the HTTP status of an error answer, such as 401, 403, 404,
	// 429 or 503. The operation does not run.
	Status int

	// Code and InnerCode are the error's code and inner error code; empty
	// means Key Vault's for Status (401 Unauthorized; 403 Forbidden with
	// ForbiddenByRbac; 404 NotFound; 429 Throttled; 500
	// InternalServerError; 503 ServiceUnavailable; others BadParameter).
	Code, InnerCode string

	// Message is the error's message; empty means a generic one.
	Message string

	// RetryAfter, when positive, is sent as a Retry-After header in whole
	// seconds, rounded up, as Key Vault does when it throttles.
	RetryAfter time.Duration

	// MalformedBody answers 200 with a truncated JSON body that the client
	// cannot parse; with Status, that status.
	MalformedBody bool

	// Count limits the fault to the next Count requests; zero means every
	// request until [Server.ClearFaults].
	Count int
}

// Server is an in-memory Azure Key Vault secrets endpoint over HTTPS. All
// methods are safe for concurrent use.
type Server struct {
	cfg config
	// ca signed leaf, the server's certificate for the loopback names:
	// the azsecrets client sends bearer tokens over TLS only, so the
	// server needs a certificate the client trusts, and a CA of its own
	// means only clients given this server's pool trust it.
	ca     *testca.CA
	leaf   *testca.Leaf
	token  string
	cred   *Credential
	closed chan struct{} // closed by Close; ends hanging and delayed requests

	// transport carries the requests of the clients made by Client, so
	// that Close can drop their idle connections.
	transport *http.Transport
	closeOnce sync.Once

	// faults and calls have locks of their own, taken with or without mu.
	faults *loopback.Faults[string, Fault] // by operation name or AllOperations
	calls  loopback.Calls[string]          // by operation name

	// mu guards everything below. It is never held while a request sleeps,
	// hangs or writes its answer.
	mu         sync.Mutex
	closing    bool
	down       bool
	ts         *httptest.Server
	url        string
	secrets    map[string]*secret
	challenges int64
	refused    int64
}

// NewServer returns a Server with no secrets, its own test CA and its own
// token. It does not listen: call [Server.Start]. Call [Server.Close] when
// done. It panics if it cannot make its certificates.
func NewServer(opts ...Option) *Server {
	ca, leaf, err := testca.ForLoopback("azkvtest CA")
	if err != nil {
		panic("azkvtest: " + err.Error())
	}
	tok := make([]byte, 24)
	if _, err := rand.Read(tok); err != nil {
		panic("azkvtest: " + err.Error())
	}
	s := &Server{
		ca:      ca,
		leaf:    leaf,
		token:   "azkvtest-token-" + hex.EncodeToString(tok),
		closed:  make(chan struct{}),
		secrets: make(map[string]*secret),
		faults:  loopback.NewFaults[string, Fault](AllOperations),
	}
	s.cred = &Credential{token: s.token}
	for _, opt := range opts {
		opt(&s.cfg)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil // the server is always on loopback
	t.TLSClientConfig = &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
	s.transport = t
	return s
}

// Start serves s over HTTPS on a random port of 127.0.0.1 and returns s. It
// panics if s is already started or closed.
func (s *Server) Start() *Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		panic("azkvtest: Start after Close")
	}
	if s.ts != nil {
		panic("azkvtest: Server already started")
	}
	ts := httptest.NewUnstartedServer(s)
	ts.Listener = &gateListener{Listener: ts.Listener, s: s}
	ts.TLS = s.leaf.ServerConfig()
	// Clients that give up mid-handshake (a fetch timeout) are expected.
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	s.ts, s.url = ts, ts.URL
	return s
}

// URL returns the vault URL, such as "https://127.0.0.1:41234", or ""
// before [Server.Start].
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// Credential returns the credential that obtains the server's token.
func (s *Server) Credential() *Credential { return s.cred }

// Token returns the bearer token the server accepts, for tests that check
// it never appears in an error or a log line.
func (s *Server) Token() string { return s.token }

// CertPool returns a pool holding the server's CA certificate.
func (s *Server) CertPool() *x509.CertPool { return s.ca.Pool() }

// CACertPEM returns the server's CA certificate in PEM form, for clients
// that take a file.
func (s *Server) CACertPEM() []byte { return s.ca.CertPEM() }

// HTTPClient returns an HTTP client that trusts the server's CA and uses no
// proxy. [Server.Close] drops its idle connections.
func (s *Server) HTTPClient() *http.Client { return &http.Client{Transport: s.transport} }

// ClientOptions returns options for azsecrets.NewClient that reach s: the
// transport from [Server.HTTPClient] and DisableChallengeResourceVerification,
// since the challenge names Key Vault's resource (vault.azure.net) and the
// vault is on 127.0.0.1. Everything else, the retry policy included, is
// the SDK's default. The caller may change the result.
func (s *Server) ClientOptions() *azsecrets.ClientOptions {
	return &azsecrets.ClientOptions{
		ClientOptions:                        azcore.ClientOptions{Transport: s.HTTPClient()},
		DisableChallengeResourceVerification: true,
	}
}

// Client returns an azsecrets client for s with [Server.Credential] and
// [Server.ClientOptions]. It panics if s is not started.
func (s *Server) Client() *azsecrets.Client {
	url := s.URL()
	if url == "" {
		panic("azkvtest: Client called before Start")
	}
	c, err := azsecrets.NewClient(url, s.cred, s.ClientOptions())
	if err != nil {
		panic("azkvtest: " + err.Error())
	}
	return c
}

// Close ends requests that hang or wait for an injected latency, stops
// serving and drops the idle connections of clients from [Server.Client].
// Close is idempotent. The state stays readable.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		ts := s.ts
		s.mu.Unlock()

		close(s.closed)
		if ts != nil {
			ts.Close() // waits for handlers, which closed has released
		}
		s.transport.CloseIdleConnections()
	})
}

// SetDown takes the server down (true) or up again (false) without
// changing its address. While down it closes every connection as soon as
// it is accepted, and aborts requests on connections already open, so that
// clients see a reset, as from a vault that cannot be reached. Such
// connections count in [Server.Refused], not in [Server.Calls].
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	s.down = down
	ts := s.ts
	s.mu.Unlock()
	if down && ts != nil {
		ts.CloseClientConnections()
	}
}

func (s *Server) isDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		s.refused++
	}
	return s.down
}

// gateListener closes connections while the server is down.
type gateListener struct {
	net.Listener
	s *Server
}

func (l *gateListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || !l.s.isDown() {
			return c, err
		}
		c.Close()
	}
}

// InjectFault makes the next requests for op (an Op constant, or
// AllOperations for every operation without a fault of its own) fail as f
// says, replacing any fault op had. Requests that a fault affects count in
// [Server.Calls]. InjectFault panics if op is not an operation the server
// implements.
func (s *Server) InjectFault(op string, f Fault) {
	if op != AllOperations && !knownOp(op) {
		panic(fmt.Sprintf("azkvtest: InjectFault: unknown operation %q", op))
	}
	s.faults.Set(op, f, f.Count)
}

// ClearFaults removes every injected fault.
func (s *Server) ClearFaults() { s.faults.Clear() }

// Calls returns how many requests for op carried the server's token since
// the server was made or since [Server.ResetCalls], whether they succeeded,
// failed or met an injected fault. The client's retries are separate
// requests; its unauthenticated first request is counted by
// [Server.Challenges] instead.
func (s *Server) Calls(op string) int64 { return s.calls.Of(op) }

// TotalCalls returns the sum of [Server.Calls] over all operations.
func (s *Server) TotalCalls() int64 { return s.calls.Total() }

// Challenges returns how many requests were answered 401 with the
// authentication challenge because they carried no token or a wrong one:
// one per new client, before its first authorized request.
func (s *Server) Challenges() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.challenges
}

// Refused returns how many connections and requests were closed because
// the server was down (see [Server.SetDown]).
func (s *Server) Refused() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// ResetCalls sets every counter to zero.
func (s *Server) ResetCalls() {
	s.calls.Reset()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.challenges, s.refused = 0, 0
}

// apiError is a Key Vault error answer.
type apiError struct {
	status     int
	code       string
	innerCode  string
	message    string
	retryAfter time.Duration
	challenge  bool // add the WWW-Authenticate challenge
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func newAPIError(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

func errBadParameter(format string, args ...any) *apiError {
	return newAPIError(http.StatusBadRequest, "BadParameter", format, args...)
}

func errSecretNotFound(nameOrID string) *apiError {
	return newAPIError(http.StatusNotFound, "SecretNotFound",
		"A secret with (name/id) %s was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command.", nameOrID)
}

func errUnauthorized(message string) *apiError {
	return &apiError{status: http.StatusUnauthorized, code: "Unauthorized", message: message, challenge: true}
}

// faultError builds the error answer that f asks for, or nil.
func faultError(f Fault) *apiError {
	if f.Status == 0 {
		return nil
	}
	e := &apiError{status: f.Status, code: f.Code, innerCode: f.InnerCode, message: f.Message, retryAfter: f.RetryAfter}
	var msg string
	switch f.Status {
	case http.StatusUnauthorized:
		e.challenge = true
		e.code, msg = or(e.code, "Unauthorized"), "AKV10022: Invalid audience (injected fault)."
	case http.StatusForbidden:
		e.code, e.innerCode = or(e.code, "Forbidden"), or(e.innerCode, "ForbiddenByRbac")
		msg = "Caller is not authorized to perform action on resource (injected fault). Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'"
	case http.StatusNotFound:
		e.code, msg = or(e.code, "NotFound"), "Not found (injected fault)."
	case http.StatusTooManyRequests:
		e.code, msg = or(e.code, "Throttled"), "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached (injected fault)."
	case http.StatusInternalServerError:
		e.code, msg = or(e.code, "InternalServerError"), "Internal server error (injected fault)."
	case http.StatusServiceUnavailable:
		e.code, msg = or(e.code, "ServiceUnavailable"), "The service is unavailable (injected fault)."
	default:
		e.code, msg = or(e.code, "BadParameter"), "Injected fault."
	}
	e.message = or(e.message, msg)
	return e
}

func or(s, otherwise string) string {
	if s == "" {
		return otherwise
	}
	return s
}

// route is what a request asks for.
type route struct {
	op      string
	name    string
	version string // "" for the latest
}

// parseRoute maps a method and path to an operation, or returns an error
// answer.
func parseRoute(method, path string) (route, *apiError) {
	rest, ok := strings.CutPrefix(path, "/secrets/")
	if !ok {
		return route{}, errBadParameter("azkvtest implements only /secrets/{name}[/{version}], not %q", path)
	}
	parts := strings.Split(rest, "/")
	if len(parts) > 2 {
		return route{}, errBadParameter("the request URI %q has too many segments", path)
	}
	r := route{name: parts[0]}
	if len(parts) == 2 {
		r.version = parts[1]
	}
	if !validName.MatchString(r.name) {
		return route{}, errBadParameter("The request URI contains an invalid name: %s", r.name)
	}
	switch {
	case method == http.MethodGet && r.version == "versions":
		r.op, r.version = OpListSecretPropertiesVersions, ""
	case method == http.MethodGet:
		r.op = OpGetSecret
	case method == http.MethodPut && r.version == "":
		r.op = OpSetSecret
	case method == http.MethodPatch:
		r.op = OpUpdateSecretProperties
	case method == http.MethodDelete && r.version == "":
		r.op = OpDeleteSecret
	default:
		return route{}, newAPIError(http.StatusMethodNotAllowed, "BadParameter", "method %s is not allowed on %q", method, path)
	}
	return r, nil
}

// ServeHTTP implements the Key Vault secrets REST API: it answers requests
// without a valid bearer token with the challenge, and the others with the
// operation's answer.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("x-ms-request-id", newVersionID())
	w.Header().Set("x-ms-keyvault-service-version", "1.9.0.0")
	rt, status, code := s.serve(w, r)
	if l := s.cfg.logger; l != nil {
		l.LogAttrs(r.Context(), slog.LevelDebug, "azkvtest request",
			slog.String("method", r.Method), slog.String("op", rt.op),
			slog.String("name", rt.name), slog.String("version", rt.version),
			slog.Int("status", status), slog.String("error_code", code))
	}
}

// serve answers one request and reports what it did, for the log.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) (rt route, status int, code string) {
	reply := func(e *apiError) (route, int, string) {
		s.writeError(w, e)
		return rt, e.status, e.code
	}
	if s.isDown() {
		panic(http.ErrAbortHandler)
	}
	rt, apiErr := parseRoute(r.Method, r.URL.Path)
	if apiErr != nil {
		return reply(apiErr)
	}
	if !s.authorized(r) {
		s.mu.Lock()
		s.challenges++
		s.mu.Unlock()
		if r.Header.Get("Authorization") == "" {
			return reply(errUnauthorized("AKV10000: Request is missing a Bearer or PoP token."))
		}
		return reply(errUnauthorized("AKV10032: Invalid issuer or token."))
	}
	if r.URL.Query().Get("api-version") == "" {
		return reply(errBadParameter("The api-version query parameter is missing."))
	}
	var body []byte
	if r.Method == http.MethodPut || r.Method == http.MethodPatch {
		var err error
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
		if err != nil {
			return reply(errBadParameter("cannot read the request body"))
		}
	}

	s.calls.Add(rt.op)
	fault, faulted := s.faults.Take(rt.op)
	if faulted {
		if !loopback.Wait(r.Context(), s.closed, fault.Latency, fault.Hang) || fault.Drop {
			// The client gave up, the server is closing, or the fault
			// drops the connection: no answer.
			panic(http.ErrAbortHandler)
		}
		if fault.MalformedBody {
			n := http.StatusOK
			if fault.Status != 0 {
				n = fault.Status
			}
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(n)
			io.WriteString(w, `{"value":"trunc`)
			return rt, n, "MalformedBody"
		}
		if e := faultError(fault); e != nil {
			return reply(e)
		}
	}

	out, apiErr := s.dispatch(rt, body)
	if apiErr != nil {
		return reply(apiErr)
	}
	writeJSON(w, http.StatusOK, out)
	return rt, http.StatusOK, ""
}

// authorized reports whether r carries the server's bearer token.
func (s *Server) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(tok), []byte(s.token)) == 1
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only programming errors get here; the message holds no value.
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"InternalServerError","message":"azkvtest: encoding the answer failed"}}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b)
}

type errorBody struct {
	Error struct {
		Code       string `json:"code"`
		Message    string `json:"message"`
		InnerError *struct {
			Code string `json:"code"`
		} `json:"innererror,omitempty"`
	} `json:"error"`
}

func (s *Server) writeError(w http.ResponseWriter, e *apiError) {
	var b errorBody
	b.Error.Code, b.Error.Message = e.code, e.message
	if e.innerCode != "" {
		b.Error.InnerError = &struct {
			Code string `json:"code"`
		}{e.innerCode}
	}
	if e.challenge {
		w.Header().Set("WWW-Authenticate", `Bearer authorization="`+Authority+`", resource="`+Resource+`"`)
	}
	if e.retryAfter > 0 {
		secs := (e.retryAfter + time.Second - 1) / time.Second
		w.Header().Set("Retry-After", strconv.FormatInt(int64(secs), 10))
	}
	writeJSON(w, e.status, b)
}
