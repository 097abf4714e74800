package vaulttest

import (
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/pgrotate/rotating/internal/loopback"
	"github.com/pgrotate/rotating/internal/testca"
)

// Op names a kind of request, for [Server.Calls] and [Server.InjectFault].
type Op string

// The operations the server implements. Their values are the paths (or a
// short name for a family of paths) below the mounts.
const (
	OpCreds        Op = "database/creds"        // GET <db>/creds/:role
	OpStaticCreds  Op = "database/static-creds" // GET <db>/static-creds/:name
	OpRotateRole   Op = "database/rotate-role"  // POST <db>/rotate-role/:name
	OpLeaseRenew   Op = "sys/leases/renew"      // PUT sys/leases/renew
	OpLeaseLookup  Op = "sys/leases/lookup"     // PUT sys/leases/lookup
	OpLeaseRevoke  Op = "sys/leases/revoke"     // PUT sys/leases/revoke
	OpKVRead       Op = "kv/read"               // GET <kv>/data/:path
	OpKVWrite      Op = "kv/write"              // POST <kv>/data/:path
	OpKVDelete     Op = "kv/delete"             // DELETE <kv>/data/:path, POST <kv>/delete|undelete|destroy/:path, DELETE <kv>/metadata/:path
	OpKVMetadata   Op = "kv/metadata"           // GET <kv>/metadata/:path
	OpLookupSelf   Op = "auth/token/lookup-self"
	OpRenewSelf    Op = "auth/token/renew-self"
	OpRevokeSelf   Op = "auth/token/revoke-self"
	OpTokenCreate  Op = "auth/token/create"
	OpAppRoleLogin Op = "auth/approle/login"
	OpK8sLogin     Op = "auth/kubernetes/login"
	OpSys          Op = "sys" // sys/health, sys/seal-status, sys/internal/ui/mounts/:path

	// AllOperations makes [Server.InjectFault] apply to every operation
	// that has no fault of its own.
	AllOperations Op = "*"
)

var knownOps = map[Op]bool{
	OpCreds: true, OpStaticCreds: true, OpRotateRole: true,
	OpLeaseRenew: true, OpLeaseLookup: true, OpLeaseRevoke: true,
	OpKVRead: true, OpKVWrite: true, OpKVDelete: true, OpKVMetadata: true,
	OpLookupSelf: true, OpRenewSelf: true, OpRevokeSelf: true, OpTokenCreate: true,
	OpAppRoleLogin: true, OpK8sLogin: true, OpSys: true,
}

// maxRequestBody bounds a request body.
const maxRequestBody = 1 << 20

// Fault is a failure that [Server.InjectFault] makes an operation produce:
// first the Latency, then, if Status is set, an error answer instead of
// the operation's.
type Fault struct {
	// Latency delays the request before it runs. If the client gives up
	// (the request's context ends) or the server closes first, the
	// connection is dropped without an answer.
	Latency time.Duration

	// Status is the HTTP status of the error answer: 403 answers
	// "permission denied", 503 "Vault is sealed", others Vault's
	// "internal error", unless Errors says otherwise. Zero means no error
	// answer: the operation runs after the Latency.
	Status int

	// Errors is the "errors" list of the answer.
	Errors []string

	// Count limits the fault to the next Count requests of the operation;
	// zero means every request until [Server.ClearFaults].
	Count int
}

// Server is a local server that speaks HashiCorp Vault's HTTP API for the
// database secrets engine (backed by a real PostgreSQL), KV version 2,
// leases, tokens and the AppRole and Kubernetes logins. See the package
// documentation. All methods are safe for concurrent use.
type Server struct {
	cfg  config
	db   backend      // nil without a database
	ca   *testca.CA   // nil without WithTLS
	leaf *testca.Leaf // the server's certificate, signed by ca
	root string       // the root token's id

	// ctx is cancelled at the end of Close; revocations and rotations run
	// on it. closing is closed at the start of Close and ends delayed
	// requests.
	ctx     context.Context
	cancel  context.CancelFunc
	closing chan struct{}

	// work counts running handlers, timer callbacks and revocations.
	// Add only with mu held and !closed, so that Close's Wait sees all.
	work sync.WaitGroup

	closeOnce sync.Once

	// sw serves on the address fixed by Start, kept across Down and Up.
	// faults and calls have locks of their own, taken with or without mu.
	sw     *loopback.Switch
	faults *loopback.Faults[Op, Fault]
	calls  loopback.Calls[Op] // unknown paths count in the total only

	// mu guards everything below, and the mutable fields of the leases,
	// tokens, roles and KV entries these maps hold. It is never held
	// across a PostgreSQL statement, a sleep, or an answer being written.
	mu         sync.Mutex
	closed     bool // no new work may start
	sealed     bool
	namespaces map[string]int64
	roles      map[string]*dynamicRole
	statics    map[string]*staticRole
	leases     map[string]*lease
	leaseOrder []*lease
	tokens     map[string]*token // by id
	byAccessor map[string]*token
	appRoles   map[string]*appRole // by name
	k8sRoles   map[string]*k8sRole
	k8sKey     []byte // HMAC key that signs KubernetesJWT tokens
	kv         map[string]*kvEntry
}

