package vault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/hashicorp/vault/api"
)

// Client is the Vault client that the sources of this package share: an
// *api.Client and the token it sends, which the Client keeps usable. A
// Client is safe for concurrent use. It starts no goroutine, so it needs
// no Close: everything it does, it does during a source's Fetch, bounded by
// that Fetch's context.
//
// Where the token comes from is chosen by the options of [NewClient]:
//
//   - By default, the *api.Client's own token: VAULT_TOKEN, or one set
//     with SetToken before NewClient. On first use the Client looks it up
//     (auth/token/lookup-self) to learn its TTL, and renews it
//     (auth/token/renew-self) once two thirds of the TTL it was last
//     granted have passed, if it is renewable. Without a token at all,
//     requests carry none, as Vault Agent's API proxy with
//     use_auto_auth_token expects.
//   - [WithTokenFile]: a file that Vault Agent (or anything else) keeps
//     current. It is checked before every call and read again when its
//     size or modification time changed. The Client never renews such a
//     token: its writer does.
//   - [WithAppRole], [WithKubernetes] or [WithAuthMethod]: the Client
//     logs in on first use, renews the token as above, and logs in again
//     when the token cannot be renewed any more (not renewable, capped by
//     its max TTL, or the renewal refused) or Vault refuses it.
//
// In every mode, an answer of 403 to a call is taken as a sign that the
// token may have died early (revoked, or the file rewritten): with a token
// file or a login, the Client reads the file again or logs in again, and
// repeats the call once if that gave it a different token.
type Client struct {
	log       *slog.Logger
	mode      tokenMode
	tokenFile string
	auth      *authMethod // login mode only

	// tmpl is a copy of the caller's client without a token; every token
	// gets a copy of it of its own (tmpl is only copied, under tmplMu, and
	// never sends a request), and anon, another copy, sends logins.
	tmplMu sync.Mutex
	tmpl   *api.Client
	anon   *api.Client

	// mu guards the current token and the refresh in flight. It is never
	// held across a Vault call: a refresh runs with flight set, and
	// callers that need its result wait for flight.done with their own
	// context.
	mu     sync.Mutex
	tok    *token // nil until a login or a token file's first read
	flight *tokenFlight
	gens   uint64
	stamp  fileStamp // of the token file when tok was read from it
}

type tokenMode uint8

const (
	modeGiven tokenMode = iota // the *api.Client's own token, or none
	modeFile                   // WithTokenFile
	modeLogin                  // an auth method
)

// token is one Vault token and what is known of its lifetime. A token is
// never modified once it is c.tok: a change is a new *token.
type token struct {
	gen      uint64      // numbers the token values the Client has used
	value    string      // the token: a secret, never logged
	accessor string      // not a secret; "" until known
	api      *api.Client // sends value

	// Lifetime. known is false until a login, lookup-self or renew-self
	// told it; expires is zero for a token that does not expire (or whose
	// expiry could not be learnt). granted is the TTL of the last login or
	// renewal, increment what renew-self asks for (the TTL at creation).
	known     bool
	lookedUp  bool // lookup-self was tried for this token
	expires   time.Time
	granted   time.Duration
	increment time.Duration
	renewable bool
	atMax     bool // the last renewal gave less than asked: max TTL reached
	dead      bool // Vault answered 403 to a call with it
}

// usable reports whether t may be sent at now.
func (t *token) usable(now time.Time) bool {
	return t != nil && !t.dead && (t.expires.IsZero() || now.Before(t.expires))
}

type tokenFlight struct {
	done chan struct{}
	err  error // set before done is closed
}

type fileStamp struct {
	size    int64
	modTime time.Time
}

// authMethod is the login of WithAppRole, WithKubernetes or WithAuthMethod.
type authMethod struct {
	name  string // "approle", "kubernetes", ...: for logs
	path  string // "auth/approle/login": for errors; "" if unknown
	login func(ctx context.Context, c *api.Client) (*api.Secret, error)
}

