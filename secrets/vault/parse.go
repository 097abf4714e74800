package vault

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/pgrotate/rotating/secrets"
)

// maxAnswer bounds the size of an answer read from Vault. A credential's
// answer is well under a kilobyte.
const maxAnswer = 1 << 20

// endAfter is when a lifetime of seconds stated in an answer to a request
// sent at sent ends, on the safe side: Vault counts from when it handled
// the request, which is after it was sent, and states whole seconds
// (rounded, for a lifetime of whole seconds from an instant after sent, or
// truncated), so the end is never earlier than this for the whole-second
// TTLs Vault's roles and tokens have. The connector's WithSessionMargin
// covers the rest (network delay, a TTL set in fractions of a second).
func endAfter(sent time.Time, seconds int64) time.Time {
	return sent.Add(time.Duration(seconds) * time.Second)
}

// readAnswer reads a successful answer's body, at most maxAnswer bytes.
func readAnswer(body io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(body, maxAnswer+1))
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if len(data) > maxAnswer {
		return nil, fmt.Errorf("%w: the answer is larger than %d bytes", secrets.ErrMalformed, maxAnswer)
	}
	return data, nil
}

// object is a JSON object whose members are parsed one by one, so that no
// error ever quotes a value: Vault's answers hold passwords.
type object struct {
	name    string // the object's path in the answer, for errors: "data"
	members map[string]json.RawMessage
}

// parseAnswer parses body as the JSON object of a Vault answer.
func parseAnswer(body []byte) (object, error) {
	// encoding/json would replace invalid UTF-8 with U+FFFD, silently
	// changing a password.
	if !utf8.Valid(body) {
		return object{}, fmt.Errorf("%w: the answer is not valid UTF-8", secrets.ErrMalformed)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return object{}, fmt.Errorf("%w: the answer is not a JSON object", secrets.ErrMalformed)
	}
	if m == nil {
		return object{}, fmt.Errorf("%w: the answer is null", secrets.ErrMalformed)
	}
	return object{members: m}, nil
}

func (o object) field(key string) string {
	if o.name == "" {
		return key
	}
	return o.name + "." + key
}

// get returns the raw member key, or nil if it is missing or null.
func (o object) get(key string) json.RawMessage {
	raw, ok := o.members[key]
	if !ok || string(bytes.TrimSpace(raw)) == "null" {
		return nil
	}
	return raw
}

func (o object) wrongType(key string, raw json.RawMessage, want string) error {
	return fmt.Errorf("%w: %s is %s, want %s", secrets.ErrMalformed, o.field(key), kind(raw), want)
}

// object returns the member key as an object; present is false if it is
// missing or null.
func (o object) object(key string) (sub object, present bool, err error) {
	raw := o.get(key)
	if raw == nil {
		return object{}, false, nil
	}
	if raw[0] != '{' {
		return object{}, true, o.wrongType(key, raw, "an object")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return object{}, true, fmt.Errorf("%w: %s is not a valid JSON object", secrets.ErrMalformed, o.field(key))
	}
	return object{name: o.field(key), members: m}, true, nil
}

// string returns the member key as a string ("" if missing or null). A NUL
// byte in it is an error: the PostgreSQL protocol cannot carry it.
func (o object) string(key string) (string, bool, error) {
	raw := o.get(key)
	if raw == nil {
		return "", false, nil
	}
	if raw[0] != '"' {
		return "", true, o.wrongType(key, raw, "a string")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", true, fmt.Errorf("%w: %s is not a valid JSON string", secrets.ErrMalformed, o.field(key))
	}
	if bytes.IndexByte([]byte(s), 0) >= 0 {
		return "", true, fmt.Errorf("%w: %s contains a NUL byte", secrets.ErrMalformed, o.field(key))
	}
	return s, true, nil
}

// maxSeconds bounds a number read by seconds: over 30,000 years.
const maxSeconds = 1 << 40

// seconds returns the member key as a whole, non-negative number (a TTL
// or a version), 0 if missing or null.
func (o object) seconds(key string) (int64, bool, error) {
	raw := o.get(key)
	if raw == nil {
		return 0, false, nil
	}
	switch raw[0] {
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
	default:
		return 0, true, o.wrongType(key, raw, "a number")
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f < 0 || f > maxSeconds || f != math.Trunc(f) {
		return 0, true, fmt.Errorf("%w: %s is not a whole number of seconds in range", secrets.ErrMalformed, o.field(key))
	}
	return int64(f), true, nil
}

// bool returns the member key as a boolean, false if missing or null.
func (o object) bool(key string) (bool, error) {
	raw := o.get(key)
	switch {
	case raw == nil:
		return false, nil
	case string(raw) == "true":
		return true, nil
	case string(raw) == "false":
		return false, nil
	}
	return false, o.wrongType(key, raw, "a boolean")
}

// kind names the kind of JSON value raw holds, for errors that must not
// quote it.
func kind(raw json.RawMessage) string {
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	default:
		return "a number"
	}
}