var _ http.Handler = (*Server)(nil)

// NewServer returns a server whose database secrets engine manages roles
// on the PostgreSQL server db connects to, or a server without a database
// engine (KV and tokens only) if db is nil. db's user must be able to
// create and drop roles and end other roles' sessions: a superuser, or a
// role with CREATEROLE that is a member of pg_signal_backend. The server
// does not close db.
//
// NewServer does not listen: call [Server.Start], or mount the server as
// an [http.Handler]. Call [Server.Close] when done.
func NewServer(db *sql.DB, opts ...Option) (*Server, error) {
	cfg := defaultConfig()
	for _, opt := range opts {
		if err := opt(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.dbMount == cfg.kvMount {
		return nil, fmt.Errorf("vaulttest: the database and KV engines are both mounted at %q", cfg.dbMount)
	}
	s := &Server{
		cfg:        cfg,
		closing:    make(chan struct{}),
		faults:     loopback.NewFaults[Op, Fault](AllOperations),
		namespaces: make(map[string]int64),
		roles:      make(map[string]*dynamicRole),
		statics:    make(map[string]*staticRole),
		leases:     make(map[string]*lease),
		tokens:     make(map[string]*token),
		byAccessor: make(map[string]*token),
		appRoles:   make(map[string]*appRole),
		k8sRoles:   make(map[string]*k8sRole),
		k8sKey:     []byte(randomString(32)),
		kv:         make(map[string]*kvEntry),
	}
	if db != nil {
		s.db = &pgBackend{db: db}
	}
	if cfg.tls {
		ca, leaf, err := testca.ForLoopback("vaulttest CA")
		if err != nil {
			return nil, fmt.Errorf("vaulttest: %w", err)
		}
		s.ca, s.leaf = ca, leaf
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.sw = loopback.NewSwitch(s.serveOn)
	s.root = cfg.rootToken
	if s.root == "" {
		s.root = newToken()
	}
	root := &token{
		id: s.root, accessor: randomString(24), displayName: "root", path: "auth/token/root",
		policies: []string{"root"}, created: time.Now(), orphan: true,
		leases: make(map[*lease]struct{}), children: make(map[*token]struct{}),
	}
	s.tokens[root.id] = root
	s.byAccessor[root.accessor] = root
	return s, nil
}

// Start serves the server on the address of [WithAddr] (127.0.0.1 and a
// free port by default), with HTTPS if [WithTLS] was given. It returns an
// error if the server is already serving or closed, or if it cannot
// listen.
func (s *Server) Start() error {
	switch err := s.sw.Start(s.ctx, s.cfg.addr); {
	case errors.Is(err, loopback.ErrClosed):
		return errors.New("vaulttest: Start after Close")
	case errors.Is(err, loopback.ErrStarted):
		return errors.New("vaulttest: Server already started")
	case err != nil:
		return fmt.Errorf("vaulttest: %w", err)
	}
	return nil
}

// serveOn serves on ln (with TLS if [WithTLS] was given) until the
// returned function is called, for Start and Up.
func (s *Server) serveOn(ln net.Listener) (stop func()) {
	if s.leaf != nil {
		ln = tls.NewListener(ln, s.leaf.ServerConfig())
	}
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
		// A client that does not trust the CA makes the TLS handshake
		// fail; that is the client's error to report, not ours to print.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	return loopback.Go(ln, hs.Serve, func() { hs.Close() })
}

// URL returns the server's address for VAULT_ADDR, such as
// "http://127.0.0.1:41234" (https with [WithTLS]), or "" before
// [Server.Start]. It stays the same while the server is down.
func (s *Server) URL() string {
	addr := s.sw.Addr()
	if addr == "" {
		return ""
	}
	if s.ca != nil {
		return "https://" + addr
	}
	return "http://" + addr
}

// RootToken returns the root token's id: it never expires and may do
// everything. Tokens for the application under test are better made with
// [Server.CreateToken] or a login.
func (s *Server) RootToken() string { return s.root }

// CACert returns the PEM certificate of the CA that signed the server's
// certificate, for VAULT_CACERT or api.TLSConfig.CACertBytes, or nil
// without [WithTLS].
func (s *Server) CACert() []byte {
	if s.ca == nil {
		return nil
	}
	return s.ca.CertPEM()
}

// WriteCACert writes [Server.CACert] to path (mode 0644), for VAULT_CACERT.
func (s *Server) WriteCACert(path string) error {
	if s.ca == nil {
		return errors.New("vaulttest: WriteCACert: the server has no TLS (see WithTLS)")
	}
	return s.ca.WriteCert(path)
}

// Config returns a vault/api client configuration for the server: its
// address, and its CA with [WithTLS]; retries are off (MaxRetries 0) so
// that injected faults reach the caller at once. Like api.DefaultConfig,
// which it starts from, it reads the VAULT_* environment variables, then
// overrides the address and TLS settings.
func (s *Server) Config() (*api.Config, error) {
	url := s.URL()
	if url == "" {
		return nil, errors.New("vaulttest: Config called before Start")
	}
	cfg := api.DefaultConfig()
	if cfg.Error != nil {
		return nil, cfg.Error
	}
	cfg.Address = url
	cfg.MaxRetries = 0
	if s.ca != nil {
		if err := cfg.ConfigureTLS(&api.TLSConfig{CACertBytes: s.ca.CertPEM()}); err != nil {
			return nil, err
		}
	} else {
		// No proxy: the server is always on loopback.
		if t, ok := cfg.HttpClient.Transport.(*http.Transport); ok {
			t.Proxy = nil
		}
	}
	return cfg, nil
}

// Client returns a vault/api client from [Server.Config] that uses token
// (the root token if empty), and the namespace of [WithNamespace] if set.
func (s *Server) Client(token string) (*api.Client, error) {
	cfg, err := s.Config()
	if err != nil {
		return nil, err
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	if token == "" {
		token = s.root
	}
	c.SetToken(token)
	c.ClearNamespace()
	if s.cfg.requireNS {
		c.SetNamespace(s.cfg.namespace)
	}
	return c, nil
}

// Close stops serving (dropping open connections), ends delayed requests,
// waits for running handlers, revokes the leases that have not ended
// (unless [WithKeepLeasesOnClose]), and stops every timer: afterwards no
// goroutine of the server is left. It returns the first revocation error,
// if any. Close is idempotent; the state stays readable.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closing)
		s.sw.Close()

		// Stop new work and every timer, then wait for what runs.
		s.mu.Lock()
		s.closed = true
		s.stopTimersLocked()
		s.mu.Unlock()
		s.work.Wait()

		// Handlers that finished during the Wait may have made leases.
		s.mu.Lock()
		s.stopTimersLocked()
		var active []*lease
		for _, l := range s.leaseOrder {
			if l.state != leaseEnded {
				active = append(active, l)
			}
		}
		s.mu.Unlock()
		if !s.cfg.keepLeases && s.db != nil {
			ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
			for _, l := range active {
				if e := s.finishRevocation(ctx, l); e != nil && err == nil {
					err = e
				}
			}
			cancel()
		}
		s.cancel()
	})
	return err
}

// stopTimersLocked stops the timers of every lease, token and static role.
func (s *Server) stopTimersLocked() {
	for _, l := range s.leaseOrder {
		if l.timer != nil {
			l.timer.Stop()
		}
	}
	for _, t := range s.tokens {
		if t.timer != nil {
			t.timer.Stop()
		}
	}
	for _, r := range s.statics {
		if r.timer != nil {
			r.timer.Stop()
		}
	}
}

// enter registers one unit of work, unless the server is closed.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.work.Add(1)
	return true
}

