package azkvtest

import (
	"bytes"
	"encoding/json"
	"maps"
	"net/http"
	"time"
)

// Key Vault's soft-delete settings, reported in every answer.
const (
	recoveryLevel   = "Recoverable+Purgeable"
	recoverableDays = 90
)

// attributesJSON is a version's attributes as Key Vault writes them: times
// in Unix seconds.
type attributesJSON struct {
	Enabled         bool   `json:"enabled"`
	NotBefore       int64  `json:"nbf,omitempty"`
	Expires         int64  `json:"exp,omitempty"`
	Created         int64  `json:"created"`
	Updated         int64  `json:"updated"`
	RecoveryLevel   string `json:"recoveryLevel"`
	RecoverableDays int32  `json:"recoverableDays"`
}

// bundleJSON is a SecretBundle (with a value) or a SecretItem (without).
type bundleJSON struct {
	Value       *string           `json:"value,omitempty"`
	ID          string            `json:"id"`
	ContentType string            `json:"contentType,omitempty"`
	Attributes  attributesJSON    `json:"attributes"`
	Tags        map[string]string `json:"tags,omitempty"`
}

// deletedBundleJSON is a DeletedSecretBundle.
type deletedBundleJSON struct {
	bundleJSON
	RecoveryID         string `json:"recoveryId"`
	DeletedDate        int64  `json:"deletedDate"`
	ScheduledPurgeDate int64  `json:"scheduledPurgeDate"`
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// bundle describes v of the secret name; withValue adds the value.
func (s *Server) bundle(name string, v *version, withValue bool) bundleJSON {
	b := bundleJSON{
		ID:          s.url + "/secrets/" + name + "/" + v.id,
		ContentType: v.contentType,
		Attributes: attributesJSON{
			Enabled:         v.enabled,
			NotBefore:       unixOrZero(v.notBefore),
			Expires:         unixOrZero(v.expires),
			Created:         v.created.Unix(),
			Updated:         v.updated.Unix(),
			RecoveryLevel:   recoveryLevel,
			RecoverableDays: recoverableDays,
		},
		Tags: maps.Clone(v.tags),
	}
	if withValue {
		value := v.value
		b.Value = &value
	}
	return b
}

// dispatch runs the operation rt asks for with the request body.
func (s *Server) dispatch(rt route, body []byte) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	switch rt.op {
	case OpGetSecret:
		v, e := s.lookup(rt)
		if e != nil {
			return nil, e
		}
		if !v.enabled {
			return nil, &apiError{status: http.StatusForbidden, code: "Forbidden",
				innerCode: "SecretDisabled", message: "Operation get is not allowed on a disabled secret."}
		}
		return s.bundle(rt.name, v, true), nil

	case OpSetSecret:
		var in struct {
			Value       *string           `json:"value"`
			ContentType *string           `json:"contentType"`
			Attributes  *attributesInput  `json:"attributes"`
			Tags        map[string]string `json:"tags"`
		}
		if err := decodeBody(body, &in); err != nil {
			return nil, err
		}
		if in.Value == nil {
			return nil, errBadParameter("Property value is required.")
		}
		if sec := s.secrets[rt.name]; sec != nil && !sec.deleted.IsZero() {
			return nil, newAPIError(http.StatusConflict, "Conflict",
				"Secret %s is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged.", rt.name)
		}
		v := s.addVersion(rt.name, *in.Value, now)
		if in.ContentType != nil {
			v.contentType = *in.ContentType
		}
		v.tags = maps.Clone(in.Tags)
		if in.Attributes != nil {
			in.Attributes.apply(v)
		}
		return s.bundle(rt.name, v, true), nil

	case OpUpdateSecretProperties:
		v, e := s.lookup(rt)
		if e != nil {
			return nil, e
		}
		var in struct {
			ContentType *string           `json:"contentType"`
			Attributes  *attributesInput  `json:"attributes"`
			Tags        map[string]string `json:"tags"`
		}
		if err := decodeBody(body, &in); err != nil {
			return nil, err
		}
		if in.ContentType != nil {
			v.contentType = *in.ContentType
		}
		if in.Tags != nil {
			v.tags = maps.Clone(in.Tags)
		}
		if in.Attributes != nil {
			in.Attributes.apply(v)
		}
		v.updated = now
		return s.bundle(rt.name, v, false), nil

	case OpListSecretPropertiesVersions:
		sec := s.secrets[rt.name]
		if sec == nil || !sec.deleted.IsZero() {
			return nil, errSecretNotFound(rt.name)
		}
		items := make([]bundleJSON, 0, len(sec.versions))
		for _, v := range sec.versions {
			items = append(items, s.bundle(rt.name, v, false))
		}
		return struct {
			Value    []bundleJSON `json:"value"`
			NextLink *string      `json:"nextLink"`
		}{Value: items}, nil

	case OpDeleteSecret:
		sec := s.secrets[rt.name]
		if sec == nil || !sec.deleted.IsZero() {
			return nil, errSecretNotFound(rt.name)
		}
		sec.deleted = now
		return deletedBundleJSON{
			bundleJSON:         s.bundle(rt.name, sec.latest(), false),
			RecoveryID:         s.url + "/deletedsecrets/" + rt.name,
			DeletedDate:        now.Unix(),
			ScheduledPurgeDate: now.Add(recoverableDays * 24 * time.Hour).Unix(),
		}, nil
	}
	return nil, errBadParameter("operation %s is not implemented", rt.op)
}

// lookup returns the version rt names. Callers hold mu.
func (s *Server) lookup(rt route) (*version, *apiError) {
	sec := s.secrets[rt.name]
	if sec == nil || !sec.deleted.IsZero() {
		return nil, errSecretNotFound(rt.name)
	}
	if rt.version == "" {
		return sec.latest(), nil
	}
	v := sec.find(rt.version)
	if v == nil {
		return nil, errSecretNotFound(rt.name + "/" + rt.version)
	}
	return v, nil
}

// attributesInput is the attributes of a SetSecret or
// UpdateSecretProperties request. A JSON null removes nbf or exp.
type attributesInput struct {
	Enabled   *bool
	NotBefore optionalTime
	Expires   optionalTime
}

type optionalTime struct {
	set bool      // the key was present
	t   time.Time // zero for null
}

func (a *attributesInput) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	if v, ok := raw["enabled"]; ok && !isNull(v) {
		var b bool
		if err := json.Unmarshal(v, &b); err != nil {
			return err
		}
		a.Enabled = &b
	}
	for key, dst := range map[string]*optionalTime{"nbf": &a.NotBefore, "exp": &a.Expires} {
		v, ok := raw[key]
		if !ok {
			continue
		}
		dst.set = true
		if isNull(v) {
			continue
		}
		var secs int64
		if err := json.Unmarshal(v, &secs); err != nil {
			return err
		}
		dst.t = time.Unix(secs, 0)
	}
	return nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// apply sets the attributes a names on v.
func (a *attributesInput) apply(v *version) {
	if a.Enabled != nil {
		v.enabled = *a.Enabled
	}
	if a.NotBefore.set {
		v.notBefore = a.NotBefore.t
	}
	if a.Expires.set {
		v.expires = a.Expires.t
	}
}

// decodeBody parses a JSON request body into v. The error does not quote
// the body, which may hold a secret value.
func decodeBody(body []byte, v any) *apiError {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return errBadParameter("The request body is not a valid JSON object of the operation's parameters.")
	}
	return nil
}