// NewClient returns a Client that calls Vault through c. If c is nil, it is
// built with api.NewClient(nil), which reads the client's environment:
// VAULT_ADDR, VAULT_AGENT_ADDR, VAULT_TOKEN, VAULT_NAMESPACE,
// VAULT_CACERT, VAULT_CAPATH, VAULT_CLIENT_CERT, VAULT_CLIENT_KEY,
// VAULT_TLS_SERVER_NAME, VAULT_SKIP_VERIFY, VAULT_CLIENT_TIMEOUT,
// VAULT_MAX_RETRIES, VAULT_HEADERS, VAULT_RATE_LIMIT and friends.
//
// The Client works on a copy of c, made here: the token it sends is its
// own, and c's token is never changed (c's request callbacks are kept,
// since the copy shares them). c's own token is used only in the default
// mode (no login option, no token file). c's retries (VAULT_MAX_RETRIES,
// 2 by default, for 5xx answers and network errors) and timeout
// (VAULT_CLIENT_TIMEOUT, 60 s by default) apply within each call's
// context, which bounds them.
func NewClient(c *api.Client, opts ...ClientOption) (*Client, error) {
	cfg := clientConfig{logger: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&cfg)
	}
	if cfg.tokenFile != "" && cfg.auth != nil {
		cfg.invalid("WithTokenFile and a login (%s) exclude each other", cfg.auth.name)
	}
	if err := errors.Join(cfg.errs...); err != nil {
		return nil, err
	}
	if c == nil {
		var err error
		if c, err = api.NewClient(nil); err != nil {
			return nil, fmt.Errorf("vault: building the client from the environment: %w", err)
		}
	}
	ns := c.Namespace()
	tmpl := c.WithNamespace(ns)
	given := tmpl.Token()
	tmpl.ClearToken()
	cl := &Client{
		log:       cfg.logger,
		tokenFile: cfg.tokenFile,
		auth:      cfg.auth,
		tmpl:      tmpl,
	}
	cl.anon = cl.newAPI("")
	switch {
	case cfg.auth != nil:
		cl.mode = modeLogin
	case cfg.tokenFile != "":
		cl.mode = modeFile
	default:
		cl.mode = modeGiven
		if err := validateToken(given); err != nil {
			return nil, fmt.Errorf("vault: the client's token: %w", err)
		}
		cl.gens++
		cl.tok = &token{gen: cl.gens, value: given, api: cl.newAPI(given)}
	}
	return cl, nil
}

// newAPI returns a copy of the template that sends value as its token
// (none if value is empty).
func (c *Client) newAPI(value string) *api.Client {
	c.tmplMu.Lock()
	defer c.tmplMu.Unlock()
	a := c.tmpl.WithNamespace(c.tmpl.Namespace())
	if value != "" {
		a.SetToken(value)
	}
	return a
}

// validateToken refuses a token the client would refuse to send (it
// checks its own token the same way), without quoting it.
func validateToken(v string) error {
	if strings.IndexFunc(v, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return fmt.Errorf("%w: the token contains a non-printable character", errMalformedToken)
	}
	return nil
}

var errMalformedToken = errors.New("malformed token")

// do makes one Vault call with the current token: call must use the
// client it is given, and ctx. A 403 answer, in the modes where the token
// can be replaced (a token file, a login), replaces the token and repeats
// the call once if the token changed. It returns the token that made the
// call, and an *Error naming op and path.
func (c *Client) do(ctx context.Context, op, path string, call func(*api.Client) error) (*token, error) {
	t, err := c.token(ctx)
	if err != nil {
		return nil, err
	}
	err = call(t.api)
	if err == nil {
		return t, nil
	}
	if statusOf(err) != 403 || c.mode == modeGiven {
		return t, newError(op, path, err)
	}
	c.markDead(t)
	t2, err2 := c.token(ctx)
	if err2 != nil {
		return t, err2
	}
	if t2.gen == t.gen {
		return t, newError(op, path, err)
	}
	c.log.LogAttrs(ctx, slog.LevelDebug, "vault: permission denied; repeating the call with the new token",
		slog.String("op", op), slog.String("path", path), slog.String("accessor", t2.accessor))
	if err := call(t2.api); err != nil {
		return t2, newError(op, path, err)
	}
	return t2, nil
}

// markDead records that Vault refused t, so that the next token() logs in
// again or reads the token file again.
func (c *Client) markDead(t *token) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok == nil || c.tok.gen != t.gen || c.tok.dead {
		return
	}
	d := *c.tok
	d.dead = true
	c.tok = &d
	c.stamp = fileStamp{}
}

