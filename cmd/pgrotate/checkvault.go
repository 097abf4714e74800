package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/vault"
)

// This file is check's -store vault: the credential read through a
// secrets/vault source, configured from the environment as Vault's own
// client is.

// parseVaultRole reads -vault-role (and -vault-mount): the kind of source
// (roleStatic, roleDynamic or "kv"), the mount ("" for the default) and the
// role's name or the KV path.
func parseVaultRole(role, mount string) (kind, m, name string, err error) {
	kind, name, ok := strings.Cut(role, ":")
	if !ok || name == "" {
		return "", "", "", errors.New("want static:NAME, dynamic:NAME or kv:MOUNT/PATH")
	}
	switch kind {
	case roleStatic, roleDynamic:
		if strings.Contains(name, "/") {
			return "", "", "", fmt.Errorf("a %s role's name holds no /; give the mount with -vault-mount", kind)
		}
		return kind, mount, name, nil
	case "kv":
		if mount != "" {
			return kind, mount, name, nil
		}
		m, p, ok := strings.Cut(strings.Trim(name, "/"), "/")
		if !ok || p == "" {
			return "", "", "", errors.New("kv: want MOUNT/PATH, such as kv:secret/prod/db (or -vault-mount and kv:PATH)")
		}
		return kind, m, p, nil
	}
	return "", "", "", fmt.Errorf("%q: want static, dynamic or kv before the colon", kind)
}

// vaultCheck is what check keeps of a Vault source.
type vaultCheck struct {
	kind string      // roleStatic, roleDynamic or "kv"
	api  *api.Client // the client of the environment, for lookup-self and the lease's revocation
	addr string      // where it sends requests
	path string      // what the source reads
	src  secrets.Source

	timeout time.Duration // of each call (-timeout)
	revoked bool          // the lease read was revoked (or tried)
}

// vaultSource builds the Vault source -vault-role names, on a client
// configured from the environment (api.NewClient(nil)).
func (c *checker) vaultSource(ctx context.Context) (secrets.Source, int) {
	kind, mount, name, _ := parseVaultRole(c.cfg.vaultRole, c.cfg.vaultMount) // checked with the flags
	apiClient, err := api.NewClient(nil)
	if err != nil {
		// The client's own messages name the variable and never a token.
		return nil, c.fail(exitSource, "source", "configuring the Vault client from the environment: %v", err)
	}
	var opts []vault.ClientOption
	if c.cfg.verbose {
		opts = append(opts, vault.WithLogger(newLogger(c.errw, true)))
	}
	vc, err := vault.NewClient(apiClient, opts...)
	if err != nil {
		return nil, c.fail(exitSource, "source", "%v", err)
	}
	v := &vaultCheck{kind: kind, api: apiClient, addr: apiClient.Address(), timeout: c.cfg.timeout}
	var src secrets.Source
	switch kind {
	case roleStatic:
		src, err = vault.StaticRole(vc, mount, name)
		v.path = cmpOrString(mount, "database") + "/static-creds/" + name
	case roleDynamic:
		src, err = vault.DynamicRole(vc, mount, name)
		v.path = cmpOrString(mount, "database") + "/creds/" + name
	default:
		src, err = vault.KV(vc, mount, name)
		v.path = strings.Trim(mount, "/") + "/data/" + strings.Trim(name, "/")
	}
	if err != nil {
		return nil, c.fail(exitUsage, "source", "%v", err)
	}
	v.src = src
	c.vault = v

	where := "VAULT_ADDR " + v.addr
	if os.Getenv("VAULT_ADDR") == "" {
		where = v.addr + " (VAULT_ADDR is not set: the client's default)"
	}
	if ns := apiClient.Namespace(); ns != "" {
		where += ", namespace " + ns
	}
	c.say("vault", "HashiCorp Vault at %s", where)
	c.vaultToken(ctx)
	return src, exitOK
}

func cmpOrString(s, def string) string {
	if s = strings.Trim(s, "/"); s == "" {
		return def
	}
	return s
}

// vaultToken reports the token the client sends, from lookup-self: never
// the token itself, only its accessor and lifetime.
func (c *checker) vaultToken(ctx context.Context) {
	if c.vault.api.Token() == "" {
		c.more("token: none (VAULT_TOKEN is not set); requests carry no token, as behind Vault Agent's API proxy")
		return
	}
	lctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	sec, err := c.vault.api.Auth().Token().LookupSelfWithContext(lctx)
	if err != nil {
		c.more("token: lookup-self failed (%s)", vaultCause(err))
		return
	}
	accessor, _ := sec.TokenAccessor()
	ttl, _ := sec.TokenTTL()
	renewable, _ := sec.TokenIsRenewable()
	policies, _ := sec.TokenPolicies()
	life := "no expiry"
	if ttl > 0 {
		life = "TTL " + ttl.String()
		if renewable {
			life += ", renewable (the source renews it once two thirds of its TTL have passed)"
		} else {
			life += ", not renewable"
		}
	}
	c.more("token: from VAULT_TOKEN, accessor %s, %s, policies %s", accessor, life, strings.Join(policies, ", "))
}

