package vaulttest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// systemMaxTTL is Vault's default (and maximum) lease and token TTL, 768
// hours, used where a role or token sets none.
const systemMaxTTL = 768 * time.Hour

// DynamicRole configures a role of the database secrets engine whose every
// read of creds/:role creates a new PostgreSQL role under a lease, as
// Vault's database/roles/:name does.
type DynamicRole struct {
	// DefaultTTL is the lease duration of new credentials and the default
	// renewal increment; zero means 768h, Vault's default. It must be
	// whole seconds.
	DefaultTTL time.Duration

	// MaxTTL bounds a lease's life from its creation, renewals included;
	// zero means 768h. It must be whole seconds.
	MaxTTL time.Duration

	// CreationStatements create the role. Vault's template fields
	// {{name}}, {{password}} and {{expiration}} are filled in; a string
	// may hold several statements separated by semicolons. They run in
	// one transaction. Empty means Vault's default:
	//
	//	CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';
	//
	// Add the GRANTs the application needs, such as
	// `GRANT SELECT, INSERT ON app_table TO "{{name}}";`.
	CreationStatements []string

	// RenewStatements run on each renewal; empty means
	// `ALTER ROLE "{{name}}" VALID UNTIL '{{expiration}}';`.
	RenewStatements []string

	// RevocationStatements run when the lease ends, before the role's
	// sessions are ended and the role is dropped; empty means Vault's
	// default: REVOKE ALL on the tables and sequences of every schema the
	// role has grants in, REVOKE USAGE on those schemas and REVOKE
	// CONNECT on the database.
	RevocationStatements []string

	// KeepSessions leaves the role's open sessions running when the lease
	// ends, as Vault itself does: they fail with permission errors
	// (SQLSTATE 42501) from the REVOKE on. By default the server makes
	// the role NOLOGIN and ends them with pg_terminate_backend.
	KeepSessions bool
}

// StaticRole configures a static role: one existing PostgreSQL role whose
// password the server changes in place, as Vault's
// database/static-roles/:name does.
type StaticRole struct {
	// Username is the PostgreSQL role. It must exist.
	Username string

	// RotationPeriod is how often the password changes; it must be at
	// least a second, and whole seconds.
	RotationPeriod time.Duration

	// RotationStatements change the password; empty means
	// `ALTER ROLE "{{name}}" WITH PASSWORD '{{password}}';`.
	RotationStatements []string
}

// EndReason says why a lease ended.
type EndReason string

// The reasons a lease ends.
const (
	EndExpired      EndReason = "expired"       // its TTL (or max_ttl) ran out
	EndRevoked      EndReason = "revoked"       // sys/leases/revoke
	EndRevokedEarly EndReason = "revoked early" // Server.RevokeLease, before its end
	EndTokenRevoked EndReason = "token revoked" // the token that created it was revoked
	EndTokenExpired EndReason = "token expired" // the token that created it expired
	EndClosed       EndReason = "server closed" // Server.Close
)

// Lease is a snapshot of a dynamic role's lease, for tests' assertions.
// It holds no password.
type Lease struct {
	ID            string // "<mount>/creds/<role>/<random>"
	Role          string // the dynamic role's name
	Username      string // the PostgreSQL role it created
	TokenAccessor string // the accessor of the token that created it

	IssueTime     time.Time
	ExpireTime    time.Time // the current end, moved by renewals
	MaxExpireTime time.Time // IssueTime + the role's max_ttl
	ValidUntil    time.Time // the VALID UNTIL last set in PostgreSQL: ExpireTime + 5 s, as Vault sets it
	LastRenewal   time.Time // zero if never renewed
	Renewals      int       // successful renewals

	// Ended is set once the lease has ended: by expiry, revocation or its
	// token. EndedAt is when its revocation began, EndReason why.
	Ended     bool
	EndReason EndReason
	EndedAt   time.Time

	// RevokedAt is when the revocation finished (the role dropped); zero
	// while it runs or if it failed (then RevokeError says why; the server
	// retries).
	RevokedAt   time.Time
	RevokeError string

	// SessionsAtEnd is the number of sessions of the role that were open
	// when the revocation began: sessions that outlived the lease.
	// SessionsAfterEnd is the number still open after they were
	// terminated (and, with KeepSessions, all of them), before DROP ROLE.
	SessionsAtEnd    int
	SessionsAfterEnd int
}

