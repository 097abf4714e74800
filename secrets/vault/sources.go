package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/pgrotate/rotating/secrets"
)

// Compile-time checks.
var (
	_ secrets.Describer     = (*StaticRoleSource)(nil)
	_ secrets.PendingSource = (*DynamicRoleSource)(nil)
	_ secrets.Describer     = (*DynamicRoleSource)(nil)
	_ secrets.Describer     = (*KVSource)(nil)
)

// read makes one GET of path (with query, if any) and returns the body of
// Vault's successful answer, and the token that made the call.
func (c *Client) read(ctx context.Context, path string, query url.Values) ([]byte, *token, error) {
	var body []byte
	t, err := c.do(ctx, OpRead, path, func(cl *api.Client) error {
		resp, err := cl.Logical().ReadRawWithDataWithContext(ctx, path, query)
		if resp != nil {
			defer resp.Body.Close()
		}
		if err != nil {
			return err
		}
		body, err = readAnswer(resp.Body)
		return err
	})
	return body, t, err
}

// cleanMount checks a mount path, "" meaning def.
func cleanMount(what, mount, def string) (string, error) {
	if mount == "" {
		mount = def
	}
	mount = strings.Trim(mount, "/")
	if err := checkPath(mount); err != nil {
		return "", fmt.Errorf("vault: %s mount: %w", what, err)
	}
	return mount, nil
}

// checkPath refuses a path that the client would change on its way
// (path.Join cleans "." and ".." away) or that is empty.
func checkPath(p string) error {
	if p == "" {
		return errors.New("empty")
	}
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "", ".", "..":
			return fmt.Errorf("%q has an empty, . or .. segment", p)
		}
	}
	if strings.ContainsAny(p, "?#") {
		return fmt.Errorf("%q contains ? or #", p)
	}
	return nil
}

func checkName(what, name string) error {
	if name == "" || strings.ContainsAny(name, "/?#") || name == "." || name == ".." {
		return fmt.Errorf("vault: %s name %q is empty or holds / ? or #", what, name)
	}
	return nil
}

// StaticRoleSource reads the credential of a static role of Vault's
// database secrets engine: one database user whose password Vault
// changes in place, on the role's rotation_period or rotation_schedule or
// when database/rotate-role/:name is called. It implements
// [secrets.Source] and [secrets.Describer], is safe for concurrent use and
// caches nothing (the connector does).
type StaticRoleSource struct {
	c     *Client
	mount string
	name  string
	path  string
	log   *slog.Logger
}

// StaticRole returns a source for the static role name of the database
// secrets engine mounted at mount ("" means "database"). It takes no
// SourceOption today; opts is there for options to come.
func StaticRole(c *Client, mount, name string, opts ...SourceOption) (*StaticRoleSource, error) {
	if c == nil {
		return nil, errors.New("vault: nil client")
	}
	mount, err := cleanMount("database", mount, "database")
	if err != nil {
		return nil, err
	}
	if err := checkName("static role", name); err != nil {
		return nil, err
	}
	if _, err := newSourceConfig("StaticRole", opts); err != nil {
		return nil, err
	}
	path := mount + "/static-creds/" + name
	return &StaticRoleSource{c: c, mount: mount, name: name, path: path,
		log: c.log.With(slog.String("path", path))}, nil
}

// Describe returns "vault-static-role <mount>/<name>".
func (s *StaticRoleSource) Describe() string { return "vault-static-role " + s.mount + "/" + s.name }

// Fetch reads <mount>/static-creds/<name> (one Vault call, plus the
// token's upkeep: see [Client]). The credential's Version is the answer's
// last_vault_rotation, which changes with every rotation. NextRotation is
// the next scheduled rotation (the answer's ttl from the time the request
// was sent; the send time itself when ttl is 0 for a role with a
// rotation_period or rotation_schedule: the rotation is due), so the
// connector reads the new password just after Vault sets it. Expires is
// left zero: the password works until the rotation, so there is nothing
// to fetch ahead of it. A rotation on demand (rotate-role) is
// learnt from the first login the database rejects, which makes the
// connector call Fetch once for the whole process.
func (s *StaticRoleSource) Fetch(ctx context.Context) (secrets.Credential, error) {
	sent := time.Now()
	body, _, err := s.c.read(ctx, s.path, nil)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelDebug, "vault: read failed", slog.Any("error", err))
		return secrets.Credential{}, err
	}
	a, err := parseStatic(body)
	if err == nil {
		err = a.cred.Validate()
	}
	if err != nil {
		err = &Error{Op: OpRead, Path: s.path, Err: err}
		s.log.LogAttrs(ctx, slog.LevelDebug, "vault: answer unusable", slog.Any("error", err))
		return secrets.Credential{}, err
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, "vault: read static role", slog.String("username", a.cred.Username),
		slog.String("last_vault_rotation", a.lastRotation), slog.Duration("ttl", a.ttl))
	// Vault rounds ttl to whole seconds, and its rotation queue may run
	// late: a ttl of 0 from a role that rotates on a schedule means the
	// rotation is due now, and a NextRotation of now makes the connector
	// ask again after its longest backoff rather than never.
	if a.ttl > 0 || a.scheduled {
		a.cred.NextRotation = sent.Add(a.ttl)
	}
	return a.cred, nil
}