// step is what the token needs before it is used.
type step uint8

const (
	stepUse step = iota
	stepLogin
	stepRenew
	stepLookup
)

// nextStepLocked decides what the current token needs at now, in the
// default and login modes: the renewal policy in one place.
func (c *Client) nextStepLocked(now time.Time) step {
	t := c.tok
	switch {
	case c.mode == modeLogin && (t == nil || t.dead):
		return stepLogin
	case t == nil || t.value == "" || t.dead:
		return stepUse
	case !t.known && !t.lookedUp && c.mode == modeGiven:
		return stepLookup // learn the TTL once
	case !t.known || t.expires.IsZero():
		return stepUse
	}
	if t.expires.Sub(now) > t.granted/3 {
		return stepUse
	}
	// Two thirds of the granted TTL have passed.
	switch {
	case t.renewable && !t.atMax:
		return stepRenew
	case c.mode == modeLogin:
		return stepLogin
	}
	return stepUse // nothing can be done; Vault will say when it is dead
}

// token returns the token to send now, after renewing it, looking it up,
// logging in or reading the token file as needed.
func (c *Client) token(ctx context.Context) (*token, error) {
	if c.mode == modeFile {
		return c.fileToken(ctx)
	}
	return c.refresh(ctx, func(now time.Time) step { return c.nextStepLocked(now) })
}