// StaticRoleState is a snapshot of a static role, for tests' assertions.
// It holds no password.
type StaticRoleState struct {
	Name           string
	Username       string
	RotationPeriod time.Duration
	LastRotation   time.Time // last_vault_rotation
	NextRotation   time.Time
	Rotations      int    // successful rotations, the one SetStaticRole makes included
	LastError      string // of the last failed rotation, "" after a success
}

type dynamicRole struct {
	name string
	cfg  DynamicRole
}

func (r *dynamicRole) ttl() time.Duration {
	ttl := cmpOr(r.cfg.DefaultTTL, systemMaxTTL)
	return min(ttl, r.maxTTL())
}

func (r *dynamicRole) maxTTL() time.Duration { return cmpOr(r.cfg.MaxTTL, systemMaxTTL) }

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

type leaseState int

const (
	leaseActive leaseState = iota
	leaseEnding            // revocation begun (or failed and being retried)
	leaseEnded             // revoked
)

type lease struct {
	id, role, username string
	issue, maxEnd      time.Time
	renewStmts         []string
	revokeStmts        []string
	keepSessions       bool
	tokenAccessor      string

	// ops serialises the PostgreSQL work on this lease's role (renewals,
	// the revocation), in order; take it with a context.
	ops chan struct{}

	// Guarded by Server.mu.
	state       leaseState
	token       *token
	expire      time.Time
	validUntil  time.Time
	lastRenewal time.Time
	renewals    int
	timer       *time.Timer
	reason      EndReason
	endedAt     time.Time
	revokedAt   time.Time
	revokeErr   string
	attempts    int
	atEnd       int
	afterEnd    int
	counted     bool // atEnd was measured
}

// snapshotLocked copies l for the Go API.
func (l *lease) snapshotLocked() Lease {
	return Lease{
		ID: l.id, Role: l.role, Username: l.username, TokenAccessor: l.tokenAccessor,
		IssueTime: l.issue, ExpireTime: l.expire, MaxExpireTime: l.maxEnd, ValidUntil: l.validUntil,
		LastRenewal: l.lastRenewal, Renewals: l.renewals,
		Ended: l.state != leaseActive, EndReason: l.reason, EndedAt: l.endedAt,
		RevokedAt: l.revokedAt, RevokeError: l.revokeErr,
		SessionsAtEnd: l.atEnd, SessionsAfterEnd: l.afterEnd,
	}
}

type staticRole struct {
	name string
	cfg  StaticRole
	ops  chan struct{} // serialises rotations

	// Guarded by Server.mu.
	password     string
	lastRotation time.Time
	rotations    int
	lastErr      string
	timer        *time.Timer
	removed      bool // replaced by a later SetStaticRole
}

