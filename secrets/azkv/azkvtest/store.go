package azkvtest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"time"
)

// secret is one secret and its versions. Every field is guarded by
// Server.mu.
type secret struct {
	name     string
	versions []*version // in creation order; the last one is the latest
	deleted  time.Time  // when DeleteSecret deleted it; zero if it is live
}

// version is one version of a secret.
type version struct {
	id          string
	value       string
	contentType string
	tags        map[string]string
	enabled     bool
	notBefore   time.Time // zero: not set
	expires     time.Time // zero: not set
	created     time.Time
	updated     time.Time
}

// latest returns the secret's newest version, which Key Vault returns for a
// GetSecret without a version, enabled or not.
func (sec *secret) latest() *version { return sec.versions[len(sec.versions)-1] }

// find returns the version with id, or nil.
func (sec *secret) find(id string) *version {
	for _, v := range sec.versions {
		if v.id == id {
			return v
		}
	}
	return nil
}

// validName matches what Key Vault accepts as a secret name.
var validName = regexp.MustCompile(`^[0-9A-Za-z-]{1,127}$`)

// newVersionID returns a version id in Key Vault's form: 32 lowercase hex
// digits.
func newVersionID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic("azkvtest: " + err.Error()) // crypto/rand does not fail
	}
	return hex.EncodeToString(b)
}

// addVersion appends a new enabled version holding value to the secret
// name, creating the secret if needed. Callers hold mu and have checked
// that the name is valid and not deleted.
func (s *Server) addVersion(name, value string, now time.Time) *version {
	sec := s.secrets[name]
	if sec == nil {
		sec = &secret{name: name}
		s.secrets[name] = sec
	}
	v := &version{id: newVersionID(), value: value, enabled: true, created: now, updated: now}
	sec.versions = append(sec.versions, v)
	return v
}

// mustVersion returns the live secret name's version id ("" for the
// latest), panicking if there is none: the Go methods are for tests, whose
// mistakes should stop them.
func (s *Server) mustVersion(method, name, id string) *version {
	sec := s.secrets[name]
	if sec == nil || !sec.deleted.IsZero() {
		panic(fmt.Sprintf("azkvtest: %s: no secret %q", method, name))
	}
	if id == "" {
		return sec.latest()
	}
	v := sec.find(id)
	if v == nil {
		panic(fmt.Sprintf("azkvtest: %s: secret %q has no version %q", method, name, id))
	}
	return v
}

// SetSecret adds a new, enabled version holding value to the secret name,
// creating the secret if it does not exist, as the SetSecret operation
// does, and returns the version's id. The new version becomes the latest.
// It panics if name is not a valid Key Vault secret name (1 to 127
// letters, digits and dashes) or the secret is deleted.
func (s *Server) SetSecret(name, value string) (versionID string) {
	if !validName.MatchString(name) {
		panic(fmt.Sprintf("azkvtest: SetSecret: %q is not a valid secret name", name))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sec := s.secrets[name]; sec != nil && !sec.deleted.IsZero() {
		panic(fmt.Sprintf("azkvtest: SetSecret: secret %q is deleted", name))
	}
	return s.addVersion(name, value, time.Now()).id
}

// SetEnabled enables or disables a version of the secret name (versionID
// "" is the latest), as UpdateSecretProperties does. GetSecret on a
// disabled version answers 403 Forbidden with the inner error code
// SecretDisabled. It panics if there is no such version.
func (s *Server) SetEnabled(name, versionID string, enabled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.mustVersion("SetEnabled", name, versionID)
	v.enabled = enabled
	v.updated = time.Now()
}

// SetExpires sets the expiry attribute ("exp") of a version of the secret
// name (versionID "" is the latest); a zero t removes it. Like Key Vault,
// the server still returns the value of an expired version. It panics if
// there is no such version.
func (s *Server) SetExpires(name, versionID string, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.mustVersion("SetExpires", name, versionID)
	v.expires = t
	v.updated = time.Now()
}

// Delete deletes the secret name with all its versions, as DeleteSecret
// does in a vault with soft delete: GetSecret answers 404 SecretNotFound,
// and SetSecret answers 409 Conflict until [Server.Purge]. It panics if
// there is no such live secret.
func (s *Server) Delete(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mustVersion("Delete", name, "")
	s.secrets[name].deleted = time.Now()
}

// Purge removes the secret name, deleted or not, so that the name can be
// used again. It does nothing if there is no such secret.
func (s *Server) Purge(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.secrets, name)
}

// VersionInfo describes one version of a secret, without its value.
type VersionInfo struct {
	ID      string
	Enabled bool
	Expires time.Time // zero: no expiry set
	Created time.Time
}

// Versions returns the versions of the live secret name, oldest first
// (the last is the latest), or nil if there is no such secret.
func (s *Server) Versions(name string) []VersionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := s.secrets[name]
	if sec == nil || !sec.deleted.IsZero() {
		return nil
	}
	out := make([]VersionInfo, 0, len(sec.versions))
	for _, v := range sec.versions {
		out = append(out, VersionInfo{ID: v.id, Enabled: v.enabled, Expires: v.expires, Created: v.created})
	}
	return out
}
