package secrets

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Keys names the JSON object keys that hold each part of a credential. A
// zero field means the key in [DefaultKeys]. Keys are matched exactly,
// case-sensitively.
type Keys struct {
	Username string
	Password string
	Host     string
	Port     string
	Database string
}

// DefaultKeys are the keys of the JSON secret that AWS Secrets Manager uses
// for RDS and Aurora credentials:
//
//	{"engine":"postgres","host":"...","port":5432,"username":"...","password":"...","dbname":"..."}
var DefaultKeys = Keys{
	Username: "username",
	Password: "password",
	Host:     "host",
	Port:     "port",
	Database: "dbname",
}

// withDefaults returns k with every zero field replaced by the DefaultKeys
// one.
func (k Keys) withDefaults() Keys {
	if k.Username == "" {
		k.Username = DefaultKeys.Username
	}
	if k.Password == "" {
		k.Password = DefaultKeys.Password
	}
	if k.Host == "" {
		k.Host = DefaultKeys.Host
	}
	if k.Port == "" {
		k.Port = DefaultKeys.Port
	}
	if k.Database == "" {
		k.Database = DefaultKeys.Database
	}
	return k
}

// utf8BOM is skipped at the start of a secret: editors on Windows write it,
// and encoding/json rejects it.
const utf8BOM = "\xef\xbb\xbf"

// ParseJSON parses a secret stored as a JSON object, such as the RDS format
// described at [DefaultKeys], using keys to find each field (zero fields of
// keys mean the default key).
//
// The password must be a non-empty string; a missing, null or empty password
// is an error wrapping [ErrEmptyPassword]. Username, host and database are
// optional strings (missing or null leaves them empty). The port is optional
// and may be a JSON number or a string holding a decimal number, in
// 1..65535; an empty string or null leaves it unset. Unknown keys (engine,
// masterarn, dbClusterIdentifier, ...) are ignored. If a key appears twice,
// the last one wins.
//
// Any other problem, such as invalid JSON or invalid UTF-8 (which
// encoding/json would silently replace), a document that is not an object,
// a field of the wrong type or a field containing a NUL byte (which the
// PostgreSQL protocol cannot carry), is an error wrapping [ErrMalformed]
// that names the key. Errors never contain a value from data: a JSON syntax
// error gives only an approximate byte offset.
func ParseJSON(data []byte, keys Keys) (Credential, error) {
	keys = keys.withDefaults()
	var skipped int64 // so that offsets in errors count from the start of the input
	if bytes.HasPrefix(data, []byte(utf8BOM)) {
		data, skipped = data[len(utf8BOM):], int64(len(utf8BOM))
	}

	trimmed := bytes.TrimLeft(data, jsonSpace)
	if len(trimmed) == 0 {
		return Credential{}, fmt.Errorf("%w: empty document, want a JSON object", ErrMalformed)
	}

	// encoding/json replaces invalid UTF-8 in strings with U+FFFD, which
	// would silently turn a password into a different one.
	if !utf8.Valid(data) {
		return Credential{}, fmt.Errorf("%w: not valid UTF-8 at byte offset %d", ErrMalformed, skipped+int64(invalidUTF8Offset(data)))
	}

	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		// encoding/json's messages quote the offending input (invalid
		// character 'x' ..., cannot unmarshal string "..."), which could be
		// part of the password: build our own from the offset and kind only.
		var syntaxErr *json.SyntaxError
		if errors.As(err, &syntaxErr) {
			// Only the choice of message depends on encoding/json's text,
			// which quotes the input in other cases and is never shown.
			if strings.Contains(syntaxErr.Error(), "unexpected end") {
				return Credential{}, fmt.Errorf("%w: invalid JSON: unexpected end of input", ErrMalformed)
			}
			// The offset is approximate: encoding/json reports the byte
			// after the offending one, or the start of an escape sequence.
			return Credential{}, fmt.Errorf("%w: invalid JSON near byte offset %d", ErrMalformed, skipped+syntaxErr.Offset)
		}
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return Credential{}, fmt.Errorf("%w: document is %s, want a JSON object", ErrMalformed, jsonKind(trimmed))
		}
		return Credential{}, fmt.Errorf("%w: invalid JSON", ErrMalformed)
	}
	if fields == nil { // the document was null
		return Credential{}, fmt.Errorf("%w: document is null, want a JSON object", ErrMalformed)
	}

	var c Credential
	password, present, err := stringField(fields, keys.Password)
	if err != nil {
		return Credential{}, err
	}
	if password == "" {
		problem := "is empty"
		if !present {
			problem = "is missing or null"
		}
		return Credential{}, fmt.Errorf("%w: field %q %s", ErrEmptyPassword, keys.Password, problem)
	}
	c.Password = password
	if c.Username, _, err = stringField(fields, keys.Username); err != nil {
		return Credential{}, err
	}
	if c.Host, _, err = stringField(fields, keys.Host); err != nil {
		return Credential{}, err
	}
	if c.Database, _, err = stringField(fields, keys.Database); err != nil {
		return Credential{}, err
	}
	if c.Port, err = portField(fields, keys.Port); err != nil {
		return Credential{}, err
	}
	return c, nil
}

// invalidUTF8Offset returns the offset of the first byte of data that is
// not part of a valid UTF-8 sequence.
func invalidUTF8Offset(data []byte) int {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return len(data)
}

// jsonSpace is the whitespace JSON allows between tokens.
const jsonSpace = " \t\r\n"

