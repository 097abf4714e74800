package awssmtest

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"
	"github.com/pgrotate/rotating/internal/loopback"
)

// The agent's defaults, as the AWS Secrets Manager Agent has them.
const (
	// DefaultAgentTTL is how long the agent serves a cached value before it
	// checks the version with DescribeSecret.
	DefaultAgentTTL = 300 * time.Second
	// DefaultAgentMaxConnections is the agent's max_conn.
	DefaultAgentMaxConnections = 800
	// DefaultAgentTimeout bounds the agent's calls to the store for one
	// request (the agent's bound on serving a request); a call that takes
	// longer is answered 504 TimeoutError.
	DefaultAgentTimeout = 61 * time.Second
)

// AgentTokenHeader is the request header that carries the agent's SSRF
// token. The agent also accepts the token in X-Vault-Token.
const AgentTokenHeader = "X-Aws-Parameters-Secrets-Token"

// agentTokenHeaders are the headers the agent looks for its token in, its
// ssrf_headers default.
var agentTokenHeaders = []string{AgentTokenHeader, "X-Vault-Token"}

// AgentOption configures an [Agent].
type AgentOption func(*agentConfig)

type agentConfig struct {
	token   string
	ttl     time.Duration
	maxConn int
	timeout time.Duration
	logger  *slog.Logger
}

// WithAgentToken sets the SSRF token the agent requires (default: a random
// one, see [Agent.Token]). It panics if token is empty.
func WithAgentToken(token string) AgentOption {
	if token == "" {
		panic("awssmtest: WithAgentToken: empty token")
	}
	return func(c *agentConfig) { c.token = token }
}

// WithAgentTTL sets how long a cached value is served before the agent
// checks it with DescribeSecret (the agent's ttl_seconds; default
// [DefaultAgentTTL]). Zero turns the cache off: every request calls
// GetSecretValue. It panics if ttl is negative.
func WithAgentTTL(ttl time.Duration) AgentOption {
	if ttl < 0 {
		panic("awssmtest: WithAgentTTL: negative TTL")
	}
	return func(c *agentConfig) { c.ttl = ttl }
}

// WithAgentMaxConnections sets how many requests the agent serves at once
// (the agent's max_conn; default [DefaultAgentMaxConnections]); more are
// answered 429. /ping may use two more. It panics if n < 1.
func WithAgentMaxConnections(n int) AgentOption {
	if n < 1 {
		panic("awssmtest: WithAgentMaxConnections: want at least 1")
	}
	return func(c *agentConfig) { c.maxConn = n }
}

// WithAgentTimeout bounds the agent's calls to the store for one request
// (default [DefaultAgentTimeout]); when it passes, the agent answers 504
// with __type TimeoutError. It panics if d <= 0.
func WithAgentTimeout(d time.Duration) AgentOption {
	if d <= 0 {
		panic("awssmtest: WithAgentTimeout: want a positive duration")
	}
	return func(c *agentConfig) { c.timeout = d }
}

// WithAgentLogger makes the agent log each request at debug level: path,
// secret id, stage, refreshNow, the cache's part (hit, revalidated, miss,
// refresh) and the status. It never logs a token or a secret value. The
// default is silent.
func WithAgentLogger(l *slog.Logger) AgentOption {
	return func(c *agentConfig) { c.logger = l }
}

// AgentStats counts what an [Agent] did since it was made or since
// [Agent.ResetStats].
type AgentStats struct {
	// Requests counts the requests for a secret (/secretsmanager/get and
	// /v1/...) that passed the connection limit and the token check,
	// whatever their answer.
	Requests int64
	// RefreshNow counts those of them that asked for refreshNow=true.
	RefreshNow int64
	// CacheHits counts the answers served from the cache within the TTL,
	// without calling the store.
	CacheHits int64
	// Revalidations counts the answers served from the cache after the TTL,
	// once a DescribeSecret call showed the cached version still current.
	Revalidations int64
	// StaleServed counts the answers served from the cache after the TTL
	// because the store failed with a transient error (throttling, 5xx, a
	// timeout), as the agent does by default (ignore_transient_errors).
	StaleServed int64
	// GetSecretValueCalls and DescribeSecretCalls count the agent's calls
	// to the store (each SDK call once; its retries are separate requests
	// in [Server.Calls]).
	GetSecretValueCalls int64
	DescribeSecretCalls int64
	// BadToken counts the requests answered 403 (missing or wrong token),
	// OverLimit those answered 429 (over the connection limit).
	BadToken  int64
	OverLimit int64
}