// KVSource reads a credential stored as a JSON object in Vault's KV
// version 2 secrets engine, as teams that rotate it themselves keep it:
//
//	vault kv put -mount=secret prod/db username=app password=... host=db.internal port=5432 dbname=app
//
// It implements [secrets.Source] and [secrets.Describer], is safe for
// concurrent use and caches nothing.
type KVSource struct {
	c       *Client
	mount   string
	path    string // inside the mount
	full    string // <mount>/data/<path>
	keys    secrets.Keys
	version int
	log     *slog.Logger
}

// KV returns a source for the secret at path in the KV version 2 engine
// mounted at mount ("" means "secret"). Options: [WithKeys], [WithVersion].
func KV(c *Client, mount, path string, opts ...SourceOption) (*KVSource, error) {
	if c == nil {
		return nil, errors.New("vault: nil client")
	}
	mount, err := cleanMount("KV", mount, "secret")
	if err != nil {
		return nil, err
	}
	path = strings.Trim(path, "/")
	if err := checkPath(path); err != nil {
		return nil, fmt.Errorf("vault: KV path: %w", err)
	}
	cfg, err := newSourceConfig("KV", opts, "WithKeys", "WithVersion")
	if err != nil {
		return nil, err
	}
	full := mount + "/data/" + path
	return &KVSource{c: c, mount: mount, path: path, full: full, keys: cfg.keys, version: cfg.version,
		log: c.log.With(slog.String("path", full))}, nil
}

// Describe returns "vault-kv <mount>/<path>", with " version <n>" when
// WithVersion pinned one.
func (s *KVSource) Describe() string {
	d := "vault-kv " + s.mount + "/" + s.path
	if s.version > 0 {
		d += " version " + strconv.Itoa(s.version)
	}
	return d
}

// Fetch reads <mount>/data/<path> (one Vault call, plus the token's
// upkeep) and parses its data with [secrets.ParseJSON]: username,
// password, host, port and dbname, or the keys given with WithKeys. The
// credential's Version is the KV version number. A deleted or destroyed
// version is an error wrapping secrets.ErrEmptyPassword (Vault answers 404
// for it: errors.Is(err, ErrNotFound) holds).
func (s *KVSource) Fetch(ctx context.Context) (secrets.Credential, error) {
	var query url.Values
	if s.version > 0 {
		query = url.Values{"version": {strconv.Itoa(s.version)}}
	}
	body, _, err := s.c.read(ctx, s.full, query)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelDebug, "vault: read failed", slog.Any("error", err))
		return secrets.Credential{}, err
	}
	a, err := parseKV(body, s.keys)
	if err == nil {
		err = a.cred.Validate()
	}
	if err != nil {
		err = &Error{Op: OpRead, Path: s.full, Err: err}
		s.log.LogAttrs(ctx, slog.LevelDebug, "vault: answer unusable", slog.Int64("version", a.version), slog.Any("error", err))
		return secrets.Credential{}, err
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, "vault: read KV secret", slog.String("version", a.cred.Version))
	return a.cred, nil
}

// DynamicRoleSource reads credentials of a dynamic role of Vault's
// database secrets engine, where every read creates a database user under
// a lease, and renews the lease while renewing extends it. It implements
// [secrets.PendingSource] and [secrets.Describer] and is safe for
// concurrent use. It remembers the last lease it returned, to renew it.
//
// # Renewal policy
//
// Fetch renews the lease it holds (one sys/leases/renew call) and returns
// the same login with the later SessionsEnd, unless one of these holds,
// in which case it reads a new credential (one database/creds call, a new
// lease and a new database user):
//
//   - it holds no lease (first use);
//   - the lease is not renewable, or its end has passed;
//   - the token that read the lease is no longer the Client's token (a
//     new login, a new token file): the lease dies with that token;
//   - the last renewal no longer extended it fully: Vault granted less
//     than the increment asked for, because the lease reached the role's
//     max_ttl (that renewal's credential, with the capped SessionsEnd, was
//     returned, so that the lease is used to its end);
//   - Vault refuses the renewal (400: lease not found, expired, past its
//     max_ttl; 403; 404): then the same Fetch reads.
//
// A renewal that fails otherwise (Vault sealed or down, a timeout) is
// returned as an error: the connector keeps the credential it has, whose
// connections it retires before the SessionsEnd it was last given, and
// asks again after its backoff.
//
// The old lease of a new read is left to end on its own: the connector
// retires its connections before its SessionsEnd, and Vault revokes it
// at its end.
type DynamicRoleSource struct {
	c         *Client
	mount     string
	role      string
	path      string
	increment time.Duration // 0: the lease's duration as read
	log       *slog.Logger

	mu   sync.Mutex
	held *lease // guarded by mu: the lease last returned, nil before
}

