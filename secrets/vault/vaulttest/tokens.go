package vaulttest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
)

// TokenOptions configures a token made by [Server.CreateToken], as the
// parameters of auth/token/create do.
type TokenOptions struct {
	// TTL is the token's lifetime, and the default increment of a
	// renewal; zero means 768h, Vault's default. Whole seconds.
	TTL time.Duration

	// ExplicitMaxTTL bounds the token's life from its creation, renewals
	// included; zero means 768h. Whole seconds.
	ExplicitMaxTTL time.Duration

	// NotRenewable makes renew-self refuse the token.
	NotRenewable bool

	// Policies are reported by lookup-self and logins. The server does
	// not enforce them; inject a 403 fault to test a denial.
	Policies []string

	// NoDefaultPolicy leaves out the "default" policy Vault adds.
	NoDefaultPolicy bool

	// DisplayName is added to "token-" for the token's display name,
	// which the usernames of dynamic roles begin with; empty means
	// "token".
	DisplayName string

	// Meta is the token's metadata.
	Meta map[string]string
}

type token struct {
	id, accessor string
	displayName  string
	path         string
	policies     []string
	meta         map[string]string
	created      time.Time
	ttl          time.Duration // zero for a token that never expires (root)
	explicitMax  time.Duration
	renewable    bool
	orphan       bool

	// Guarded by Server.mu.
	expire   time.Time // zero: never
	timer    *time.Timer
	revoked  bool
	parent   *token
	children map[*token]struct{}
	leases   map[*lease]struct{}
}

func (t *token) expiredLocked(now time.Time) bool {
	return !t.expire.IsZero() && !now.Before(t.expire)
}

func (t *token) maxEnd() time.Time { return t.created.Add(cmpOr(t.explicitMax, systemMaxTTL)) }

// policiesFor returns the policies of a new token: the given ones sorted,
// with "default" unless left out.
func policiesFor(given []string, noDefault bool) []string {
	p := slices.Clone(given)
	if !noDefault && !slices.Contains(p, "default") {
		p = append(p, "default")
	}
	slices.Sort(p)
	return slices.Compact(p)
}

// newTokenLocked registers a token and starts its expiry timer.
func (s *Server) newTokenLocked(t *token, parent *token) {
	t.id, t.accessor = newToken(), randomString(24)
	t.created = time.Now()
	t.children = make(map[*token]struct{})
	t.leases = make(map[*lease]struct{})
	if t.ttl > 0 {
		t.expire = t.created.Add(min(t.ttl, cmpOr(t.explicitMax, systemMaxTTL)))
		t.timer = time.AfterFunc(time.Until(t.expire), func() { s.tokenTimerFired(t) })
	}
	if parent != nil && !t.orphan {
		t.parent = parent
		parent.children[t] = struct{}{}
	}
	s.tokens[t.id] = t
	s.byAccessor[t.accessor] = t
}

// CreateToken makes a token, as auth/token/create does for an orphan
// token, and returns its id.
func (s *Server) CreateToken(o TokenOptions) (string, error) {
	if err := errors.Join(wholeSeconds("TTL", o.TTL), wholeSeconds("ExplicitMaxTTL", o.ExplicitMaxTTL)); err != nil {
		return "", err
	}
	t := &token{
		displayName: tokenDisplayName(o.DisplayName), path: "auth/token/create",
		policies: policiesFor(o.Policies, o.NoDefaultPolicy), meta: maps.Clone(o.Meta),
		ttl: cmpOr(o.TTL, systemMaxTTL), explicitMax: o.ExplicitMaxTTL, renewable: !o.NotRenewable, orphan: true,
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", errors.New("vaulttest: CreateToken after Close")
	}
	s.newTokenLocked(t, nil)
	s.logInfo("token created", slog.String("accessor", t.accessor), slog.Duration("ttl", t.ttl))
	return t.id, nil
}

func tokenDisplayName(name string) string {
	if name == "" {
		return "token"
	}
	return "token-" + name
}

// TokenAccessor returns the accessor of the live token id (the non-secret
// name [Lease.TokenAccessor] and the logs use), or "".
func (s *Server) TokenAccessor(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.tokens[id]; t != nil {
		return t.accessor
	}
	return ""
}