// Agent serves the local HTTP API of the AWS Secrets Manager Agent, which
// the AWS Parameters and Secrets Lambda extension shares, in front of a
// [Server]'s store: the one the Server's Secrets Manager API changes, so
// that a rotation done through that API is seen through the agent only
// once its TTL has passed, unless a request asks for refreshNow=true.
// Make one with [Server.NewAgent]. It implements [http.Handler]; all
// methods are safe for concurrent use.
//
// It answers
//
//	GET /secretsmanager/get?secretId=ID[&versionId=V][&versionStage=S][&refreshNow=true]
//	GET /v1/ID[?versionId=V][&versionStage=S][&refreshNow=true]
//	GET /ping
//
// with the agent's rules: the connection limit first (429 "Connection limit
// exceeded"), then, except for /ping, a request with X-Forwarded-For is
// refused (400) and the token must be in X-Aws-Parameters-Secrets-Token or
// X-Vault-Token (403 "Bad Token"); only GET (405); an unknown parameter or
// a missing secretId is 400. A secret's answer is GetSecretValue's JSON
// (ARN, Name, VersionId, SecretString or SecretBinary in base64,
// VersionStages, and CreatedDate as a string of epoch seconds, as the
// agent writes it). A store error is passed through with the store's HTTP
// status and a body {"__type":"<code>","message":"..."}; a store call that
// outlives [WithAgentTimeout] is 504 TimeoutError, a dropped one 502
// ConnectionError.
//
// The cache is keyed by (secretId, versionId, versionStage) as given. A
// value younger than the TTL is served as is. An older one is checked with
// DescribeSecret: if its version still carries the stage asked for
// (AWSCURRENT when none was), it is served and its TTL restarts; otherwise
// GetSecretValue is called. refreshNow=true always calls GetSecretValue and
// caches the answer; on an error it leaves the cache as it was. After the
// TTL, a transient store error (throttling, 5xx, a timeout) serves the
// cached value. Errors are never cached. Concurrent misses are not
// coalesced: each calls the store, as the agent's do.
//
// The agent calls the store in process, through the real SDK client and
// the Server's handler, so its calls count in [Server.Calls] and meet the
// faults [Server.InjectFault] sets, as a client's would. [Agent.Stats]
// counts them from the agent's side.
//
// Differences from the agent: the limit counts requests in flight (the
// agent counts open connections, idle keep-alive ones included); there is
// no cache size limit, no Lambda start_serving step and no configuration
// file.
type Agent struct {
	srv    *Server
	cfg    agentConfig
	store  *secretsmanager.Client // to srv, in process
	closed chan struct{}          // closed by Close; ends hanging and delayed requests
	ep     endpoint               // where a listens

	closeOnce sync.Once
	fault     loopback.Faults[struct{}, Fault] // one fault, for every request; a lock of its own

	// mu guards everything below. It is never held across a store call, a
	// wait or a write to a client.
	mu       sync.Mutex
	token    string
	inFlight int
	cache    map[agentKey]*agentEntry
	stats    AgentStats
}

var _ http.Handler = (*Agent)(nil)

// agentKey is what the agent caches by: the request's parameters as given.
type agentKey struct{ secretID, versionID, versionStage string }

// agentEntry is one cached answer and when it was fetched or revalidated.
type agentEntry struct {
	answer agentAnswer
	at     time.Time
}

// agentAnswer is the agent's JSON form of a GetSecretValue answer.
type agentAnswer struct {
	ARN           string   `json:"ARN"`
	Name          string   `json:"Name"`
	VersionID     string   `json:"VersionId"`
	SecretString  *string  `json:"SecretString,omitempty"`
	SecretBinary  []byte   `json:"SecretBinary,omitempty"` // base64, as []byte marshals
	VersionStages []string `json:"VersionStages,omitempty"`
	CreatedDate   string   `json:"CreatedDate,omitempty"` // epoch seconds as a string, as the agent writes it
}