// login reads data.username and data.password, as both database/creds and
// database/static-creds answer them.
func (o object) login() (secrets.Credential, error) {
	data, present, err := o.object("data")
	if err != nil {
		return secrets.Credential{}, err
	}
	if !present {
		return secrets.Credential{}, fmt.Errorf("%w: the answer has no data", secrets.ErrMalformed)
	}
	user, _, err := data.string("username")
	if err != nil {
		return secrets.Credential{}, err
	}
	if user == "" {
		return secrets.Credential{}, fmt.Errorf("%w: data.username is missing or empty", secrets.ErrMalformed)
	}
	password, present, err := data.string("password")
	if err != nil {
		return secrets.Credential{}, err
	}
	if password == "" {
		problem := "is empty"
		if !present {
			problem = "is missing or null"
		}
		return secrets.Credential{}, fmt.Errorf("%w: data.password %s", secrets.ErrEmptyPassword, problem)
	}
	return secrets.Credential{Username: user, Password: password}, nil
}

// staticAnswer is what a database/static-creds answer says.
type staticAnswer struct {
	cred         secrets.Credential
	lastRotation string        // last_vault_rotation, as Vault wrote it
	ttl          time.Duration // to the next scheduled rotation; 0 if not stated
	// scheduled: the role rotates on a rotation_period or a
	// rotation_schedule, so a ttl of 0 means the rotation is due now.
	scheduled bool
}

func parseStatic(body []byte) (staticAnswer, error) {
	o, err := parseAnswer(body)
	if err != nil {
		return staticAnswer{}, err
	}
	cred, err := o.login()
	if err != nil {
		return staticAnswer{}, err
	}
	data, _, _ := o.object("data") // present and an object: login checked
	var a staticAnswer
	if a.lastRotation, _, err = data.string("last_vault_rotation"); err != nil {
		return staticAnswer{}, err
	}
	ttl, _, err := data.seconds("ttl")
	if err != nil {
		return staticAnswer{}, err
	}
	a.ttl = time.Duration(ttl) * time.Second
	// Only whether the role has a schedule matters here; a field of the
	// wrong type is ignored, as before these fields were read.
	period, _, _ := data.seconds("rotation_period")
	schedule, _, _ := data.string("rotation_schedule")
	a.scheduled = period > 0 || schedule != ""
	a.cred = cred
	a.cred.Version = a.lastRotation
	return a, nil
}

// leaseAnswer is what a database/creds answer says.
type leaseAnswer struct {
	cred      secrets.Credential
	leaseID   string
	duration  int64 // lease_duration, seconds
	renewable bool
}

func parseLease(body []byte) (leaseAnswer, error) {
	o, err := parseAnswer(body)
	if err != nil {
		return leaseAnswer{}, err
	}
	var a leaseAnswer
	if a.leaseID, _, err = o.string("lease_id"); err != nil {
		return leaseAnswer{}, err
	}
	if a.leaseID == "" {
		return leaseAnswer{}, fmt.Errorf("%w: lease_id is missing or empty", secrets.ErrMalformed)
	}
	if a.duration, _, err = o.seconds("lease_duration"); err != nil {
		return leaseAnswer{}, err
	}
	if a.duration <= 0 {
		return leaseAnswer{}, fmt.Errorf("%w: lease_duration is missing or zero", secrets.ErrMalformed)
	}
	if a.renewable, err = o.bool("renewable"); err != nil {
		return leaseAnswer{}, err
	}
	if a.cred, err = o.login(); err != nil {
		return leaseAnswer{}, err
	}
	a.cred.Version = a.leaseID
	return a, nil
}

// kvAnswer is what a KV version 2 read says.
type kvAnswer struct {
	cred    secrets.Credential
	version int64
}

func parseKV(body []byte, keys secrets.Keys) (kvAnswer, error) {
	o, err := parseAnswer(body)
	if err != nil {
		return kvAnswer{}, err
	}
	data, present, err := o.object("data")
	if err != nil {
		return kvAnswer{}, err
	}
	if !present {
		return kvAnswer{}, fmt.Errorf("%w: the answer has no data", secrets.ErrMalformed)
	}
	var a kvAnswer
	meta, present, err := data.object("metadata")
	if err != nil {
		return kvAnswer{}, err
	}
	if present {
		if a.version, _, err = meta.seconds("version"); err != nil {
			return kvAnswer{}, err
		}
		destroyed, err := meta.bool("destroyed")
		if err != nil {
			return kvAnswer{}, err
		}
		deleted, _, err := meta.string("deletion_time")
		if err != nil {
			return kvAnswer{}, err
		}
		if destroyed || deleted != "" {
			return a, fmt.Errorf("%w: version %d is deleted or destroyed", secrets.ErrEmptyPassword, a.version)
		}
	}
	raw := data.get("data")
	if raw == nil {
		return a, fmt.Errorf("%w: data.data is missing or null", secrets.ErrEmptyPassword)
	}
	if raw[0] != '{' {
		return a, data.wrongType("data", raw, "an object")
	}
	cred, err := secrets.ParseJSON(raw, keys)
	if err != nil {
		return a, fmt.Errorf("data.data: %w", err)
	}
	a.cred = cred
	if a.version > 0 {
		a.cred.Version = strconv.FormatInt(a.version, 10)
	}
	return a, nil
}