// Down closes the listener and every open connection, as if the Vault
// server had stopped: new connections are refused until [Server.Up].
// Requests in flight are cut off. Down is a no-op if the server is down
// already or not started.
func (s *Server) Down() {
	if s.sw.Down() {
		s.logInfo("server down", slog.String("addr", s.sw.Addr()))
	}
}

// Up listens again on the address [Server.Down] closed, so [Server.URL]
// stays the same. It is a no-op if the server is serving.
func (s *Server) Up() error {
	wasUp := s.sw.IsUp()
	switch err := s.sw.Up(s.ctx); {
	case errors.Is(err, loopback.ErrClosed):
		return errors.New("vaulttest: Up after Close")
	case errors.Is(err, loopback.ErrNotStarted):
		return errors.New("vaulttest: Up before Start")
	case err != nil:
		return fmt.Errorf("vaulttest: %w", err)
	}
	if !wasUp {
		s.logInfo("server up", slog.String("addr", s.sw.Addr()))
	}
	return nil
}

// Seal makes every request but sys/health and sys/seal-status answer 503
// {"errors":["Vault is sealed"]} until [Server.Unseal] or
// [Server.ClearFaults]. Unlike a real sealed Vault, the server goes on
// ending leases and rotating static roles on time.
func (s *Server) Seal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sealed = true
}