// NewAgent returns an Agent in front of s's store. It does not listen:
// call [Agent.Start] or [Agent.Serve], or mount it as an [http.Handler].
// Call [Agent.Close] when done. The agent works whether or not s listens.
func (s *Server) NewAgent(opts ...AgentOption) *Agent {
	cfg := agentConfig{ttl: DefaultAgentTTL, maxConn: DefaultAgentMaxConnections, timeout: DefaultAgentTimeout}
	for _, opt := range opts {
		opt(&cfg)
	}
	if cfg.token == "" {
		var b [16]byte
		rand.Read(b[:])
		cfg.token = "awssmtest-agent-" + hex.EncodeToString(b[:])
	}
	a := &Agent{
		srv:    s,
		cfg:    cfg,
		closed: make(chan struct{}),
		token:  cfg.token,
		cache:  make(map[agentKey]*agentEntry),
	}
	a.ep = endpoint{name: "Agent", h: a, closed: a.closed}
	a.store = secretsmanager.New(secretsmanager.Options{
		Region: Region,
		// Never dialled: the transport hands requests to s's handler.
		BaseEndpoint: aws.String("http://awssmtest.invalid"),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "AKIAAWSSMTESTAGENT00", SecretAccessKey: "awssmtest-agent-dummy", Source: "awssmtest"}, nil
		}),
		HTTPClient: &http.Client{Transport: handlerTransport{s}},
	})
	return a
}

// Token returns the SSRF token the agent requires.
func (a *Agent) Token() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.token
}

// SetToken changes the token the agent requires, as an agent restarted
// with a new token file does. It panics if token is empty.
func (a *Agent) SetToken(token string) {
	if token == "" {
		panic("awssmtest: SetToken: empty token")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.token = token
}

// FlushCache empties the agent's cache, as a restart does.
func (a *Agent) FlushCache() {
	a.mu.Lock()
	defer a.mu.Unlock()
	clear(a.cache)
}

// Stats returns the agent's counters.
func (a *Agent) Stats() AgentStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}

// ResetStats sets every counter of [Agent.Stats] to zero.
func (a *Agent) ResetStats() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stats = AgentStats{}
}

// InjectFault makes the agent's next answers for a secret fail as f says
// (after the limit and token checks, before the cache): Latency delays the
// answer, with the request in flight (so that it counts against the
// connection limit); Hang holds it until the client gives up or the agent
// closes; Error or Status answers with that status and __type; MalformedBody
// answers 200 with a truncated JSON body. Count limits it to that many
// requests. It replaces any fault set before.
func (a *Agent) InjectFault(f Fault) {
	a.fault.Set(struct{}{}, f, f.Count)
}

// ClearFaults removes the fault set with [Agent.InjectFault].
func (a *Agent) ClearFaults() { a.fault.Clear() }

// Start serves a on a random port of 127.0.0.1 and returns a. It panics if
// a is already started or closed.
func (a *Agent) Start() *Agent {
	a.ep.start()
	return a
}

// URL returns the agent's base URL, such as "http://127.0.0.1:41235", or ""
// before [Agent.Start] or [Agent.Serve].
func (a *Agent) URL() string { return a.ep.URL() }

// Serve serves a on ln until ctx is done or [Agent.Close] is called, then
// closes ln and returns nil. ln must be bound to a loopback address, else
// Serve closes it and returns an error wrapping [ErrNotLoopback] (the agent
// itself listens on localhost only). While serving, [Agent.URL] names ln's
// address, if [Agent.Start] has not set it already.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	return a.ep.serve(ctx, ln)
}

// InProcessClient returns an HTTP client whose requests go to a's handler
// in process, whatever the host of their URL (the default
// http://localhost:2773 of an agent client, say), without a network. It is
// meant for tests that run under testing/synctest, where real sockets are
// not allowed to block; elsewhere, [Agent.Start] and [Agent.URL] test the
// real transport. [Agent.Close] does not stop it, but ends its requests
// that hang.
func (a *Agent) InProcessClient() *http.Client {
	return &http.Client{Transport: handlerTransport{a}}
}

