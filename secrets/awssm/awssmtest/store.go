package awssmtest

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// secret is one secret and its versions. Every field is guarded by
// Server.mu.
type secret struct {
	name        string
	arn         string
	description string
	tags        []tag

	created      time.Time
	lastChanged  time.Time
	lastAccessed time.Time // a date: AWS reports access by day
	lastRotated  time.Time
	deleted      time.Time // when DeleteSecret scheduled the deletion; zero if not scheduled

	rotationEnabled bool
	rotationLambda  string
	rotationRules   *rotationRules
	// rotatingVersion is the version RotateSecret made; when AWSCURRENT
	// reaches it the rotation is complete and LastRotatedDate is set.
	rotatingVersion string

	versions map[string]*version
	order    []*version // by creation, for ListSecretVersionIds
}

// version is one version of a secret. A version made by RotateSecret has no
// value until PutSecretValue fills it.
type version struct {
	id           string
	str          *string
	bin          []byte
	stages       []string // a label is on at most one version of a secret
	created      time.Time
	lastAccessed time.Time
}

func (v *version) hasValue() bool { return v.str != nil || v.bin != nil }

func (v *version) hasStage(stage string) bool { return slices.Contains(v.stages, stage) }

// sameData reports whether str/bin is the value v holds.
func (v *version) sameData(str *string, bin []byte) bool {
	if (v.str == nil) != (str == nil) || (v.bin == nil) != (bin == nil) {
		return false
	}
	if str != nil && *v.str != *str {
		return false
	}
	return bytes.Equal(v.bin, bin)
}

// holder returns the version that carries stage, or nil.
func (sec *secret) holder(stage string) *version {
	for _, v := range sec.order {
		if v.hasStage(stage) {
			return v
		}
	}
	return nil
}

// addVersion records a new version without labels.
func (sec *secret) addVersion(id string, str *string, bin []byte, now time.Time) *version {
	v := &version{id: id, str: str, bin: bin, created: now}
	sec.versions[id] = v
	sec.order = append(sec.order, v)
	sec.lastChanged = now
	return v
}

// attachStage moves stage to v from whichever version had it. Moving
// AWSCURRENT moves AWSPREVIOUS to the version that had AWSCURRENT, as AWS
// does.
func (sec *secret) attachStage(stage string, v *version, now time.Time) {
	old := sec.holder(stage)
	if old == v {
		return
	}
	if old != nil {
		old.stages = slices.DeleteFunc(old.stages, func(s string) bool { return s == stage })
	}
	v.stages = append(v.stages, stage)
	sec.lastChanged = now
	if stage != StageCurrent {
		return
	}
	if old != nil {
		sec.attachStage(StagePrevious, old, now)
	}
	if sec.rotatingVersion == v.id {
		sec.rotatingVersion = ""
		sec.lastRotated = now
	}
}

// detachStage removes stage from whichever version has it.
func (sec *secret) detachStage(stage string, now time.Time) {
	if old := sec.holder(stage); old != nil {
		old.stages = slices.DeleteFunc(old.stages, func(s string) bool { return s == stage })
		sec.lastChanged = now
	}
}

// versionStages returns every version's labels; deprecated versions map
// to an empty slice when includeDeprecated is set and are left out
// otherwise.
func (sec *secret) versionStages(includeDeprecated bool) map[string][]string {
	m := make(map[string][]string, len(sec.order))
	for _, v := range sec.order {
		if len(v.stages) > 0 || includeDeprecated {
			m[v.id] = slices.Clone(v.stages)
			if m[v.id] == nil {
				m[v.id] = []string{}
			}
		}
	}
	return m
}

// now returns the current time at the millisecond resolution of the wire
// format, so that what the SDK reads back compares equal.
func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

// newUUID returns a random (version 4) UUID, the form of AWS version ids
// and of the SDK's idempotency tokens.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

const alphanumeric = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// newARN returns an ARN for name with AWS's random six-character suffix.
func newARN(name string) string {
	suffix := make([]byte, 6)
	for i := range suffix {
		suffix[i] = alphanumeric[randIndex(len(alphanumeric))]
	}
	return "arn:aws:secretsmanager:" + Region + ":" + AccountID + ":secret:" + name + "-" + string(suffix)
}

// lookup finds a secret by name or full ARN. Callers hold mu.
func (s *Server) lookup(secretID string) (*secret, *apiError) {
	if secretID == "" {
		return nil, errInvalidParameter("You must provide a value for the SecretId parameter.")
	}
	var sec *secret
	if strings.HasPrefix(secretID, "arn:") {
		sec = s.byARN[secretID]
	} else {
		sec = s.secrets[secretID]
	}
	if sec == nil {
		return nil, errNotFound("Secrets Manager can't find the specified secret.")
	}
	return sec, nil
}

