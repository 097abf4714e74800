package smagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/awssm/internal/secretvalue"
)

// Staging labels that Secrets Manager's rotation gives a meaning to.
const (
	// StageCurrent labels the version applications should use; Fetch reads
	// it unless WithVersionStage says otherwise.
	StageCurrent = "AWSCURRENT"
	// StagePending labels the version a rotation is creating; FetchPending
	// reads it.
	StagePending = secretvalue.StagePending
)

// TokenHeader is the request header that carries the agent's token.
const TokenHeader = "X-Aws-Parameters-Secrets-Token"

// Compile-time checks.
var (
	_ secrets.PendingSource = (*Source)(nil)
	_ secrets.Describer     = (*Source)(nil)
	_ fmt.Formatter         = (*Source)(nil)
	_ slog.LogValuer        = (*Source)(nil)
)

// Source reads a credential from one AWS Secrets Manager secret through the
// Secrets Manager Agent or the Parameters and Secrets Lambda extension on
// the same host. It implements [secrets.PendingSource] and
// [secrets.Describer] and is safe for concurrent use.
//
// It keeps one thing between calls: the credential that FetchPending was
// last told the database rejected, so that a later answer from the agent's
// cache that is that credential is read again with refreshNow=true (see the
// package documentation). Formatting a Source with any verb prints its
// description only.
type Source struct {
	secretID string
	stage    string
	keys     secrets.Keys
	endpoint string // the base URL, without a trailing slash
	client   *http.Client
	token    tokenFinder
	log      *slog.Logger

	// mu guards rejected. It is never held across a request.
	mu sync.Mutex
	// rejected is the credential the last FetchPending was given: the
	// database refused it, so the agent's cached copy of it is stale (or
	// Secrets Manager is behind the database). Zero until FetchPending is
	// first called.
	rejected secrets.Credential
}

// New returns a Source that reads the secret secretID (a name or an ARN)
// through the agent at http://localhost:2773 (see [WithEndpoint]), with the
// token it finds as the package documentation describes. It makes no
// request: the first Fetch does.
func New(secretID string, opts ...Option) (*Source, error) {
	if secretID == "" {
		return nil, errors.New("smagent: empty secret id")
	}
	if !utf8.ValidString(secretID) || strings.ContainsFunc(secretID, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, errors.New("smagent: the secret id holds a control character or invalid UTF-8")
	}
	cfg := defaultOptions()
	for _, opt := range opts {
		opt(&cfg)
	}
	if err := cfg.finish(); err != nil {
		return nil, err
	}
	return &Source{
		secretID: secretID,
		stage:    cfg.stage,
		keys:     cfg.keys,
		endpoint: strings.TrimSuffix(cfg.endpoint, "/"),
		client:   noRedirects(cfg.client),
		token:    cfg.token,
		log:      cfg.logger.With(slog.String("secret_id", secretID)),
	}, nil
}