// Close ends requests that hang or wait for an injected latency and stops
// serving: afterwards a client's connections are refused, as when the
// agent is down. Close is idempotent; the counters stay readable.
func (a *Agent) Close() {
	a.closeOnce.Do(func() {
		close(a.closed)
		a.ep.stop()
	})
}

// agentQuery is one request for a secret.
type agentQuery struct {
	secretID, versionID, versionStage string
	refreshNow                        bool
}

// agentError is an answer other than 200: its status and body.
type agentError struct {
	status int
	body   string
	code   string // for the log: the __type, or the plain text
}

func plainError(status int, text string) *agentError {
	return &agentError{status: status, body: text, code: text}
}

// storeErrorBody is the agent's JSON form of a store error.
func storeError(status int, code, message string) *agentError {
	if message == "" || code == "InternalFailure" {
		return &agentError{status: status, body: `{"__type":"InternalFailure"}`, code: "InternalFailure"}
	}
	b, _ := json.Marshal(struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}{code, message})
	return &agentError{status: status, body: string(b), code: code}
}

// ServeHTTP answers one request with the agent's rules (see [Agent]).
func (a *Agent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	health := path == "/ping"
	limit := a.cfg.maxConn
	if health {
		limit += 2
	}
	a.mu.Lock()
	a.inFlight++
	over := a.inFlight > limit
	token := a.token
	if over {
		a.stats.OverLimit++
	}
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.inFlight--
		a.mu.Unlock()
	}()

	q, part, aerr := a.answer(w, r, path, health, over, token)
	if l := a.cfg.logger; l != nil {
		status, code := http.StatusOK, ""
		if aerr != nil {
			status, code = aerr.status, aerr.code
		}
		l.LogAttrs(r.Context(), slog.LevelDebug, "awssmtest agent request",
			slog.String("path", path), slog.String("secret_id", q.secretID),
			slog.String("version_stage", q.versionStage), slog.String("version_id", q.versionID),
			slog.Bool("refresh_now", q.refreshNow), slog.String("cache", part),
			slog.Int("status", status), slog.String("error", code))
	}
}

// answer writes the answer to one request and reports it for the log: the
// query, the cache's part and the error, if any.
func (a *Agent) answer(w http.ResponseWriter, r *http.Request, path string, health, over bool, token string) (q agentQuery, part string, aerr *agentError) {
	reply := func(e *agentError) (agentQuery, string, *agentError) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if strings.HasPrefix(e.body, "{") {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(e.status)
		io.WriteString(w, e.body)
		return q, part, e
	}
	if over {
		return reply(plainError(http.StatusTooManyRequests, "Connection limit exceeded"))
	}
	if !health {
		if r.Header.Get("X-Forwarded-For") != "" {
			return reply(plainError(http.StatusBadRequest, "Forwarded"))
		}
		if !tokenMatches(r.Header, token) {
			a.mu.Lock()
			a.stats.BadToken++
			a.mu.Unlock()
			return reply(plainError(http.StatusForbidden, "Bad Token"))
		}
	}
	if r.Method != http.MethodGet {
		return reply(plainError(http.StatusMethodNotAllowed, "Not allowed"))
	}
	var perr *agentError
	switch {
	case health:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "healthy")
		return q, "", nil
	case path == "/secretsmanager/get":
		q, perr = parseAgentQuery(r.URL.RawQuery, false, "")
	case strings.HasPrefix(path, "/v1/"):
		q, perr = parseAgentQuery(r.URL.RawQuery, true, strings.TrimPrefix(path, "/v1/"))
	default:
		return reply(plainError(http.StatusNotFound, "Not found"))
	}
	if perr != nil {
		return reply(perr)
	}

	a.mu.Lock()
	a.stats.Requests++
	if q.refreshNow {
		a.stats.RefreshNow++
	}
	fault, faulted := a.fault.Take(struct{}{})
	a.mu.Unlock()
	if faulted {
		if !loopback.Wait(r.Context(), a.closed, fault.Latency, fault.Hang) {
			panic(http.ErrAbortHandler) // the client gave up or the agent closed: drop the connection
		}
		if fault.MalformedBody {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"ARN":"arn:aws:secretsmanager:`+Region+`:`+AccountID+`:secret:trunc`)
			return q, "fault", nil
		}
		if e := faultError(fault); e != nil {
			return reply(storeError(e.status, e.code, e.message))
		}
	}

	ans, part, aerr := a.get(r.Context(), q)
	if aerr != nil {
		if aerr.status == 0 {
			panic(http.ErrAbortHandler) // the client is gone
		}
		return reply(aerr)
	}
	b, err := json.Marshal(ans)
	if err != nil {
		return reply(storeError(http.StatusInternalServerError, "InternalFailure", ""))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
	return q, part, nil
}