// Unseal undoes [Server.Seal].
func (s *Server) Unseal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sealed = false
}

// InjectFault makes the next requests of op (or of every operation
// without a fault of its own, for [AllOperations]) fail as f says,
// replacing any fault op had. Faulted requests still count in
// [Server.Calls]. It panics for an unknown op.
func (s *Server) InjectFault(op Op, f Fault) {
	if op != AllOperations && !knownOps[op] {
		panic(fmt.Sprintf("vaulttest: InjectFault: unknown operation %q", op))
	}
	s.faults.Set(op, f, f.Count)
}

// ClearFaults removes every injected fault and unseals the server. A
// server that is down stays down until [Server.Up].
func (s *Server) ClearFaults() {
	s.faults.Clear()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sealed = false
}

// Calls returns how many requests of op reached the server since it was
// made or since [Server.ResetCalls], whatever their answer (faults,
// refusals and errors included). The client's retries are separate
// requests.
func (s *Server) Calls(op Op) int64 { return s.calls.Of(op) }

// TotalCalls returns the number of requests of every operation, unknown
// paths included.
func (s *Server) TotalCalls() int64 { return s.calls.Total() }

// ResetCalls sets the request counters of [Server.Calls],
// [Server.TotalCalls] and [Server.Namespaces] to zero.
func (s *Server) ResetCalls() {
	s.calls.Reset()
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.namespaces)
}

// Namespaces returns how many requests named each namespace in
// X-Vault-Namespace (trimmed of slashes); requests without one count
// under "".
func (s *Server) Namespaces() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int64, len(s.namespaces))
	for k, v := range s.namespaces {
		out[k] = v
	}
	return out
}

func (s *Server) logInfo(msg string, attrs ...slog.Attr) {
	if l := s.cfg.logger; l != nil {
		l.LogAttrs(context.Background(), slog.LevelInfo, msg, attrs...)
	}
}

func (s *Server) logWarn(msg string, attrs ...slog.Attr) {
	if l := s.cfg.logger; l != nil {
		l.LogAttrs(context.Background(), slog.LevelWarn, msg, attrs...)
	}
}

// apiError is an error answer: an HTTP status and Vault's "errors" list.
type apiError struct {
	status int
	errs   []string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d: %s", e.status, strings.Join(e.errs, "; ")) }

func errorf(status int, format string, args ...any) *apiError {
	return &apiError{status: status, errs: []string{fmt.Sprintf(format, args...)}}
}

func badRequest(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, format, args...)
}

// Vault's answers for a missing, unknown or expired token, and for a token
// whose policies do not allow the request.
var (
	errPermissionDenied = errorf(http.StatusForbidden, "permission denied")
	errSealed           = errorf(http.StatusServiceUnavailable, "Vault is sealed")
	errUnsupported      = errorf(http.StatusMethodNotAllowed, "1 error occurred:\n\t* unsupported operation\n\n")
)

// internalError is Vault's answer to an error a backend returned: 500 and
// the error's text, which the caller has redacted.
func internalError(err error) *apiError {
	return errorf(http.StatusInternalServerError, "1 error occurred:\n\t* %s\n\n", err.Error())
}