// noRedirects returns a copy of client (or of the default client) that
// does not follow redirects: the token is for the agent only.
func noRedirects(client *http.Client) *http.Client {
	var c http.Client
	if client != nil {
		c = *client
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil
		t.DisableKeepAlives = true
		c.Transport = t
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// Describe returns "aws-secretsmanager-agent <secret id>", with " <stage>"
// appended when WithVersionStage chose a label other than AWSCURRENT.
func (s *Source) Describe() string {
	d := "aws-secretsmanager-agent " + s.secretID
	if s.stage != StageCurrent {
		d += " " + s.stage
	}
	return d
}

// Format prints the description for every verb, so that a Source in a
// log line or an error never shows its fields (a token given with
// WithToken among them).
func (s *Source) Format(f fmt.State, verb rune) { io.WriteString(f, s.Describe()) }

// LogValue logs the source as its description.
func (s *Source) LogValue() slog.Value { return slog.StringValue(s.Describe()) }

// Fetch reads the version labelled AWSCURRENT (or the label given with
// WithVersionStage) through the agent and parses its value; the
// credential's Version is the VersionId. It is one request, served from
// the agent's cache when the agent has a fresh copy. If that answer is the
// credential the database was reported to reject (see [Source.FetchPending]),
// the agent's copy is stale, and Fetch asks once more with refreshNow=true.
func (s *Source) Fetch(ctx context.Context) (secrets.Credential, error) {
	v, err := s.read(ctx, OpFetch, s.stage, false)
	if err != nil {
		return secrets.Credential{}, err
	}
	cred, perr := v.Credential(s.keys)
	if s.isRejected(v, cred, perr) {
		s.log.LogAttrs(ctx, slog.LevelDebug, "smagent: the agent's copy is the rejected credential; asking it to refresh",
			slog.String("stage", s.stage), slog.String("version", v.VersionID))
		if v, err = s.read(ctx, OpFetch, s.stage, true); err != nil {
			return secrets.Credential{}, err
		}
		cred, perr = v.Credential(s.keys)
	}
	if perr != nil {
		s.log.LogAttrs(ctx, slog.LevelDebug, "smagent: secret value unusable",
			slog.String("stage", s.stage), slog.String("version", v.VersionID), slog.Any("error", perr))
		return secrets.Credential{}, &Error{SecretID: s.secretID, Op: OpFetch, Stage: s.stage, VersionID: v.VersionID, Err: perr}
	}
	return cred, nil
}

// FetchPending reads the version labelled AWSPENDING through the agent,
// with the rules of secrets/awssm: it returns an *Error wrapping
// [secrets.ErrNoPending] if no version carries the label (the agent
// passes Secrets Manager's ResourceNotFoundException through, reachable
// as an [*AgentError]) or if the pending version is the version or holds
// the login of rejected; a pending version that also carries AWSCURRENT
// and is not rejected is returned, the new current credential.
//
// The agent caches AWSPENDING like any label, and its copy may be the
// previous rotation's. The first request uses the cache, so that the
// processes of a host share one call to Secrets Manager; if it answers
// with rejected's version or login, FetchPending asks again with
// refreshNow=true. When no pending credential is found, it also reads
// AWSCURRENT with refreshNow=true, unless the Fetch just before did (the
// connector calls FetchPending only after a Fetch that returned rejected,
// possibly from the agent's stale copy): if Secrets Manager holds another
// credential there, FetchPending returns it, as one that became current
// after that Fetch. FetchPending remembers rejected for later calls of
// Fetch.
func (s *Source) FetchPending(ctx context.Context, rejected secrets.Credential) (secrets.Credential, error) {
	knownBefore := s.remember(rejected)
	noPending := func(version, why string, cause error) (secrets.Credential, error) {
		s.log.LogAttrs(ctx, slog.LevelDebug, "smagent: no pending credential",
			slog.String("version", version), slog.String("reason", why))
		err := fmt.Errorf("%w: %s", secrets.ErrNoPending, why)
		if cause != nil {
			err = fmt.Errorf("%w: %s: %w", secrets.ErrNoPending, why, cause)
		}
		return secrets.Credential{}, &Error{SecretID: s.secretID, Op: OpFetchPending, Stage: StagePending, VersionID: version, Err: err}
	}

	var (
		version, whyNone string
		cause            error
	)
	for _, refresh := range []bool{false, true} {
		v, err := s.read(ctx, OpFetchPending, StagePending, refresh)
		var ae *AgentError
		if errors.As(err, &ae) && ae.notFound() {
			// Errors are never cached: this is Secrets Manager's answer.
			version, whyNone, cause = "", "no version with a value carries "+StagePending, ae
			break
		}
		if err != nil {
			return secrets.Credential{}, err
		}
		cred, finished, why, perr := v.Pending(s.stage, rejected, s.keys)
		switch {
		case perr != nil:
			s.log.LogAttrs(ctx, slog.LevelDebug, "smagent: secret value unusable",
				slog.String("stage", StagePending), slog.String("version", v.VersionID), slog.Any("error", perr))
			return secrets.Credential{}, &Error{SecretID: s.secretID, Op: OpFetchPending, Stage: StagePending, RefreshNow: refresh, VersionID: v.VersionID, Err: perr}
		case why == "":
			msg := "smagent: fetched pending secret"
			if finished {
				msg = "smagent: fetched pending secret; the rotation finished since the rejected credential was fetched"
			}
			s.log.LogAttrs(ctx, slog.LevelDebug, msg, slog.String("version", v.VersionID), slog.Bool("refresh_now", refresh))
			return cred, nil
		}
		version, whyNone = v.VersionID, why
		// The agent's copy is the rejected credential: stale, or the
		// truth; only Secrets Manager can tell.
	}

	if !knownBefore {
		v, err := s.read(ctx, OpFetchPending, s.stage, true)
		if err != nil {
			return secrets.Credential{}, err
		}
		cred, perr := v.Credential(s.keys)
		if perr != nil {
			return secrets.Credential{}, &Error{SecretID: s.secretID, Op: OpFetchPending, Stage: s.stage, RefreshNow: true, VersionID: v.VersionID, Err: perr}
		}
		if !isLogin(v, cred, nil, rejected) {
			s.log.LogAttrs(ctx, slog.LevelDebug, "smagent: the agent's copy of the current credential was stale; using Secrets Manager's",
				slog.String("stage", s.stage), slog.String("version", v.VersionID))
			return cred, nil
		}
	}
	return noPending(version, whyNone, cause)
}

// remember records rejected for Fetch and reports whether it was recorded
// already: then the Fetch that returned it read the agent with
// refreshNow=true.
func (s *Source) remember(rejected secrets.Credential) (knownBefore bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	knownBefore = s.rejected.Version == rejected.Version && s.rejected.SameLogin(rejected) && rejected.Password != ""
	s.rejected = rejected
	return knownBefore
}

// isRejected reports whether the agent's answer v (parsed into cred, or
// failing with perr) is the credential FetchPending was last given.
func (s *Source) isRejected(v secretvalue.Value, cred secrets.Credential, perr error) bool {
	s.mu.Lock()
	rejected := s.rejected
	s.mu.Unlock()
	if rejected.Password == "" && rejected.Version == "" {
		return false // nothing was rejected yet
	}
	return isLogin(v, cred, perr, rejected)
}

// isLogin reports whether v is rejected's version, or its value (cred,
// unless perr) rejected's login.
func isLogin(v secretvalue.Value, cred secrets.Credential, perr error, rejected secrets.Credential) bool {
	if v.VersionID != "" && v.VersionID == rejected.Version {
		return true
	}
	return perr == nil && cred.SameLogin(rejected)
}

// read makes one request to the agent for stage and decodes the answer.
// Errors are an *Error.
func (s *Source) read(ctx context.Context, op, stage string, refresh bool) (secretvalue.Value, error) {
	fail := func(version string, err error) (secretvalue.Value, error) {
		s.log.LogAttrs(ctx, slog.LevelDebug, "smagent: request failed",
			slog.String("stage", stage), slog.Bool("refresh_now", refresh), slog.Any("error", err))
		return secretvalue.Value{}, &Error{SecretID: s.secretID, Op: op, Stage: stage, RefreshNow: refresh, VersionID: version, Err: err}
	}
	token, from, err := s.token.find()
	if err != nil {
		return fail("", err)
	}
	q := url.Values{"secretId": {s.secretID}}
	if stage != StageCurrent {
		// AWSCURRENT is left implied, as most clients do, so that they
		// share the agent's cache entry.
		q.Set("versionStage", stage)
	}
	if refresh {
		q.Set("refreshNow", "true")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.endpoint+"/secretsmanager/get?"+q.Encode(), nil)
	if err != nil {
		return fail("", err) // unreachable: the endpoint was checked
	}
	req.Header.Set(TokenHeader, token)
	resp, err := s.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text repeats the URL
		}
		if ctx.Err() != nil {
			return fail("", fmt.Errorf("%w at %s: %w", ErrAgentUnreachable, s.endpoint, ctx.Err()))
		}
		return fail("", fmt.Errorf("%w at %s: %w", ErrAgentUnreachable, s.endpoint, err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fail("", fmt.Errorf("%w at %s: reading the answer: %w", ErrAgentUnreachable, s.endpoint, err))
	}
	if resp.StatusCode != http.StatusOK {
		return fail("", agentError(resp.StatusCode, body, token, from))
	}
	if len(body) > maxAnswer {
		return fail("", fmt.Errorf("%w: the agent's answer is larger than %d bytes", secrets.ErrMalformed, maxAnswer))
	}
	v, err := parseAnswer(body)
	if err != nil {
		return fail("", err)
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, "smagent: read secret",
		slog.String("stage", stage), slog.Bool("refresh_now", refresh), slog.String("version", v.VersionID))
	return v, nil
}

// agentError builds the error for an answer other than 200: the status,
// and the code and message of a JSON error body (the agent's form of a
// Secrets Manager error) or the text of a plain one.
func agentError(status int, body []byte, token, tokenFrom string) *AgentError {
	e := &AgentError{StatusCode: status, TokenSource: tokenFrom}
	var j struct {
		Type     string `json:"__type"`
		Code     string `json:"code"`
		Message  string `json:"message"`
		Message2 string `json:"Message"`
	}
	if json.Unmarshal(body, &j) == nil && (j.Type != "" || j.Code != "") {
		code := j.Type
		if code == "" {
			code = j.Code
		}
		if i := strings.LastIndexByte(code, '#'); i >= 0 {
			code = code[i+1:]
		}
		e.Code = printable(code, token)
		msg := j.Message
		if msg == "" {
			msg = j.Message2
		}
		e.Message = printable(msg, token)
		return e
	}
	e.Message = printable(string(body), token)
	return e
}

// printable shortens s to 200 bytes of valid UTF-8, replaces control
// characters with spaces and removes token from it, for an error message
// from the agent (which does not quote secrets, but whatever listens on
// the port might).
func printable(s, token string) string {
	if token != "" {
		s = strings.ReplaceAll(s, token, "[REDACTED]")
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > 200 {
		cut := 200
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}