// tokenMatches reports whether h carries token in one of the agent's
// token headers.
func tokenMatches(h http.Header, token string) bool {
	for _, name := range agentTokenHeaders {
		for _, v := range h.Values(name) {
			if subtle.ConstantTimeCompare([]byte(v), []byte(token)) == 1 {
				return true
			}
		}
	}
	return false
}

// parseAgentQuery parses the parameters of a request; a /v1/ request
// (pathForm) names its secret in the path (pathID) and takes no secretId
// parameter.
func parseAgentQuery(raw string, pathForm bool, pathID string) (agentQuery, *agentError) {
	var q agentQuery
	values, err := url.ParseQuery(raw)
	if err != nil {
		return q, plainError(http.StatusBadRequest, "invalid query")
	}
	for k, vs := range values {
		v := vs[len(vs)-1]
		switch {
		case k == "secretId" && !pathForm:
			q.secretID = v
		case k == "versionId":
			q.versionID = v
		case k == "versionStage":
			q.versionStage = v
		case k == "refreshNow":
			switch strings.ToLower(v) {
			case "true", "1":
				q.refreshNow = true
			case "false", "0":
			default:
				return q, plainError(http.StatusBadRequest, "invalid refreshNow value")
			}
		default:
			return q, plainError(http.StatusBadRequest, "unknown parameter: "+k)
		}
	}
	if pathForm {
		q.secretID = pathID
	}
	switch {
	case q.secretID == "" && pathForm:
		return q, plainError(http.StatusBadRequest, "missing secret ID")
	case q.secretID == "":
		return q, plainError(http.StatusBadRequest, "missing parameter secretId")
	}
	return q, nil
}

// get answers q from the cache or the store, and names the cache's part.
// An agentError with status 0 means the client went away.
func (a *Agent) get(ctx context.Context, q agentQuery) (agentAnswer, string, *agentError) {
	key := agentKey{q.secretID, q.versionID, q.versionStage}
	a.mu.Lock()
	var cached *agentEntry
	if e := a.cache[key]; e != nil && a.cfg.ttl > 0 {
		c := *e
		cached = &c
	}
	a.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, a.cfg.timeout)
	defer cancel()
	part := "miss"
	switch {
	case q.refreshNow:
		part = "refresh"
	case cached != nil && time.Since(cached.at) < a.cfg.ttl:
		a.count(func(s *AgentStats) { s.CacheHits++ })
		return cached.answer, "hit", nil
	case cached != nil:
		current, err := a.stillCurrent(ctx, q, cached.answer)
		switch {
		case err != nil && transient(ctx, err):
			a.count(func(s *AgentStats) { s.StaleServed++ })
			return cached.answer, "stale", nil
		case err != nil:
			return agentAnswer{}, "revalidate", a.storeFailure(ctx, err)
		case current:
			a.put(key, cached.answer)
			a.count(func(s *AgentStats) { s.Revalidations++ })
			return cached.answer, "revalidated", nil
		}
		part = "expired"
	}

	a.count(func(s *AgentStats) { s.GetSecretValueCalls++ })
	in := &secretsmanager.GetSecretValueInput{SecretId: aws.String(q.secretID)}
	if q.versionID != "" {
		in.VersionId = aws.String(q.versionID)
	}
	if q.versionStage != "" {
		in.VersionStage = aws.String(q.versionStage)
	}
	out, err := a.store.GetSecretValue(ctx, in)
	if err != nil {
		if cached != nil && !q.refreshNow && transient(ctx, err) {
			a.count(func(s *AgentStats) { s.StaleServed++ })
			return cached.answer, "stale", nil
		}
		return agentAnswer{}, part, a.storeFailure(ctx, err)
	}
	ans := agentAnswer{
		ARN:           aws.ToString(out.ARN),
		Name:          aws.ToString(out.Name),
		VersionID:     aws.ToString(out.VersionId),
		SecretString:  out.SecretString,
		SecretBinary:  out.SecretBinary,
		VersionStages: out.VersionStages,
	}
	if out.CreatedDate != nil {
		ans.CreatedDate = formatEpoch(*out.CreatedDate)
	}
	if a.cfg.ttl > 0 {
		a.put(key, ans)
	}
	return ans, part, nil
}