// describe prints what the credential says of its version and of when it
// changes, and what the connector will do about it.
func (v *vaultCheck) describe(c *checker, cred secrets.Credential, begin time.Time) {
	took := ms(time.Since(begin))
	switch v.kind {
	case roleStatic:
		c.say("credential", "username %q, last rotated %s (last_vault_rotation), read in %s (the password is never shown)",
			cred.Username, cred.Version, took)
		if cred.NextRotation.IsZero() {
			c.more("no rotation scheduled (the answer's ttl is 0)")
			return
		}
		c.more("next rotation at %s (in %s, the answer's ttl): the connector reads the new password just after it;",
			cred.NextRotation.UTC().Format(time.RFC3339), time.Until(cred.NextRotation).Round(time.Second))
		c.more("a rotation on demand (rotate-role) is learnt from the first login the database rejects")
	case roleDynamic:
		c.say("credential", "username %q, lease %s, read in %s (the password is never shown)", cred.Username, cred.Version, took)
		if cred.SessionsEnd.IsZero() {
			c.more("the lease has no end (lease_duration 0)")
			return
		}
		ttl := time.Until(cred.SessionsEnd).Round(time.Second)
		c.more("the lease ends at %s (in %s): Vault then drops the user, so the connector retires the lease's",
			cred.SessionsEnd.UTC().Format(time.RFC3339), ttl)
		c.more("connections WithSessionMargin before its end (SessionsEnd), and renews it, or reads the next")
		c.more("one, WithRefreshBeforeExpiry before that")
		// docs/vault.md: default_ttl well above margin + 1.5·lead.
		need := rotating.DefaultSessionMargin + rotating.DefaultRefreshBeforeExpiry*3/2
		if ttl < need {
			c.more("note: with the connector's defaults (WithSessionMargin(%v), WithRefreshBeforeExpiry(%v)) a lease",
				rotating.DefaultSessionMargin, rotating.DefaultRefreshBeforeExpiry)
			c.more("needs at least %v: give the connector smaller margins (say %v and %v) or the role a longer default_ttl",
				need, (ttl / 4).Round(time.Second), (ttl / 8).Round(time.Second))
		}
	default:
		c.say("credential", "username %q, KV version %s, read in %s (the password is never shown)", cred.Username, cred.Version, took)
		c.more("whoever rotates it writes a new version; a rejected login makes the connector read it again")
	}
}

// revoke revokes the lease a dynamic role's read made (its database user
// would otherwise live until the lease's end), and says so; once.
func (v *vaultCheck) revoke(ctx context.Context, c *checker, cred secrets.Credential) {
	if v.kind != roleDynamic || cred.Version == "" || v.revoked {
		return
	}
	v.revoked = true
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.timeout)
	defer cancel()
	if err := v.api.Sys().RevokeWithContext(rctx, cred.Version); err != nil {
		c.say("lease", "could not revoke the lease check read (%s): its user lives until the lease ends", vaultCause(err))
		return
	}
	c.say("lease", "revoked the lease check read (sys/leases/revoke): Vault drops its user %q", cred.Username)
}

// explain says what went wrong reading the credential from Vault and what
// to do about it. Errors of the vault package never hold a secret.
func (v *vaultCheck) explain(err error) string {
	var (
		netErr *net.OpError
		urlErr *url.Error
	)
	switch {
	case errors.Is(err, vault.ErrPermissionDenied):
		return fmt.Sprintf("Vault refused the token (403): its policies must allow read on %s%s, and the token "+
			"must be valid (not expired or revoked; check VAULT_TOKEN and VAULT_NAMESPACE): %v", v.path, v.leasePolicy(), err)
	case errors.Is(err, vault.ErrNotFound):
		return fmt.Sprintf("Vault has nothing at %s (404): check the name, the mount (-vault-mount) and, for KV, the path: %v", v.path, err)
	case errors.Is(err, vault.ErrSealed):
		return fmt.Sprintf("Vault at %s is sealed or not ready (503): unseal it, or wait for it: %v", v.addr, err)
	case errors.Is(err, secrets.ErrMalformed):
		hint := ""
		if v.kind == "kv" {
			hint = "; a KV secret needs the keys username and password (and optionally host, port, dbname)"
		}
		return "Vault's answer is not a usable credential: " + err.Error() + hint
	case errors.Is(err, secrets.ErrEmptyPassword):
		return "Vault's answer has no usable password: " + err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no answer from Vault at %s within %v (-timeout): %v", v.addr, v.timeout, err)
	case errors.As(err, &netErr), errors.As(err, &urlErr):
		return fmt.Sprintf("cannot reach Vault at %s: check VAULT_ADDR (and VAULT_CACERT for https): %v", v.addr, err)
	}
	var ve *vault.Error
	if errors.As(err, &ve) && ve.StatusCode == 400 {
		return fmt.Sprintf("Vault refused the request (400): %v; does the role exist under this mount (-vault-mount)?", err)
	}
	return err.Error()
}

// leasePolicy is what a dynamic role's token needs beyond read.
func (v *vaultCheck) leasePolicy() string {
	if v.kind == roleDynamic {
		return " (and update on sys/leases/renew)"
	}
	return ""
}

// vaultCause is the gist of a vault/api client error: the status and
// Vault's messages, without the request's URL.
func vaultCause(err error) string {
	var re *api.ResponseError
	if errors.As(err, &re) {
		msg := strings.Join(re.Errors, "; ")
		if re.RawError || msg == "" {
			return fmt.Sprintf("status %d", re.StatusCode)
		}
		return fmt.Sprintf("%d %s", re.StatusCode, msg)
	}
	return err.Error()
}