// roleNameRE is what the server accepts as a role name: it becomes part of
// lease ids and generated usernames.
var roleNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// usernameRE is what the server accepts as a static role's username: the
// templates quote it with double quotes, so it must not hold one.
var usernameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.@$-]{0,62}$`)

func wholeSeconds(name string, d time.Duration) error {
	if d < 0 || d%time.Second != 0 {
		return fmt.Errorf("vaulttest: %s %v: want a non-negative whole number of seconds", name, d)
	}
	return nil
}

// SetRole creates or replaces the dynamic role name. Leases of the role
// that exist keep the settings they were made with.
func (s *Server) SetRole(name string, r DynamicRole) error {
	if !roleNameRE.MatchString(name) {
		return fmt.Errorf("vaulttest: role name %q: want letters, digits, _ . -", name)
	}
	if err := errors.Join(wholeSeconds("DefaultTTL", r.DefaultTTL), wholeSeconds("MaxTTL", r.MaxTTL)); err != nil {
		return err
	}
	if s.db == nil {
		return errors.New("vaulttest: SetRole: the server has no database (NewServer was given a nil *sql.DB)")
	}
	r.CreationStatements = slices.Clone(r.CreationStatements)
	r.RenewStatements = slices.Clone(r.RenewStatements)
	r.RevocationStatements = slices.Clone(r.RevocationStatements)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.roles[name] = &dynamicRole{name: name, cfg: r}
	return nil
}

// SetStaticRole creates or replaces the static role name and rotates its
// password at once, as Vault does when a static role is created; the next
// rotation is one RotationPeriod later.
func (s *Server) SetStaticRole(ctx context.Context, name string, r StaticRole) error {
	if !roleNameRE.MatchString(name) {
		return fmt.Errorf("vaulttest: static role name %q: want letters, digits, _ . -", name)
	}
	if !usernameRE.MatchString(r.Username) {
		return fmt.Errorf("vaulttest: static role %s: username %q: want a plain PostgreSQL identifier", name, r.Username)
	}
	if err := wholeSeconds("RotationPeriod", r.RotationPeriod); err != nil {
		return err
	}
	if r.RotationPeriod < time.Second {
		return fmt.Errorf("vaulttest: static role %s: RotationPeriod must be at least 1s", name)
	}
	if s.db == nil {
		return errors.New("vaulttest: SetStaticRole: the server has no database (NewServer was given a nil *sql.DB)")
	}
	r.RotationStatements = slices.Clone(r.RotationStatements)
	sr := &staticRole{name: name, cfg: r, ops: make(chan struct{}, 1)}
	if err := s.rotate(ctx, sr); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.statics[name]; old != nil {
		old.removed = true
		if old.timer != nil {
			old.timer.Stop()
		}
	}
	if s.closed {
		return errors.New("vaulttest: SetStaticRole after Close")
	}
	s.statics[name] = sr
	s.scheduleRotationLocked(sr, sr.cfg.RotationPeriod)
	return nil
}

// RotateRole rotates the static role name's password now, as
// rotate-role/:name does; the next rotation is one RotationPeriod later.
func (s *Server) RotateRole(ctx context.Context, name string) error {
	s.mu.Lock()
	sr := s.statics[name]
	s.mu.Unlock()
	if sr == nil {
		return fmt.Errorf("vaulttest: no static role %q", name)
	}
	return s.rotate(ctx, sr)
}

// StaticRoleState returns the state of the static role name.
func (s *Server) StaticRoleState(name string) (StaticRoleState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sr := s.statics[name]
	if sr == nil {
		return StaticRoleState{}, false
	}
	return StaticRoleState{
		Name: sr.name, Username: sr.cfg.Username, RotationPeriod: sr.cfg.RotationPeriod,
		LastRotation: sr.lastRotation, NextRotation: sr.lastRotation.Add(sr.cfg.RotationPeriod),
		Rotations: sr.rotations, LastError: sr.lastErr,
	}, true
}

// rotate sets a new password on sr's role, then makes it the one
// static-creds answers: the old password stops working before anyone is
// told the new one. It schedules the next rotation, RotationPeriod after a
// success, 10 s after a failure (as Vault retries).
func (s *Server) rotate(ctx context.Context, sr *staticRole) error {
	select {
	case sr.ops <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-sr.ops }()
	pw := newPassword()
	stmts := render(cmpStmts(sr.cfg.RotationStatements, defaultRotation), sr.cfg.Username, pw, time.Time{})
	err := s.db.alter(ctx, stmts)
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		err = redact(fmt.Errorf("vaulttest: rotating static role %s (user %s): %w", sr.name, sr.cfg.Username, err), pw)
		sr.lastErr = err.Error()
		if sr.timer != nil && !sr.removed {
			s.scheduleRotationLocked(sr, 10*time.Second)
		}
		s.logWarn("static role rotation failed", slog.String("role", sr.name), slog.String("username", sr.cfg.Username), slog.Any("error", err))
		return err
	}
	sr.password, sr.lastRotation, sr.lastErr = pw, now, ""
	sr.rotations++
	if sr.timer != nil && !sr.removed {
		s.scheduleRotationLocked(sr, sr.cfg.RotationPeriod)
	}
	s.logInfo("static role rotated", slog.String("role", sr.name), slog.String("username", sr.cfg.Username), slog.Int("rotations", sr.rotations))
	return nil
}

// scheduleRotationLocked (re)arms sr's rotation timer to fire after d.
func (s *Server) scheduleRotationLocked(sr *staticRole, d time.Duration) {
	if s.closed {
		return
	}
	if sr.timer == nil {
		sr.timer = time.AfterFunc(d, func() {
			if !s.enter() {
				return
			}
			defer s.work.Done()
			s.mu.Lock()
			due := !sr.removed && !time.Now().Before(sr.lastRotation.Add(sr.cfg.RotationPeriod))
			failed := sr.lastErr != ""
			s.mu.Unlock()
			if due || failed {
				s.rotate(s.ctx, sr) // a failure is recorded and retried
			}
		})
		return
	}
	sr.timer.Reset(d)
}

func cmpStmts(stmts []string, def string) []string {
	if len(stmts) == 0 {
		return []string{def}
	}
	return stmts
}

// trunc returns s cut to n bytes.
func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// newUsername builds a username as Vault's PostgreSQL plugin does:
// v-<display name>-<role>-<20 random>-<unix time>, cut to 63 bytes.
func newUsername(displayName, role string, now time.Time) string {
	return trunc(fmt.Sprintf("v-%s-%s-%s-%d", trunc(displayName, 8), trunc(role, 8), randomString(20), now.Unix()), 63)
}

func (s *Server) handleCreds(r *request) (reply, *apiError) {
	name := strings.TrimPrefix(r.path, s.cfg.dbMount+"/creds/")
	s.mu.Lock()
	role := s.roles[name]
	s.mu.Unlock()
	if role == nil {
		return reply{}, badRequest("unknown role: %s", name)
	}
	now := time.Now()
	ttl := role.ttl()
	l := &lease{
		id:           s.cfg.dbMount + "/creds/" + name + "/" + randomString(24),
		role:         name,
		username:     newUsername(r.token.displayName, name, now),
		issue:        now,
		maxEnd:       now.Add(role.maxTTL()),
		renewStmts:   cmpStmts(role.cfg.RenewStatements, defaultRenewal),
		revokeStmts:  role.cfg.RevocationStatements,
		keepSessions: role.cfg.KeepSessions,
		ops:          make(chan struct{}, 1),
		expire:       now.Add(ttl),
	}
	l.validUntil = l.expire.Add(validUntilSlack)
	password := newPassword()
	stmts := render(cmpStmts(role.cfg.CreationStatements, defaultCreation), l.username, password, l.validUntil)
	if err := s.db.create(r.ctx, stmts); err != nil {
		err = redact(fmt.Errorf("creating role %s for %s: %w", l.username, name, err), password)
		s.logWarn("creating a dynamic role failed", slog.String("role", name), slog.Any("error", err))
		return reply{}, internalError(err)
	}

	s.mu.Lock()
	t := r.token
	l.token, l.tokenAccessor = t, t.accessor
	s.leases[l.id] = l
	s.leaseOrder = append(s.leaseOrder, l)
	dead := t.revoked || t.expiredLocked(time.Now())
	if dead {
		// The token died while the role was being created: the lease
		// dies with it.
		s.markEndingLocked(l, EndTokenRevoked)
	} else {
		t.leases[l] = struct{}{}
		l.timer = time.AfterFunc(time.Until(l.expire), func() { s.leaseTimerFired(l) })
	}
	s.mu.Unlock()
	s.logInfo("lease created", slog.String("lease_id", l.id), slog.String("username", l.username),
		slog.Duration("ttl", ttl), slog.String("token_accessor", l.tokenAccessor))
	if dead {
		s.finishRevocation(s.ctx, l)
		return reply{}, errPermissionDenied
	}
	return ok(&envelope{
		LeaseID: l.id, Renewable: true, LeaseDuration: int64(ttl / time.Second),
		Data: map[string]any{"username": l.username, "password": password},
	})
}

// leaseTimerFired ends l if its end has come; a renewal may have moved it.
func (s *Server) leaseTimerFired(l *lease) {
	if !s.enter() {
		return
	}
	defer s.work.Done()
	s.mu.Lock()
	if l.state != leaseActive || time.Now().Before(l.expire) {
		s.mu.Unlock()
		return
	}
	s.markEndingLocked(l, EndExpired)
	s.mu.Unlock()
	s.finishRevocation(s.ctx, l)
}

// markEndingLocked begins l's end: from now on it cannot be renewed. It
// reports false if l had ended already.
func (s *Server) markEndingLocked(l *lease, reason EndReason) bool {
	if l.state != leaseActive {
		return false
	}
	l.state, l.reason, l.endedAt = leaseEnding, reason, time.Now()
	if l.timer != nil {
		l.timer.Stop()
	}
	if l.token != nil {
		delete(l.token.leases, l)
	}
	return true
}

// finishRevocation revokes l's role in PostgreSQL (l must be ending, or
// active at Close) and records the outcome. A failure is retried later
// unless the server is closing.
func (s *Server) finishRevocation(ctx context.Context, l *lease) error {
	select {
	case l.ops <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-l.ops }()
	s.mu.Lock()
	switch l.state {
	case leaseEnded:
		s.mu.Unlock()
		return nil
	case leaseActive: // Close
		s.markEndingLocked(l, EndClosed)
	}
	s.mu.Unlock()

	res := s.db.revoke(ctx, l.username, render(l.revokeStmts, l.username, "", time.Time{}), l.keepSessions)
	now := time.Now()

	s.mu.Lock()
	l.attempts++
	if !l.counted && (res.revocationError == nil || res.sessionsAtEnd > 0 || res.roleWasAbsent) {
		l.atEnd, l.counted = res.sessionsAtEnd, true
	}
	l.afterEnd = res.sessionsAfter
	var err error
	if res.revocationError != nil {
		err = redact(fmt.Errorf("vaulttest: revoking lease %s (user %s): %w", l.id, l.username, res.revocationError))
		l.revokeErr = err.Error()
		if !s.closed {
			// Retry later, as Vault does, with a growing delay.
			delay := min(time.Duration(1<<min(l.attempts, 5))*time.Second, 30*time.Second)
			l.timer = time.AfterFunc(delay, func() {
				if !s.enter() {
					return
				}
				defer s.work.Done()
				s.finishRevocation(s.ctx, l)
			})
		}
	} else {
		l.state, l.revokedAt, l.revokeErr = leaseEnded, now, ""
	}
	snap, attempts, closed := l.snapshotLocked(), l.attempts, s.closed
	s.mu.Unlock()

	if err != nil {
		s.logWarn("lease revocation failed", slog.String("lease_id", l.id), slog.String("username", l.username),
			slog.Int("attempt", attempts), slog.Any("error", err))
		if closed && s.cfg.onLeaseEnd != nil {
			s.cfg.onLeaseEnd(snap)
		}
		return err
	}
	s.logInfo("lease ended", slog.String("lease_id", l.id), slog.String("username", l.username),
		slog.String("reason", string(snap.EndReason)), slog.Int("sessions_at_end", snap.SessionsAtEnd),
		slog.Int("terminated", res.terminated), slog.Duration("revocation", now.Sub(snap.EndedAt)))
	if s.cfg.onLeaseEnd != nil {
		s.cfg.onLeaseEnd(snap)
	}
	return nil
}

// Leases returns every lease the server made, in order of creation, ended
// ones included.
func (s *Server) Leases() []Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Lease, len(s.leaseOrder))
	for i, l := range s.leaseOrder {
		out[i] = l.snapshotLocked()
	}
	return out
}

// Lease returns the lease id.
func (s *Server) Lease(id string) (Lease, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.leases[id]
	if l == nil {
		return Lease{}, false
	}
	return l.snapshotLocked(), true
}

// ErrNoLease is returned by [Server.RevokeLease] for a lease that does not
// exist or has ended already.
var ErrNoLease = errors.New("vaulttest: no such active lease")

// RevokeLease ends the lease id now, before its end, as Vault sometimes
// does (an operator's revoke-prefix, a lost token, a failover): its role's
// privileges are revoked, its sessions ended and the role dropped. It
// returns when the revocation has finished, with its error if it failed
// (the server then retries), or [ErrNoLease].
func (s *Server) RevokeLease(ctx context.Context, id string) error {
	s.mu.Lock()
	l := s.leases[id]
	if l == nil || !s.markEndingLocked(l, EndRevokedEarly) {
		s.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrNoLease, id)
	}
	s.mu.Unlock()
	return s.finishRevocation(ctx, l)
}

// leaseIDOf returns the lease id of a sys/leases request: in the body, or
// after the operation in the path.
func leaseIDOf(r *request, prefixes ...string) string {
	if v, ok := r.body["lease_id"].(string); ok && v != "" {
		return v
	}
	for _, p := range prefixes {
		if id, ok := strings.CutPrefix(r.path, p); ok && id != "" {
			return id
		}
	}
	return ""
}

// secondsParam reads a duration parameter as Vault does: a number of
// seconds, or a string holding one or a Go duration ("90s", "1h").
func secondsParam(v any) (time.Duration, error) {
	switch x := v.(type) {
	case nil:
		return 0, nil
	case float64:
		if x < 0 || x != float64(int64(x)) {
			return 0, errors.New("want a non-negative whole number of seconds")
		}
		return time.Duration(x) * time.Second, nil
	case string:
		if x == "" {
			return 0, nil
		}
		if n, err := strconv.ParseInt(x, 10, 64); err == nil && n >= 0 {
			return time.Duration(n) * time.Second, nil
		}
		d, err := time.ParseDuration(x)
		if err != nil || d < 0 {
			return 0, errors.New("want a number of seconds or a duration such as \"1h\"")
		}
		return d.Truncate(time.Second), nil
	}
	return 0, errors.New("want a number of seconds or a duration such as \"1h\"")
}

func (s *Server) handleLeaseRenew(r *request) (reply, *apiError) {
	id := leaseIDOf(r, "sys/leases/renew/", "sys/renew/")
	if id == "" {
		return reply{}, badRequest("lease_id must be specified")
	}
	increment, err := secondsParam(r.body["increment"])
	if err != nil {
		return reply{}, badRequest("increment: %v", err)
	}
	s.mu.Lock()
	l := s.leases[id]
	s.mu.Unlock()
	if l == nil {
		return reply{}, badRequest("lease not found")
	}
	select {
	case l.ops <- struct{}{}:
	case <-r.ctx.Done():
		return reply{}, internalError(r.ctx.Err())
	}
	defer func() { <-l.ops }()

	s.mu.Lock()
	now := time.Now()
	switch {
	case l.state == leaseEnded:
		s.mu.Unlock()
		return reply{}, badRequest("lease not found")
	case l.state == leaseEnding || !now.Before(l.expire):
		s.mu.Unlock()
		return reply{}, badRequest("lease expired")
	}
	role := s.roles[l.role]
	ttl := increment
	if ttl <= 0 {
		ttl = systemMaxTTL
		if role != nil {
			ttl = role.ttl()
		}
	}
	var warnings []string
	if left := l.maxEnd.Sub(now); ttl > left {
		warnings = append(warnings, fmt.Sprintf("TTL of %q exceeded the effective max_ttl of %q; TTL value is capped accordingly",
			humanDuration(ttl), humanDuration(left.Truncate(time.Second))))
		ttl = left
	}
	l.expire = now.Add(ttl)
	l.validUntil = l.expire.Add(validUntilSlack)
	l.lastRenewal = now
	l.renewals++
	l.timer.Reset(ttl)
	validUntil := l.validUntil
	s.mu.Unlock()

	if err := s.db.alter(r.ctx, render(l.renewStmts, l.username, "", validUntil)); err != nil {
		err = redact(fmt.Errorf("renewing lease %s (user %s): %w", l.id, l.username, err))
		s.logWarn("lease renewal failed", slog.String("lease_id", l.id), slog.Any("error", err))
		return reply{}, internalError(err)
	}
	s.logInfo("lease renewed", slog.String("lease_id", l.id), slog.Duration("ttl", ttl))
	return ok(&envelope{LeaseID: l.id, Renewable: true, LeaseDuration: int64(ttl / time.Second), Warnings: warnings})
}

// humanDuration formats d as Vault's warnings do ("1h", "10s", "1m30s").
func humanDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if i := strings.Index(s, "h0m"); i > 0 {
		s = s[:i+1] + s[i+3:]
	}
	return s
}

func (s *Server) handleLeaseLookup(r *request) (reply, *apiError) {
	id := leaseIDOf(r)
	if id == "" {
		return reply{}, badRequest("lease_id must be specified")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.leases[id]
	if l == nil || l.state == leaseEnded {
		return reply{}, badRequest("invalid lease")
	}
	now := time.Now()
	ttl := max(l.expire.Sub(now).Round(time.Second), 0)
	var last any
	if !l.lastRenewal.IsZero() {
		last = l.lastRenewal
	}
	return ok(&envelope{Data: map[string]any{
		"id": l.id, "issue_time": l.issue, "expire_time": l.expire, "last_renewal": last,
		"renewable": l.state == leaseActive && now.Before(l.expire), "ttl": int64(ttl / time.Second),
	}})
}

func (s *Server) handleLeaseRevoke(r *request) (reply, *apiError) {
	id := leaseIDOf(r, "sys/leases/revoke/", "sys/revoke/")
	if id == "" {
		return reply{}, badRequest("lease_id must be specified")
	}
	s.mu.Lock()
	l := s.leases[id]
	started := l != nil && s.markEndingLocked(l, EndRevoked)
	s.mu.Unlock()
	if !started {
		// Vault answers success for a lease that does not exist.
		return noContent()
	}
	if sync, isBool := r.body["sync"].(bool); isBool && !sync {
		if s.enter() {
			go func() {
				defer s.work.Done()
				s.finishRevocation(s.ctx, l)
			}()
		}
		return reply{status: http.StatusAccepted, body: &envelope{}}, nil
	}
	if err := s.finishRevocation(s.ctx, l); err != nil {
		return reply{}, internalError(err)
	}
	return noContent()
}

func (s *Server) handleStaticCreds(r *request) (reply, *apiError) {
	name := strings.TrimPrefix(r.path, s.cfg.dbMount+"/static-creds/")
	s.mu.Lock()
	defer s.mu.Unlock()
	sr := s.statics[name]
	if sr == nil {
		return reply{}, badRequest("unknown role: %s", name)
	}
	ttl := max(time.Until(sr.lastRotation.Add(sr.cfg.RotationPeriod)).Round(time.Second), 0)
	return ok(&envelope{Data: map[string]any{
		"username":            sr.cfg.Username,
		"password":            sr.password,
		"last_vault_rotation": sr.lastRotation,
		"rotation_period":     int64(sr.cfg.RotationPeriod / time.Second),
		"ttl":                 int64(ttl / time.Second),
	}})
}

func (s *Server) handleRotateRole(r *request) (reply, *apiError) {
	name := strings.TrimPrefix(r.path, s.cfg.dbMount+"/rotate-role/")
	s.mu.Lock()
	sr := s.statics[name]
	s.mu.Unlock()
	if sr == nil {
		return reply{}, badRequest("no static role found for role name")
	}
	if err := s.rotate(r.ctx, sr); err != nil {
		return reply{}, internalError(fmt.Errorf("unable to finish rotating credentials; retries will continue in the background but it is also safe to retry manually: %w", err))
	}
	return noContent()
}