// stillCurrent is the agent's check of an expired entry: DescribeSecret,
// then whether the cached version still exists (a request by versionId
// alone) or still carries the stage asked for (AWSCURRENT if none).
func (a *Agent) stillCurrent(ctx context.Context, q agentQuery, cached agentAnswer) (bool, error) {
	a.count(func(s *AgentStats) { s.DescribeSecretCalls++ })
	d, err := a.store.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(cached.ARN)})
	if err != nil {
		return false, err
	}
	if q.versionID != "" && q.versionStage == "" {
		_, ok := d.VersionIdsToStages[q.versionID]
		return ok, nil
	}
	id := q.versionID
	if id == "" {
		id = cached.VersionID
	}
	stage := q.versionStage
	if stage == "" {
		stage = StageCurrent
	}
	for _, s := range d.VersionIdsToStages[id] {
		if s == stage {
			return true, nil
		}
	}
	return false, nil
}

func (a *Agent) put(key agentKey, ans agentAnswer) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cache[key] = &agentEntry{answer: ans, at: time.Now()}
}

func (a *Agent) count(f func(*AgentStats)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(&a.stats)
}

// transient reports whether err is a store failure after which the agent
// serves its expired copy: throttling, a 5xx, a timeout or a dropped
// connection.
func transient(ctx context.Context, err error) bool {
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return false // the client went away
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() >= 500 {
		return true
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode() == "ThrottlingException"
	}
	return true // a timeout or a dropped connection: no answer at all
}

// storeFailure maps a failed store call to the agent's answer, as the agent
// does: the store's status and __type, 504 TimeoutError for a timeout, 502
// ConnectionError for a dropped connection, 500 InternalFailure otherwise.
// It returns status 0 if the client went away.
func (a *Agent) storeFailure(ctx context.Context, err error) *agentError {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		status := http.StatusBadRequest
		var re *awshttp.ResponseError
		if errors.As(err, &re) {
			status = re.HTTPStatusCode()
		}
		return storeError(status, ae.ErrorCode(), ae.ErrorMessage())
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return storeError(http.StatusGatewayTimeout, "TimeoutError", "Timeout")
	case ctx.Err() != nil:
		return &agentError{}
	}
	var de *smithy.DeserializationError
	if errors.As(err, &de) {
		return storeError(http.StatusBadGateway, "ConnectionError", "Response Error")
	}
	return storeError(http.StatusBadGateway, "ConnectionError", "Read Error")
}

// handlerTransport hands requests to a handler in process: the agent's
// SDK client reaches the Server without a network, so that it works
// whether or not the Server listens (and under testing/synctest).
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (resp *http.Response, err error) {
	if req.Body != nil {
		defer req.Body.Close()
	}
	rec := httptest.NewRecorder()
	defer func() {
		if r := recover(); r != nil {
			if r != http.ErrAbortHandler {
				panic(r)
			}
			// The handler dropped the connection (a hang that ended).
			resp, err = nil, errors.New("awssmtest: the store dropped the connection")
			if ctxErr := req.Context().Err(); ctxErr != nil {
				err = ctxErr
			}
		}
	}()
	t.h.ServeHTTP(rec, req)
	res := rec.Result()
	res.Request = req
	return res, nil
}