// refresh runs the step that decide picks for the current token (under
// c.mu), one refresh at a time: a caller that finds a refresh in flight
// uses the current token if it is still usable, and otherwise waits for
// the refresh with its own context.
func (c *Client) refresh(ctx context.Context, decide func(now time.Time) step) (*token, error) {
	for {
		c.mu.Lock()
		now := time.Now()
		st := decide(now)
		cur := c.tok
		if st == stepUse {
			c.mu.Unlock()
			return cur, nil
		}
		if f := c.flight; f != nil {
			c.mu.Unlock()
			if cur.usable(now) {
				return cur, nil
			}
			select {
			case <-f.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			// A refresh that failed for its own caller's context is
			// not this caller's failure: decide again.
			if f.err != nil && !errors.Is(f.err, context.Canceled) && !errors.Is(f.err, context.DeadlineExceeded) {
				return nil, f.err
			}
			continue
		}
		f := &tokenFlight{done: make(chan struct{})}
		c.flight = f
		c.mu.Unlock()

		next, err := c.runStep(ctx, st, cur)

		c.mu.Lock()
		if next != nil && (c.tok == nil || cur == nil || c.tok.gen == cur.gen) {
			if next.gen == 0 {
				c.gens++
				next.gen = c.gens
			}
			c.tok = next
		}
		c.flight = nil
		f.err = err
		close(f.done)
		c.mu.Unlock()
		if err == nil {
			return next, nil
		}
		if st != stepLogin && cur.usable(time.Now()) {
			// A renewal or lookup that failed leaves a token that still
			// works; the next call tries again.
			c.log.LogAttrs(ctx, slog.LevelDebug, "vault: token refresh failed; using the token as it is",
				slog.String("accessor", cur.accessor), slog.Any("error", err))
			return cur, nil
		}
		return nil, err
	}
}

// runStep makes the Vault call of st for cur. It returns the token that
// replaces cur (gen 0 if it is a new token value).
func (c *Client) runStep(ctx context.Context, st step, cur *token) (*token, error) {
	switch st {
	case stepLogin:
		return c.login(ctx)
	case stepRenew:
		return c.renewSelf(ctx, cur)
	case stepLookup:
		return c.lookupSelf(ctx, cur)
	}
	return cur, nil
}

func (c *Client) login(ctx context.Context) (*token, error) {
	sent := time.Now()
	sec, err := c.auth.login(ctx, c.anon)
	if err != nil {
		err = sanitize(err)
		c.log.LogAttrs(ctx, slog.LevelDebug, "vault: login failed", slog.String("method", c.auth.name), slog.Any("error", describeCause(err)))
		return nil, &Error{Op: OpLogin, Path: c.auth.path, StatusCode: statusOf(err), Err: err}
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return nil, &Error{Op: OpLogin, Path: c.auth.path, Err: fmt.Errorf("%w: the answer has no auth.client_token", errMalformedToken)}
	}
	if err := validateToken(sec.Auth.ClientToken); err != nil {
		return nil, &Error{Op: OpLogin, Path: c.auth.path, Err: err}
	}
	ttl := time.Duration(sec.Auth.LeaseDuration) * time.Second
	t := &token{
		value:     sec.Auth.ClientToken,
		accessor:  sec.Auth.Accessor,
		api:       c.newAPI(sec.Auth.ClientToken),
		known:     true,
		granted:   ttl,
		increment: ttl,
		renewable: sec.Auth.Renewable,
	}
	if ttl > 0 {
		t.expires = endAfter(sent, int64(sec.Auth.LeaseDuration))
	}
	c.log.LogAttrs(ctx, slog.LevelDebug, "vault: logged in", slog.String("method", c.auth.name),
		slog.String("accessor", t.accessor), slog.Duration("ttl", ttl), slog.Bool("renewable", t.renewable))
	return t, nil
}

const renewSelfPath = "auth/token/renew-self"

func (c *Client) renewSelf(ctx context.Context, cur *token) (*token, error) {
	inc := max(cur.increment, time.Second)
	sent := time.Now()
	sec, err := cur.api.Auth().Token().RenewSelfWithContext(ctx, int(inc/time.Second))
	if err != nil {
		err = sanitize(err)
		if s := statusOf(err); s == 400 || s == 403 {
			// Refused: not renewable (any more), expired or revoked.
			c.log.LogAttrs(ctx, slog.LevelDebug, "vault: token renewal refused",
				slog.String("accessor", cur.accessor), slog.Any("error", describeCause(err)))
			if c.mode == modeLogin {
				return c.login(ctx)
			}
			t := *cur
			t.renewable = false
			return &t, nil
		}
		return nil, &Error{Op: OpRenewSelf, Path: renewSelfPath, StatusCode: statusOf(err), Err: err}
	}
	if sec == nil || sec.Auth == nil {
		return nil, &Error{Op: OpRenewSelf, Path: renewSelfPath, Err: fmt.Errorf("%w: the answer has no auth", errMalformedToken)}
	}
	got := time.Duration(sec.Auth.LeaseDuration) * time.Second
	t := *cur
	t.known = true
	t.granted = got
	t.renewable = sec.Auth.Renewable
	t.atMax = got < inc
	t.expires = time.Time{}
	if got > 0 {
		t.expires = endAfter(sent, int64(sec.Auth.LeaseDuration))
	}
	c.log.LogAttrs(ctx, slog.LevelDebug, "vault: token renewed", slog.String("accessor", t.accessor),
		slog.Duration("ttl", got), slog.Bool("max_ttl_reached", t.atMax))
	return &t, nil
}

const lookupSelfPath = "auth/token/lookup-self"

// lookupSelf learns cur's TTL. It is best effort: a token that may not
// look itself up is used as it is, with its lifetime unknown.
func (c *Client) lookupSelf(ctx context.Context, cur *token) (*token, error) {
	sent := time.Now()
	sec, err := cur.api.Auth().Token().LookupSelfWithContext(ctx)
	t := *cur
	t.lookedUp = true
	if err != nil {
		err = sanitize(err)
		if s := statusOf(err); s == 400 || s == 403 || s == 404 {
			c.log.LogAttrs(ctx, slog.LevelDebug, "vault: token lookup refused; its lifetime is unknown", slog.Any("error", describeCause(err)))
			return &t, nil
		}
		return nil, &Error{Op: OpLookupSelf, Path: lookupSelfPath, StatusCode: statusOf(err), Err: err}
	}
	// sec.Data holds the token itself under "id": read only what is needed.
	ttl, err := sec.TokenTTL()
	if err != nil {
		return &t, nil
	}
	t.known = true
	t.accessor, _ = sec.TokenAccessor()
	t.renewable, _ = sec.TokenIsRenewable()
	t.granted, t.increment = ttl, ttl
	if created, err := durationField(sec.Data["creation_ttl"]); err == nil && created > 0 {
		t.granted, t.increment = created, created
	}
	t.expires = time.Time{}
	if ttl > 0 {
		t.expires = endAfter(sent, int64(ttl/time.Second))
	}
	c.log.LogAttrs(ctx, slog.LevelDebug, "vault: token looked up", slog.String("accessor", t.accessor),
		slog.Duration("ttl", ttl), slog.Bool("renewable", t.renewable))
	return &t, nil
}

// durationField reads a number of seconds from a lookup-self answer.
func durationField(v any) (time.Duration, error) {
	switch n := v.(type) {
	case interface{ Int64() (int64, error) }: // json.Number
		s, err := n.Int64()
		return time.Duration(s) * time.Second, err
	case float64:
		return time.Duration(n) * time.Second, nil
	}
	return 0, errors.New("not a number")
}

// maxTokenFile bounds the token file: a token is a few hundred bytes.
const maxTokenFile = 64 << 10

// fileToken returns the token in the token file, reading the file again
// if its size or modification time changed since it was read (or the
// token was refused). If the file cannot be read but a token read from it
// before was not refused, that token is used.
func (c *Client) fileToken(ctx context.Context) (*token, error) {
	fi, statErr := os.Stat(c.tokenFile)
	c.mu.Lock()
	cur := c.tok
	if statErr == nil && cur != nil && !cur.dead && c.stamp == (fileStamp{fi.Size(), fi.ModTime()}) {
		c.mu.Unlock()
		return cur, nil
	}
	c.mu.Unlock()

	value, err := readTokenFile(c.tokenFile, statErr)
	if err != nil {
		err = &Error{Op: OpTokenFile, Path: c.tokenFile, Err: err}
		if cur != nil && !cur.dead {
			c.log.LogAttrs(ctx, slog.LevelDebug, "vault: token file unreadable; using the token read before", slog.Any("error", err))
			return cur, nil
		}
		return nil, err
	}
	api := c.newAPI(value)
	c.mu.Lock()
	defer c.mu.Unlock()
	if statErr == nil {
		c.stamp = fileStamp{fi.Size(), fi.ModTime()}
	}
	if c.tok != nil && c.tok.value == value {
		return c.tok, nil // same token, possibly refused: the caller finds out
	}
	c.gens++
	c.tok = &token{gen: c.gens, value: value, api: api}
	c.log.LogAttrs(ctx, slog.LevelDebug, "vault: read a new token from the token file",
		slog.String("path", c.tokenFile), slog.Uint64("token_generation", c.gens))
	return c.tok, nil
}

func readTokenFile(path string, statErr error) (string, error) {
	if statErr != nil {
		return "", statErr
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", err
	}
	if len(data) > maxTokenFile {
		return "", fmt.Errorf("%w: the file is larger than %d bytes", errMalformedToken, maxTokenFile)
	}
	value := strings.TrimSpace(string(data))
	if value == "" {
		return "", ErrNoToken
	}
	if err := validateToken(value); err != nil {
		return "", err
	}
	return value, nil
}

// cover makes the token t, which made a lease, last until end if it can,
// since Vault revokes a token's leases with it, and returns when t
// expires as far as is known (zero: not known to expire). With the
// default mode or a login it renews t (renew-self) if t is renewable and
// would expire first; with a token file it looks t up again (the file's
// writer renews it), at most once per call. Failures are logged and leave
// what is known.
func (c *Client) cover(ctx context.Context, t *token, end time.Time) time.Time {
	short := func(x *token) bool { return x.known && !x.expires.IsZero() && x.expires.Before(end) }
	c.mu.Lock()
	cur := c.tok
	c.mu.Unlock()
	if cur == nil || cur.gen != t.gen || t.value == "" {
		return t.expires // replaced since the lease was made: t's last known end
	}
	tried := false
	got, err := c.refresh(ctx, func(time.Time) step {
		x := c.tok
		switch {
		case tried || x == nil || x.gen != t.gen || x.dead:
			return stepUse
		case c.mode == modeFile && (!x.lookedUp || short(x)):
			tried = true
			return stepLookup
		case c.mode != modeFile && short(x) && x.renewable && !x.atMax:
			tried = true
			return stepRenew
		}
		return stepUse
	})
	if err != nil || got == nil || got.gen != t.gen {
		return t.expires
	}
	return got.expires
}