// lookupLive is lookup for operations that a secret scheduled for deletion
// refuses.
func (s *Server) lookupLive(secretID string) (*secret, *apiError) {
	sec, err := s.lookup(secretID)
	if err != nil {
		return nil, err
	}
	if !sec.deleted.IsZero() {
		return nil, errInvalidRequest("You can't perform this operation on the secret because it was marked for deletion.")
	}
	return sec, nil
}

// addSecret records a new secret without versions. Callers hold mu and have
// checked that the name is free.
func (s *Server) addSecret(name string, t time.Time) *secret {
	sec := &secret{
		name:        name,
		arn:         newARN(name),
		created:     t,
		lastChanged: t,
		versions:    make(map[string]*version),
	}
	s.secrets[name] = sec
	s.byARN[sec.arn] = sec
	return sec
}

// removeSecret forgets sec at once. Callers hold mu.
func (s *Server) removeSecret(sec *secret) {
	delete(s.secrets, sec.name)
	delete(s.byARN, sec.arn)
}

// mustSecret is lookup for the Go test methods, which panic on misuse.
func (s *Server) mustSecret(method, name string) *secret {
	sec := s.secrets[name]
	if sec == nil {
		panic(fmt.Sprintf("awssmtest: %s: no secret named %q", method, name))
	}
	return sec
}

// CreateSecret creates a secret named name whose first version holds the
// SecretString value with label AWSCURRENT, as the CreateSecret operation
// does, and returns the secret's ARN and the version's id. It panics if a
// secret with that name exists.
func (s *Server) CreateSecret(name, value string) (arn, versionID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.secrets[name] != nil {
		panic(fmt.Sprintf("awssmtest: CreateSecret: secret %q already exists", name))
	}
	t := now()
	sec := s.addSecret(name, t)
	v := sec.addVersion(newUUID(), &value, nil, t)
	sec.attachStage(StageCurrent, v, t)
	return sec.arn, v.id
}

// PutValue adds a version holding the SecretString value to the secret
// named name, moves stages to it (AWSCURRENT if none are given, with
// AWSPREVIOUS following as PutSecretValue does) and returns its id. It
// panics if there is no such secret.
func (s *Server) PutValue(name, value string, stages ...string) (versionID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := s.mustSecret("PutValue", name)
	if len(stages) == 0 {
		stages = []string{StageCurrent}
	}
	t := now()
	v := sec.addVersion(newUUID(), &value, nil, t)
	for _, st := range stages {
		sec.attachStage(st, v, t)
	}
	return v.id
}

// MoveStage moves stage to version toVersion of the secret named name, with
// AWSPREVIOUS following AWSCURRENT as in UpdateSecretVersionStage, but
// without its checks. An empty toVersion removes stage from whichever
// version has it, which the API refuses for AWSCURRENT. It panics if the
// secret or the version does not exist.
func (s *Server) MoveStage(name, stage, toVersion string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := s.mustSecret("MoveStage", name)
	t := now()
	if toVersion == "" {
		sec.detachStage(stage, t)
		return
	}
	v := sec.versions[toVersion]
	if v == nil {
		panic(fmt.Sprintf("awssmtest: MoveStage: secret %q has no version %q", name, toVersion))
	}
	sec.attachStage(stage, v, t)
}

// Delete removes the secret named name at once, as DeleteSecret with
// ForceDeleteWithoutRecovery does; afterwards every operation on it answers
// ResourceNotFoundException. Deleting a secret that does not exist does
// nothing.
func (s *Server) Delete(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sec := s.secrets[name]; sec != nil {
		s.removeSecret(sec)
	}
}

// Versions returns the labels of every version of the secret named name,
// by version id, deprecated versions (those with no label) included with
// an empty slice. It returns nil if there is no such secret.
func (s *Server) Versions(name string) map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := s.secrets[name]
	if sec == nil {
		return nil
	}
	m := sec.versionStages(true)
	for _, stages := range m {
		slices.Sort(stages)
	}
	return m
}

// knownOp reports whether the server implements op.
func knownOp(op string) bool {
	_, ok := operations[op]
	return ok
}

// formatEpoch formats t as epoch seconds with milliseconds, the AWS JSON
// timestamp format.
func formatEpoch(t time.Time) string {
	ms := t.UnixMilli()
	sign := ""
	if ms < 0 {
		sign, ms = "-", -ms
	}
	return sign + strconv.FormatInt(ms/1000, 10) + "." + fmt.Sprintf("%03d", ms%1000)
}

// timestamp marshals as AWS JSON epoch seconds; omitzero leaves out a zero
// one.
type timestamp time.Time

func (t timestamp) IsZero() bool { return time.Time(t).IsZero() }

func (t timestamp) MarshalJSON() ([]byte, error) { return []byte(formatEpoch(time.Time(t))), nil }