func faultError(f Fault) *apiError {
	if f.Status == 0 {
		return nil
	}
	e := &apiError{status: f.Status, errs: f.Errors}
	if len(e.errs) == 0 {
		switch f.Status {
		case http.StatusForbidden:
			e.errs = []string{"permission denied"}
		case http.StatusServiceUnavailable:
			e.errs = []string{"Vault is sealed"}
		case http.StatusTooManyRequests:
			e.errs = []string{"request path \"\": rate limit quota exceeded"}
		default:
			e.errs = []string{"internal error"}
		}
	}
	return e
}

// envelope is Vault's answer body.
type envelope struct {
	RequestID     string     `json:"request_id"`
	LeaseID       string     `json:"lease_id"`
	Renewable     bool       `json:"renewable"`
	LeaseDuration int64      `json:"lease_duration"`
	Data          any        `json:"data"`
	WrapInfo      any        `json:"wrap_info"`
	Warnings      []string   `json:"warnings"`
	Auth          *authBlock `json:"auth"`
	MountType     string     `json:"mount_type"`
}

// authBlock is the "auth" part of a login or token renewal answer.
type authBlock struct {
	ClientToken    string            `json:"client_token"`
	Accessor       string            `json:"accessor"`
	Policies       []string          `json:"policies"`
	TokenPolicies  []string          `json:"token_policies"`
	Metadata       map[string]string `json:"metadata"`
	LeaseDuration  int64             `json:"lease_duration"`
	Renewable      bool              `json:"renewable"`
	EntityID       string            `json:"entity_id"`
	TokenType      string            `json:"token_type"`
	Orphan         bool              `json:"orphan"`
	MFARequirement any               `json:"mfa_requirement"`
	NumUses        int               `json:"num_uses"`
}

// reply is what a handler answers: a body (an *envelope, or the bare
// object of sys/health and sys/seal-status) with status 200 or another
// (404 with an envelope is Vault's answer for a deleted KV version), or
// 204 and no body.
type reply struct {
	status int // 0 means 200
	body   any
}

func ok(e *envelope) (reply, *apiError) { return reply{body: e}, nil }

func noContent() (reply, *apiError) { return reply{status: http.StatusNoContent}, nil }

// request is one parsed request.
type request struct {
	ctx     context.Context
	method  string
	path    string // below /v1/, without slashes around
	query   map[string][]string
	body    map[string]any
	token   *token // the caller's token, for authenticated paths
	rawBody []byte
}

// ServeHTTP serves Vault's HTTP API below /v1/. After [Server.Close] it
// answers every request 503, as a sealed Vault does.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		writeError(w, errSealed)
		return
	}
	defer s.work.Done()
	op, path, status := s.serve(w, r)
	if l := s.cfg.logger; l != nil {
		l.LogAttrs(r.Context(), slog.LevelDebug, "vaulttest request",
			slog.String("op", string(op)), slog.String("method", r.Method), slog.String("path", path),
			slog.Int("status", status), slog.String("namespace", namespaceOf(r)))
	}
}

func namespaceOf(r *http.Request) string {
	return strings.Trim(r.Header.Get(api.NamespaceHeaderName), "/")
}

// serve answers one request and reports what it did, for the log. The
// path it reports is the request's, which holds no secret: tokens travel
// in headers and bodies only.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) (Op, string, int) {
	path, isAPI := strings.CutPrefix(r.URL.Path, "/v1/")
	path = strings.Trim(path, "/")
	method := r.Method
	if method == http.MethodGet && r.URL.Query().Get("list") == "true" || method == "LIST" {
		method = "LIST"
	}
	rt := s.route(method, path)
	ns := namespaceOf(r)

	var fault Fault
	var faulted bool
	if rt.op != "" {
		s.calls.Add(rt.op)
		fault, faulted = s.faults.Take(rt.op)
	} else {
		s.calls.AddOther()
	}
	s.mu.Lock()
	s.namespaces[ns]++
	sealed := s.sealed
	s.mu.Unlock()

	fail := func(e *apiError) (Op, string, int) {
		writeError(w, e)
		return rt.op, path, e.status
	}
	if !isAPI {
		return fail(errorf(http.StatusNotFound, "404 page not found"))
	}
	if faulted {
		if !loopback.Wait(r.Context(), s.closing, fault.Latency, false) {
			// The client gave up or the server is closing: drop the
			// connection rather than answer nobody.
			panic(http.ErrAbortHandler)
		}
		if e := faultError(fault); e != nil {
			return fail(e)
		}
	}
	if sealed && !rt.sealOK {
		return fail(errSealed)
	}
	if rt.err != nil {
		return fail(rt.err)
	}
	if s.cfg.requireNS && ns != s.cfg.namespace && !rt.sealOK {
		return fail(errPermissionDenied)
	}

	req := &request{ctx: r.Context(), method: method, path: path, query: r.URL.Query()}
	if rt.auth {
		t := s.authenticate(r)
		if t == nil {
			return fail(errPermissionDenied)
		}
		req.token = t
	}
	if method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
		if err != nil {
			return fail(badRequest("failed to read request body"))
		}
		req.rawBody = b
		if len(strings.TrimSpace(string(b))) > 0 {
			if err := json.Unmarshal(b, &req.body); err != nil {
				return fail(badRequest("failed to parse JSON input: %s", jsonProblem(err)))
			}
		}
	}
	if req.body == nil {
		req.body = map[string]any{}
	}
	out, e := rt.handle(req)
	if e != nil {
		return fail(e)
	}
	status := out.status
	if status == 0 {
		status = http.StatusOK
	}
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return rt.op, path, status
	}
	if env, ok := out.body.(*envelope); ok && env.RequestID == "" {
		env.RequestID = newUUID()
	}
	writeJSON(w, status, out.body)
	return rt.op, path, status
}