// lease is one lease a dynamic role's read made. Never modified once
// held: a renewal makes a new *lease.
type lease struct {
	id        string
	cred      secrets.Credential // as last returned
	duration  time.Duration      // as read: the default renewal increment
	renewable bool
	atMax     bool      // the last renewal was capped at the role's max_ttl
	end       time.Time // Vault's end of the lease, on the safe side
	tokenGen  uint64    // the token that read it
}

// DynamicRole returns a source for the dynamic role role of the database
// secrets engine mounted at mount ("" means "database"). Option:
// [WithLeaseIncrement].
func DynamicRole(c *Client, mount, role string, opts ...SourceOption) (*DynamicRoleSource, error) {
	if c == nil {
		return nil, errors.New("vault: nil client")
	}
	mount, err := cleanMount("database", mount, "database")
	if err != nil {
		return nil, err
	}
	if err := checkName("role", role); err != nil {
		return nil, err
	}
	cfg, err := newSourceConfig("DynamicRole", opts, "WithLeaseIncrement")
	if err != nil {
		return nil, err
	}
	path := mount + "/creds/" + role
	return &DynamicRoleSource{c: c, mount: mount, role: role, path: path, increment: cfg.increment,
		log: c.log.With(slog.String("path", path))}, nil
}

// Describe returns "vault-dynamic-role <mount>/<role>".
func (s *DynamicRoleSource) Describe() string { return "vault-dynamic-role " + s.mount + "/" + s.role }

// Fetch returns the credential of the lease it holds, renewed, or a new
// one: see the renewal policy at [DynamicRoleSource]. The credential's
// Version is the lease id and its SessionsEnd the lease's end (or the end
// of the token that made it, if that comes first and the token cannot be
// renewed beyond it).
func (s *DynamicRoleSource) Fetch(ctx context.Context) (secrets.Credential, error) {
	s.mu.Lock()
	held := s.held
	s.mu.Unlock()
	if held != nil {
		why, err := s.whyNotRenew(ctx, held)
		if err != nil {
			return secrets.Credential{}, err
		}
		if why == "" {
			cred, renewed, err := s.renew(ctx, held)
			if err != nil || renewed {
				return cred, err
			}
		} else {
			s.log.LogAttrs(ctx, slog.LevelDebug, "vault: reading a new lease", slog.String("lease_id", held.id), slog.String("reason", why))
		}
	}
	return s.read(ctx)
}

// FetchPending reads a new credential (a new lease), for the connector to
// try when the database rejected the one Fetch returned again: the lease
// was revoked early, or its user dropped behind Vault's back. It never
// returns the rejected login: if Vault returned it again, the error wraps
// secrets.ErrNoPending.
func (s *DynamicRoleSource) FetchPending(ctx context.Context, rejected secrets.Credential) (secrets.Credential, error) {
	cred, err := s.read(ctx)
	if err != nil {
		return secrets.Credential{}, err
	}
	if cred.SameLogin(rejected) {
		return secrets.Credential{}, &Error{Op: OpFetchPending, Path: s.path, LeaseID: cred.Version,
			Err: fmt.Errorf("%w: Vault returned the rejected login again", secrets.ErrNoPending)}
	}
	return cred, nil
}

// whyNotRenew says why held is not to be renewed, or "" if it is.
func (s *DynamicRoleSource) whyNotRenew(ctx context.Context, held *lease) (string, error) {
	switch {
	case !held.renewable:
		return "the lease is not renewable", nil
	case held.atMax:
		return "the lease reached its max_ttl", nil
	case !time.Now().Before(held.end):
		return "the lease has ended", nil
	}
	t, err := s.c.token(ctx)
	if err != nil {
		return "", err
	}
	if t.gen != held.tokenGen {
		return "the token that read the lease was replaced, and the lease ends with it", nil
	}
	return "", nil
}

const renewLeasePath = "sys/leases/renew"