// RevokeToken revokes the token id, the tokens created with it, and the
// leases of them all, as auth/token/revoke does. It returns when the
// leases are revoked, with the first revocation error. Revoking the root
// token is refused.
func (s *Server) RevokeToken(id string) error {
	s.mu.Lock()
	t := s.tokens[id]
	if t == nil || t.revoked {
		s.mu.Unlock()
		return errors.New("vaulttest: RevokeToken: no such token")
	}
	if id == s.root {
		s.mu.Unlock()
		return errors.New("vaulttest: RevokeToken: the root token cannot be revoked")
	}
	ending := s.revokeTokenLocked(t, EndTokenRevoked)
	s.mu.Unlock()
	return s.finishAll(ending)
}

// revokeTokenLocked revokes t and its children and begins the end of their
// leases, which the caller finishes with finishAll.
func (s *Server) revokeTokenLocked(t *token, reason EndReason) []*lease {
	if t.revoked {
		return nil
	}
	t.revoked = true
	if t.timer != nil {
		t.timer.Stop()
	}
	delete(s.tokens, t.id)
	delete(s.byAccessor, t.accessor)
	if t.parent != nil {
		delete(t.parent.children, t)
	}
	s.logInfo("token revoked", slog.String("accessor", t.accessor), slog.String("reason", string(reason)))
	var ending []*lease
	for l := range t.leases {
		if s.markEndingLocked(l, reason) {
			ending = append(ending, l)
		}
	}
	for c := range t.children {
		ending = append(ending, s.revokeTokenLocked(c, EndTokenRevoked)...)
	}
	return ending
}