// jsonKind names the kind of the JSON value that raw starts with, for error
// messages that must not quote the value itself.
func jsonKind(raw []byte) string {
	if len(raw) == 0 {
		return "empty"
	}
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// isNull reports whether raw is the JSON literal null.
func isNull(raw json.RawMessage) bool {
	return string(bytes.Trim(raw, jsonSpace)) == "null"
}

// stringField returns the string value of key in fields. present is false
// if the key is missing or null, which is not an error.
func stringField(fields map[string]json.RawMessage, key string) (value string, present bool, err error) {
	raw, ok := fields[key]
	if !ok || isNull(raw) {
		return "", false, nil
	}
	if raw[0] != '"' {
		return "", true, fmt.Errorf("%w: field %q is %s, want a string", ErrMalformed, key, jsonKind(raw))
	}
	if err := json.Unmarshal(raw, &value); err != nil {
		// Unreachable: raw was validated as a JSON string by the outer
		// Unmarshal. Do not let the decoder's text through all the same.
		return "", true, fmt.Errorf("%w: field %q is not a valid JSON string", ErrMalformed, key)
	}
	if err := refuseNUL(value, "field "+strconv.Quote(key)); err != nil {
		return "", true, err
	}
	return value, true, nil
}

// portField returns the port held by key in fields, or 0 if the key is
// missing, null or an empty string.
func portField(fields map[string]json.RawMessage, key string) (int, error) {
	raw, ok := fields[key]
	if !ok || isNull(raw) {
		return 0, nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, fmt.Errorf("%w: field %q is not a valid JSON string", ErrMalformed, key)
		}
		return parsePort(s, fmt.Sprintf("field %q", key))
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		// A JSON number. Accept integral values written as floats (5432.0,
		// 5.432e3), as JavaScript and Python tools sometimes write them.
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil || math.IsInf(f, 0) || f < 1 || f > 65535 {
			return 0, fmt.Errorf("%w: field %q is out of range 1..65535", ErrMalformed, key)
		}
		if f != math.Trunc(f) {
			return 0, fmt.Errorf("%w: field %q is not a whole number", ErrMalformed, key)
		}
		return int(f), nil
	default:
		return 0, fmt.Errorf("%w: field %q is %s, want a number or a numeric string", ErrMalformed, key, jsonKind(raw))
	}
}

// parsePort parses a port written as decimal text, as in a JSON string or an
// environment variable. Surrounding whitespace is ignored and an empty value
// means no port. what names the field or variable in errors.
func parsePort(s, what string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%w: %s is not a decimal port number", ErrMalformed, what)
		}
	}
	port, err := strconv.Atoi(s)
	if err != nil || port < 1 || port > 65535 {
		return 0, fmt.Errorf("%w: %s is out of range 1..65535", ErrMalformed, what)
	}
	return port, nil
}

// ParseSecret parses a secret that is either a JSON object or a plain
// password, as a secret string of AWS Secrets Manager or a mounted file may
// be.
//
// If data, after any leading whitespace (and a UTF-8 byte order mark), starts
// with '{', it is parsed by [ParseJSON] with keys, and a parse error is
// returned as is: there is no fallback to a plain password, so a password
// cannot start with '{' (use a JSON secret, or File with FormatPlain, for
// such a password).
//
// Otherwise data is the password, with exactly one trailing "\n" or "\r\n"
// removed (files and `echo` add one) and nothing else trimmed; the other
// fields of the credential are empty. A plain password that is empty or only
// whitespace is an error wrapping [ErrEmptyPassword]. A plain password that
// still contains a line break, a NUL byte or invalid UTF-8 is an error
// wrapping [ErrMalformed]: a multi-line plain secret is almost always a
// mistake (a key=value file, two lines of user and password, a certificate)
// that would otherwise fail later as an unexplained login failure. A
// password that really contains such characters can be stored in a JSON
// secret.
func ParseSecret(data []byte, keys Keys) (Credential, error) {
	body := bytes.TrimPrefix(data, []byte(utf8BOM))
	if trimmed := bytes.TrimLeft(body, jsonSpace); len(trimmed) > 0 && trimmed[0] == '{' {
		return ParseJSON(data, keys)
	}
	return parsePlainSecret(body)
}

// parsePlainSecret parses data, without a byte order mark, as a plain
// password under ParseSecret's rules.
func parsePlainSecret(data []byte) (Credential, error) {
	password, err := plainPassword(string(data), "plain-text secret")
	if err != nil {
		return Credential{}, err
	}
	return Credential{Password: password}, nil
}

// plainPassword applies ParseSecret's rules for a plain password to s. what
// names the secret in errors.
func plainPassword(s, what string) (string, error) {
	if strings.TrimSpace(s) == "" {
		return "", fmt.Errorf("%w: %s is empty", ErrEmptyPassword, what)
	}
	s = trimOneNewline(s)
	if strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("%w: %s contains a line break (only one trailing line break is allowed)", ErrMalformed, what)
	}
	if err := refuseNUL(s, what); err != nil {
		return "", err
	}
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%w: %s is not valid UTF-8", ErrMalformed, what)
	}
	return s, nil
}

// trimOneNewline removes one trailing "\n" or "\r\n" from s.
func trimOneNewline(s string) string {
	if strings.HasSuffix(s, "\n") {
		s = s[:len(s)-1]
		s = strings.TrimSuffix(s, "\r")
	}
	return s
}