// jsonProblem describes a JSON decoding error without quoting the input.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Sprintf("invalid JSON at byte offset %d", syn.Offset)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return "the body must be a JSON object"
	}
	return "invalid JSON"
}

// authenticate returns the live token the request carries, or nil.
func (s *Server) authenticate(r *http.Request) *token {
	id := r.Header.Get(api.AuthHeaderName)
	if id == "" {
		if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			id = v
		}
	}
	if id == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tokens[id]
	if t == nil || t.revoked || t.expiredLocked(time.Now()) {
		return nil
	}
	return t
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only programming errors get here; the message holds no value.
		writeError(w, errorf(http.StatusInternalServerError, "vaulttest: encoding the answer: %v", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b)
}

func writeError(w http.ResponseWriter, e *apiError) {
	errs := e.errs
	if errs == nil {
		errs = []string{}
	}
	b, _ := json.Marshal(struct {
		Errors []string `json:"errors"`
	}{errs})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(e.status)
	w.Write(b)
}

// route is how one request is handled.
type route struct {
	op     Op
	auth   bool // needs a live token
	sealOK bool // answered while sealed, and in any namespace
	err    *apiError
	handle func(*request) (reply, *apiError)
}

// route maps a method and path to its handler. An unknown path answers
// Vault's 404; a known path with a method it does not serve, 405.
func (s *Server) route(method, path string) route {
	read := method == http.MethodGet
	write := method == http.MethodPost || method == http.MethodPut
	del := method == http.MethodDelete
	only := func(allowed bool, rt route) route {
		rt.auth = rt.auth || !rt.sealOK
		if !allowed {
			rt.err = errUnsupported
		}
		return rt
	}
	noRoute := route{err: errorf(http.StatusNotFound, "no handler for route %q. route entry not found.", path)}
	head, rest, _ := strings.Cut(path, "/")
	switch head {
	case "sys":
		switch {
		case rest == "health":
			return only(read, route{op: OpSys, sealOK: true, handle: s.handleHealth})
		case rest == "seal-status":
			return only(read, route{op: OpSys, sealOK: true, handle: s.handleSealStatus})
		case strings.HasPrefix(rest, "internal/ui/mounts/"):
			return only(read, route{op: OpSys, handle: s.handleUIMounts})
		case rest == "leases/renew" || strings.HasPrefix(rest, "leases/renew/") || strings.HasPrefix(rest, "renew/") || rest == "renew":
			return only(write, route{op: OpLeaseRenew, handle: s.handleLeaseRenew})
		case rest == "leases/lookup":
			return only(write, route{op: OpLeaseLookup, handle: s.handleLeaseLookup})
		case rest == "leases/revoke" || strings.HasPrefix(rest, "leases/revoke/") || strings.HasPrefix(rest, "revoke/"):
			return only(write, route{op: OpLeaseRevoke, handle: s.handleLeaseRevoke})
		}
		return noRoute
	case "auth":
		switch rest {
		case "token/lookup-self":
			return only(read || write, route{op: OpLookupSelf, handle: s.handleLookupSelf})
		case "token/renew-self":
			return only(write, route{op: OpRenewSelf, handle: s.handleRenewSelf})
		case "token/revoke-self":
			return only(write, route{op: OpRevokeSelf, handle: s.handleRevokeSelf})
		case "token/create", "token/create-orphan":
			return only(write, route{op: OpTokenCreate, handle: s.handleTokenCreate})
		case "approle/login":
			rt := only(write, route{op: OpAppRoleLogin, handle: s.handleAppRoleLogin})
			rt.auth = false
			return rt
		case "kubernetes/login":
			rt := only(write, route{op: OpK8sLogin, handle: s.handleK8sLogin})
			rt.auth = false
			return rt
		}
		return noRoute
	}
	if sub, ok := cutMount(path, s.cfg.dbMount); ok {
		kind, name, _ := strings.Cut(sub, "/")
		if name == "" || strings.Contains(name, "/") {
			return noRoute
		}
		switch kind {
		case "creds":
			return only(read, route{op: OpCreds, handle: s.handleCreds})
		case "static-creds":
			return only(read, route{op: OpStaticCreds, handle: s.handleStaticCreds})
		case "rotate-role":
			return only(write, route{op: OpRotateRole, handle: s.handleRotateRole})
		}
		return noRoute
	}
	if sub, ok := cutMount(path, s.cfg.kvMount); ok {
		kind, name, _ := strings.Cut(sub, "/")
		if name == "" {
			return noRoute
		}
		switch kind {
		case "data":
			switch {
			case read:
				return only(true, route{op: OpKVRead, handle: s.handleKVRead})
			case del:
				return only(true, route{op: OpKVDelete, handle: s.handleKVDeleteLatest})
			default:
				return only(write, route{op: OpKVWrite, handle: s.handleKVWrite})
			}
		case "delete", "undelete", "destroy":
			return only(write, route{op: OpKVDelete, handle: s.handleKVVersions})
		case "metadata":
			if del {
				return only(true, route{op: OpKVDelete, handle: s.handleKVDeleteMetadata})
			}
			return only(read, route{op: OpKVMetadata, handle: s.handleKVMetadata})
		}
		return noRoute
	}
	return noRoute
}