// finishAll revokes leases at once, each on its own goroutine, and returns
// the first error.
func (s *Server) finishAll(ending []*lease) error {
	errs := make(chan error, len(ending))
	n := 0
	for _, l := range ending {
		if !s.enter() {
			break
		}
		n++
		go func() {
			defer s.work.Done()
			errs <- s.finishRevocation(s.ctx, l)
		}()
	}
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (s *Server) tokenTimerFired(t *token) {
	if !s.enter() {
		return
	}
	defer s.work.Done()
	s.mu.Lock()
	if t.revoked || !t.expiredLocked(time.Now()) {
		s.mu.Unlock()
		return
	}
	ending := s.revokeTokenLocked(t, EndTokenExpired)
	s.mu.Unlock()
	s.finishAll(ending)
}

// authLocked is the auth block for t, with the lease duration now.
func (s *Server) authLocked(t *token, now time.Time) *authBlock {
	var ttl int64
	if !t.expire.IsZero() {
		ttl = int64(max(t.expire.Sub(now), 0) / time.Second)
	}
	return &authBlock{
		ClientToken: t.id, Accessor: t.accessor, Policies: t.policies, TokenPolicies: t.policies,
		Metadata: t.meta, LeaseDuration: ttl, Renewable: t.renewable && t.ttl > 0,
		TokenType: "service", Orphan: t.orphan,
	}
}

func (s *Server) handleLookupSelf(r *request) (reply, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, now := r.token, time.Now()
	var expire any
	var ttl int64
	if !t.expire.IsZero() {
		expire = t.expire
		ttl = int64(max(t.expire.Sub(now).Round(time.Second), 0) / time.Second)
	}
	var meta any
	if t.meta != nil {
		meta = t.meta
	}
	return ok(&envelope{Data: map[string]any{
		"accessor": t.accessor, "creation_time": t.created.Unix(), "creation_ttl": int64(t.ttl / time.Second),
		"display_name": t.displayName, "entity_id": "", "expire_time": expire,
		"explicit_max_ttl": int64(t.explicitMax / time.Second), "id": t.id, "issue_time": t.created,
		"meta": meta, "num_uses": 0, "orphan": t.orphan, "path": t.path, "policies": t.policies,
		"renewable": t.renewable && t.ttl > 0, "ttl": ttl, "type": "service",
	}})
}

func (s *Server) handleRenewSelf(r *request) (reply, *apiError) {
	increment, err := secondsParam(r.body["increment"])
	if err != nil {
		return reply{}, badRequest("increment: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, now := r.token, time.Now()
	if t.revoked || t.expiredLocked(now) {
		return reply{}, errPermissionDenied
	}
	if !t.renewable || t.ttl == 0 {
		return reply{}, badRequest("lease is not renewable")
	}
	ttl := cmpOr(increment, t.ttl)
	left := t.maxEnd().Sub(now)
	if left <= 0 {
		return reply{}, badRequest("past the max TTL, cannot renew")
	}
	var warnings []string
	if ttl > left {
		warnings = append(warnings, fmt.Sprintf("TTL of %q exceeded the effective max_ttl of %q; TTL value is capped accordingly",
			humanDuration(ttl), humanDuration(left.Truncate(time.Second))))
		ttl = left
	}
	t.expire = now.Add(ttl)
	t.timer.Reset(ttl)
	s.logInfo("token renewed", slog.String("accessor", t.accessor), slog.Duration("ttl", ttl))
	return ok(&envelope{Auth: s.authLocked(t, now), Warnings: warnings})
}

func (s *Server) handleRevokeSelf(r *request) (reply, *apiError) {
	s.mu.Lock()
	if r.token.id == s.root {
		s.mu.Unlock()
		return reply{}, badRequest("cannot revoke the root token through this server")
	}
	ending := s.revokeTokenLocked(r.token, EndTokenRevoked)
	s.mu.Unlock()
	if err := s.finishAll(ending); err != nil {
		return reply{}, internalError(err)
	}
	return noContent()
}

func (s *Server) handleTokenCreate(r *request) (reply, *apiError) {
	var o TokenOptions
	var err error
	if o.TTL, err = secondsParam(r.body["ttl"]); err != nil {
		return reply{}, badRequest("ttl: %v", err)
	}
	if o.ExplicitMaxTTL, err = secondsParam(r.body["explicit_max_ttl"]); err != nil {
		return reply{}, badRequest("explicit_max_ttl: %v", err)
	}
	if v, isBool := r.body["renewable"].(bool); isBool {
		o.NotRenewable = !v
	}
	o.NoDefaultPolicy, _ = r.body["no_default_policy"].(bool)
	o.DisplayName, _ = r.body["display_name"].(string)
	if ps, isList := r.body["policies"].([]any); isList {
		for _, p := range ps {
			if str, isStr := p.(string); isStr {
				o.Policies = append(o.Policies, str)
			}
		}
	}
	if m, isMap := r.body["meta"].(map[string]any); isMap {
		o.Meta = map[string]string{}
		for k, v := range m {
			o.Meta[k] = fmt.Sprint(v)
		}
	}
	noParent, _ := r.body["no_parent"].(bool)
	t := &token{
		displayName: tokenDisplayName(o.DisplayName), path: "auth/token/create",
		policies: policiesFor(o.Policies, o.NoDefaultPolicy), meta: o.Meta,
		ttl: cmpOr(o.TTL, systemMaxTTL), explicitMax: o.ExplicitMaxTTL, renewable: !o.NotRenewable,
		orphan: noParent || strings.HasSuffix(r.path, "create-orphan"),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.token.revoked {
		return reply{}, errPermissionDenied
	}
	s.newTokenLocked(t, r.token)
	s.logInfo("token created", slog.String("accessor", t.accessor), slog.Duration("ttl", t.ttl))
	return ok(&envelope{Auth: s.authLocked(t, t.created)})
}

// AppRole configures an AppRole role for auth/approle/login.
type AppRole struct {
	// TokenTTL and TokenMaxTTL are the TTL and explicit max TTL of the
	// tokens a login issues; zero means 768h. Whole seconds.
	TokenTTL, TokenMaxTTL time.Duration
	// TokenPolicies are the tokens' policies ("default" is added).
	TokenPolicies []string
}

type appRole struct {
	name, roleID string
	cfg          AppRole
	secretIDs    map[string]bool // guarded by Server.mu
}

// SetAppRole creates or replaces the AppRole role name and returns its
// role_id and a first secret_id.
func (s *Server) SetAppRole(name string, r AppRole) (roleID, secretID string, err error) {
	if !roleNameRE.MatchString(name) {
		return "", "", fmt.Errorf("vaulttest: AppRole name %q: want letters, digits, _ . -", name)
	}
	if err := errors.Join(wholeSeconds("TokenTTL", r.TokenTTL), wholeSeconds("TokenMaxTTL", r.TokenMaxTTL)); err != nil {
		return "", "", err
	}
	r.TokenPolicies = slices.Clone(r.TokenPolicies)
	ar := &appRole{name: name, roleID: newUUID(), cfg: r, secretIDs: map[string]bool{}}
	secretID = newUUID()
	ar.secretIDs[secretID] = true
	s.mu.Lock()
	defer s.mu.Unlock()
	s.appRoles[name] = ar
	return ar.roleID, secretID, nil
}

// NewSecretID issues another secret_id for the AppRole role name.
func (s *Server) NewSecretID(name string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ar := s.appRoles[name]
	if ar == nil {
		return "", fmt.Errorf("vaulttest: no AppRole %q", name)
	}
	id := newUUID()
	ar.secretIDs[id] = true
	return id, nil
}

func (s *Server) handleAppRoleLogin(r *request) (reply, *apiError) {
	roleID, _ := r.body["role_id"].(string)
	secretID, _ := r.body["secret_id"].(string)
	if roleID == "" {
		return reply{}, badRequest("missing role_id")
	}
	if secretID == "" {
		return reply{}, badRequest("missing secret_id")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var ar *appRole
	for _, a := range s.appRoles {
		if hmac.Equal([]byte(a.roleID), []byte(roleID)) {
			ar = a
		}
	}
	if ar == nil || !ar.secretIDs[secretID] {
		return reply{}, badRequest("invalid role or secret ID")
	}
	t := &token{
		displayName: "approle", path: "auth/approle/login",
		policies: policiesFor(ar.cfg.TokenPolicies, false), meta: map[string]string{"role_name": ar.name},
		ttl: cmpOr(ar.cfg.TokenTTL, systemMaxTTL), explicitMax: ar.cfg.TokenMaxTTL, renewable: true, orphan: true,
	}
	s.newTokenLocked(t, nil)
	s.logInfo("approle login", slog.String("role", ar.name), slog.String("accessor", t.accessor))
	return ok(&envelope{Auth: s.authLocked(t, t.created)})
}

// KubernetesRole configures a role for auth/kubernetes/login.
type KubernetesRole struct {
	// BoundServiceAccountNames and BoundServiceAccountNamespaces are the
	// service accounts allowed to log in; "*" allows any.
	BoundServiceAccountNames      []string
	BoundServiceAccountNamespaces []string
	// TokenTTL and TokenMaxTTL are the TTL and explicit max TTL of the
	// tokens a login issues; zero means 768h. Whole seconds.
	TokenTTL, TokenMaxTTL time.Duration
	// TokenPolicies are the tokens' policies ("default" is added).
	TokenPolicies []string
}

type k8sRole struct {
	name string
	cfg  KubernetesRole
}

// SetKubernetesRole creates or replaces the Kubernetes auth role name.
// Logins present a JWT from [Server.KubernetesJWT].
func (s *Server) SetKubernetesRole(name string, r KubernetesRole) error {
	if !roleNameRE.MatchString(name) {
		return fmt.Errorf("vaulttest: Kubernetes role name %q: want letters, digits, _ . -", name)
	}
	if err := errors.Join(wholeSeconds("TokenTTL", r.TokenTTL), wholeSeconds("TokenMaxTTL", r.TokenMaxTTL)); err != nil {
		return err
	}
	if len(r.BoundServiceAccountNames) == 0 || len(r.BoundServiceAccountNamespaces) == 0 {
		return errors.New("vaulttest: SetKubernetesRole: bound service account names and namespaces must be set (\"*\" for any)")
	}
	r.BoundServiceAccountNames = slices.Clone(r.BoundServiceAccountNames)
	r.BoundServiceAccountNamespaces = slices.Clone(r.BoundServiceAccountNamespaces)
	r.TokenPolicies = slices.Clone(r.TokenPolicies)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.k8sRoles[name] = &k8sRole{name: name, cfg: r}
	return nil
}

// Claims of a Kubernetes service account token.
const (
	claimNamespace  = "kubernetes.io/serviceaccount/namespace"
	claimSAName     = "kubernetes.io/serviceaccount/service-account.name"
	claimSAUID      = "kubernetes.io/serviceaccount/service-account.uid"
	claimSecretName = "kubernetes.io/serviceaccount/secret.name"
)

// KubernetesJWT returns a service account token for serviceAccount in
// namespace, in the format of the token Kubernetes mounts at
// /var/run/secrets/kubernetes.io/serviceaccount/token, signed with a key of
// this server. Write it to a file for a client that reads it there.
// Unlike Vault, which asks the Kubernetes API (TokenReview) whether a
// token is valid, the server checks its own signature.
func (s *Server) KubernetesJWT(namespace, serviceAccount string) string {
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	claims, _ := json.Marshal(map[string]any{
		"iss":           "kubernetes/serviceaccount",
		"sub":           "system:serviceaccount:" + namespace + ":" + serviceAccount,
		claimNamespace:  namespace,
		claimSAName:     serviceAccount,
		claimSAUID:      s.serviceAccountUID(namespace, serviceAccount),
		claimSecretName: serviceAccount + "-token",
	})
	unsigned := header + "." + enc.EncodeToString(claims)
	return unsigned + "." + enc.EncodeToString(s.sign(unsigned))
}

func (s *Server) sign(msg string) []byte {
	m := hmac.New(sha256.New, s.k8sKey)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// serviceAccountUID is a stable UUID-shaped id for a service account.
func (s *Server) serviceAccountUID(namespace, name string) string {
	h := hex.EncodeToString(s.sign("uid/" + namespace + "/" + name)[:16])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// verifyJWT returns the claims of a JWT this server signed.
func (s *Server) verifyJWT(jwt string) (map[string]any, bool) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return nil, false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, s.sign(parts[0]+"."+parts[1])) {
		return nil, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, false
	}
	var claims map[string]any
	if json.Unmarshal(raw, &claims) != nil {
		return nil, false
	}
	return claims, true
}

func bound(list []string, v string) bool {
	return slices.Contains(list, "*") || slices.Contains(list, v)
}

func (s *Server) handleK8sLogin(r *request) (reply, *apiError) {
	roleName, _ := r.body["role"].(string)
	jwt, _ := r.body["jwt"].(string)
	if roleName == "" {
		return reply{}, badRequest("missing role")
	}
	if jwt == "" {
		return reply{}, badRequest("missing jwt")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	role := s.k8sRoles[roleName]
	if role == nil {
		return reply{}, badRequest("invalid role name %q", roleName)
	}
	claims, valid := s.verifyJWT(jwt)
	if !valid {
		return reply{}, errPermissionDenied
	}
	ns, _ := claims[claimNamespace].(string)
	sa, _ := claims[claimSAName].(string)
	uid, _ := claims[claimSAUID].(string)
	secretName, _ := claims[claimSecretName].(string)
	if !bound(role.cfg.BoundServiceAccountNamespaces, ns) {
		return reply{}, errorf(http.StatusForbidden, "namespace not authorized")
	}
	if !bound(role.cfg.BoundServiceAccountNames, sa) {
		return reply{}, errorf(http.StatusForbidden, "service account name not authorized")
	}
	t := &token{
		displayName: "kubernetes-" + ns + "-" + sa, path: "auth/kubernetes/login",
		policies: policiesFor(role.cfg.TokenPolicies, false),
		meta: map[string]string{"role": roleName, "service_account_name": sa, "service_account_namespace": ns,
			"service_account_uid": uid, "service_account_secret_name": secretName},
		ttl: cmpOr(role.cfg.TokenTTL, systemMaxTTL), explicitMax: role.cfg.TokenMaxTTL, renewable: true, orphan: true,
	}
	s.newTokenLocked(t, nil)
	s.logInfo("kubernetes login", slog.String("role", roleName), slog.String("namespace", ns),
		slog.String("service_account", sa), slog.String("accessor", t.accessor))
	return ok(&envelope{Auth: s.authLocked(t, t.created)})
}