// renew renews held. renewed is false, with no error, when Fetch should
// read a new credential instead.
func (s *DynamicRoleSource) renew(ctx context.Context, held *lease) (cred secrets.Credential, renewed bool, err error) {
	inc := s.increment
	if inc == 0 {
		inc = held.duration
	}
	inc = max(inc.Truncate(time.Second), time.Second)
	sent := time.Now()
	var sec *api.Secret
	t, err := s.c.do(ctx, OpRenewLease, renewLeasePath, func(cl *api.Client) error {
		var err error
		sec, err = cl.Sys().RenewWithContext(ctx, held.id, int(inc/time.Second))
		return err
	})
	if err != nil {
		var ve *Error
		if errors.As(err, &ve) && ve.Op == OpRenewLease {
			switch ve.StatusCode {
			case 400, 403, 404:
				s.log.LogAttrs(ctx, slog.LevelDebug, "vault: lease renewal refused; reading a new lease",
					slog.String("lease_id", held.id), slog.Any("error", describeCause(ve.Err)))
				return secrets.Credential{}, false, nil
			}
			e := *ve
			e.LeaseID = held.id
			err = &e
		}
		s.log.LogAttrs(ctx, slog.LevelDebug, "vault: lease renewal failed", slog.String("lease_id", held.id), slog.Any("error", err))
		return secrets.Credential{}, false, err
	}
	if sec == nil || sec.LeaseDuration <= 0 || (sec.LeaseID != "" && sec.LeaseID != held.id) {
		s.log.LogAttrs(ctx, slog.LevelDebug, "vault: lease renewal answer unusable; reading a new lease", slog.String("lease_id", held.id))
		return secrets.Credential{}, false, nil
	}
	got := time.Duration(sec.LeaseDuration) * time.Second
	if t.gen != held.tokenGen {
		// The call was repeated with a new token: the lease still ends
		// with the old one.
		return secrets.Credential{}, false, nil
	}
	next := *held
	next.end = endAfter(sent, int64(sec.LeaseDuration))
	next.renewable = sec.Renewable
	// Less than asked: capped at the role's max_ttl. The lease is used to
	// its end, and the next Fetch reads its successor.
	next.atMax = got < inc
	next.cred.SessionsEnd = s.sessionsEnd(ctx, t, next.id, next.end)
	s.mu.Lock()
	if s.held == held {
		s.held = &next
	}
	s.mu.Unlock()
	s.log.LogAttrs(ctx, slog.LevelDebug, "vault: renewed lease", slog.String("lease_id", next.id),
		slog.Duration("ttl", got), slog.Bool("max_ttl_reached", next.atMax), slog.Time("sessions_end", next.cred.SessionsEnd))
	return next.cred, true, nil
}

// read reads a new credential and holds its lease.
func (s *DynamicRoleSource) read(ctx context.Context) (secrets.Credential, error) {
	sent := time.Now()
	body, t, err := s.c.read(ctx, s.path, nil)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelDebug, "vault: read failed", slog.Any("error", err))
		return secrets.Credential{}, err
	}
	a, err := parseLease(body)
	if err == nil {
		err = a.cred.Validate()
	}
	if err != nil {
		err = &Error{Op: OpRead, Path: s.path, LeaseID: a.leaseID, Err: err}
		s.log.LogAttrs(ctx, slog.LevelDebug, "vault: answer unusable", slog.Any("error", err))
		return secrets.Credential{}, err
	}
	l := &lease{
		id:        a.leaseID,
		cred:      a.cred,
		duration:  time.Duration(a.duration) * time.Second,
		renewable: a.renewable,
		end:       endAfter(sent, a.duration),
		tokenGen:  t.gen,
	}
	l.cred.SessionsEnd = s.sessionsEnd(ctx, t, l.id, l.end)
	s.mu.Lock()
	s.held = l
	s.mu.Unlock()
	s.log.LogAttrs(ctx, slog.LevelDebug, "vault: read a new lease", slog.String("lease_id", l.id),
		slog.String("username", l.cred.Username), slog.Duration("ttl", l.duration),
		slog.Bool("renewable", l.renewable), slog.Time("sessions_end", l.cred.SessionsEnd))
	return l.cred, nil
}

// sessionsEnd is when the sessions of a lease that ends at end, made with
// token t, end: the lease's end, or t's expiry if t expires first and
// cannot be made to last (Vault revokes a token's leases with it).
func (s *DynamicRoleSource) sessionsEnd(ctx context.Context, t *token, leaseID string, end time.Time) time.Time {
	tokenEnd := s.c.cover(ctx, t, end)
	if !tokenEnd.IsZero() && tokenEnd.Before(end) {
		s.log.LogAttrs(ctx, slog.LevelWarn, "vault: the token expires before the lease, which ends with it; give the token a longer TTL than the role's max_ttl",
			slog.String("lease_id", leaseID), slog.String("accessor", t.accessor),
			slog.Time("lease_end", end), slog.Time("token_expires", tokenEnd))
		return tokenEnd
	}
	return end
}