// cutMount returns path below mount.
func cutMount(path, mount string) (string, bool) {
	rest, ok := strings.CutPrefix(path, mount+"/")
	return rest, ok
}

func (s *Server) handleHealth(r *request) (reply, *apiError) {
	s.mu.Lock()
	sealed := s.sealed
	s.mu.Unlock()
	// Vault answers sys/health with a bare object, not an envelope, and
	// with 503 while sealed; the caller may ask for other codes (the
	// api client asks for 299 so that a sealed server is not an error).
	status, param := http.StatusOK, "activecode"
	if sealed {
		status, param = http.StatusServiceUnavailable, "sealedcode"
	}
	if v := r.query[param]; len(v) > 0 {
		if n, err := strconv.Atoi(v[0]); err == nil && n >= 200 && n <= 599 {
			status = n
		}
	}
	return reply{status: status, body: map[string]any{"initialized": true, "sealed": sealed, "standby": false,
		"version": "1.21.0+vaulttest", "server_time_utc": time.Now().Unix(), "cluster_name": "vaulttest"}}, nil
}

func (s *Server) handleSealStatus(*request) (reply, *apiError) {
	s.mu.Lock()
	sealed := s.sealed
	s.mu.Unlock()
	return reply{body: map[string]any{"type": "shamir", "initialized": true, "sealed": sealed,
		"t": 1, "n": 1, "progress": 0, "version": "1.21.0+vaulttest", "storage_type": "inmem", "cluster_name": "vaulttest"}}, nil
}

// handleUIMounts answers the mount lookup the vault CLI's "kv" commands
// make to learn a KV mount's version.
func (s *Server) handleUIMounts(r *request) (reply, *apiError) {
	p := strings.TrimPrefix(r.path, "sys/internal/ui/mounts/")
	switch {
	case p == s.cfg.kvMount || strings.HasPrefix(p, s.cfg.kvMount+"/"):
		return ok(&envelope{Data: map[string]any{"type": "kv", "path": s.cfg.kvMount + "/", "options": map[string]string{"version": "2"}}})
	case p == s.cfg.dbMount || strings.HasPrefix(p, s.cfg.dbMount+"/"):
		return ok(&envelope{Data: map[string]any{"type": "database", "path": s.cfg.dbMount + "/", "options": nil}})
	}
	return reply{}, badRequest("no mount for path %q", p)
}
