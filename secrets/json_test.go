package secrets

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// parseCase is one case of the ParseJSON and ParseSecret table tests, which
// also seed the fuzz tests.
type parseCase struct {
	name string
	in   string
	keys Keys

	want Credential // when wantErr is nil

	wantErr error  // a sentinel the error must wrap
	wantMsg string // a substring the error text must contain
	// secret is a value of the input that the error text must not
	// contain; when empty, the password of a JSON input is used.
	secret string
}

// mustJSON encodes v, for building inputs with awkward strings that would be
// hard to escape by hand.
func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// Awkward passwords that must come through ParseJSON unchanged.
var awkwardPasswords = []struct{ name, password string }{
	{"double and single quotes", `pa"ss'wo"rd`},
	{"backslashes", `back\slash\\and\"`},
	{"spaces", `  spaces  inside and around  `},
	{"URL and DSN syntax", `@:/?#%&=;+ user=x password='y'`},
	{"non-ASCII", "pässwörd-日本語-🔑-Ω"},
	{"1 KiB", strings.Repeat("aB3$", 256)},
	{"starts with brace", `{not-json`},
	{"the word null", `null`},
	{"tab and newline", "tab\tand\nnewline"},
	{"HTML characters", `<script>&amp;</script>`},
	{"IAM token", "db.example.com:5432/?Action=connect&DBUser=app&X-Amz-Signature=ab%2Fcd"},
}

var parseJSONCases = func() []parseCase {
	cases := []parseCase{
		{
			name: "RDS secret",
			in: `{"engine":"postgres","host":"db.example.com","username":"app",` +
				`"password":"hunter2-hunter2","dbname":"orders","port":5432,` +
				`"dbClusterIdentifier":"orders-cluster","masterarn":"arn:aws:secretsmanager:eu-west-1:1:secret:m"}`,
			want: Credential{Username: "app", Password: "hunter2-hunter2", Host: "db.example.com", Port: 5432, Database: "orders"},
		},
		{
			name: "only a password",
			in:   `{"password":"hunter2"}`,
			want: Credential{Password: "hunter2"},
		},
		{
			name: "username missing is allowed",
			in:   `{"password":"hunter2","host":"h"}`,
			want: Credential{Password: "hunter2", Host: "h"},
		},
		{
			name: "nulls leave optional fields empty",
			in:   `{"username":null,"password":"hunter2","host":null,"port":null,"dbname":null}`,
			want: Credential{Password: "hunter2"},
		},
		{
			name: "unknown keys of every type are ignored",
			in:   `{"password":"hunter2","engine":"postgres","n":1e999,"o":{"password":1},"a":[1,"x"],"b":true,"z":null}`,
			want: Credential{Password: "hunter2"},
		},
		{
			name: "whitespace around the document",
			in:   " \t\r\n{ \"password\" : \"hunter2\" }\n\n",
			want: Credential{Password: "hunter2"},
		},
		{
			name: "byte order mark",
			in:   utf8BOM + `{"password":"hunter2"}`,
			want: Credential{Password: "hunter2"},
		},
		{
			name: "escapes are decoded",
			in:   `{"pass\u0077ord":"p\u0061ss\\\"\/\t\u00e9\ud83d\udd11"}`,
			want: Credential{Password: "pass\\\"/\té🔑"},
		},
		{
			name: "duplicate key: last wins",
			in:   `{"password":"first-one","password":"second-one"}`,
			want: Credential{Password: "second-one"},
		},
		{
			name:    "keys are case-sensitive",
			in:      `{"Password":"hunter2"}`,
			wantErr: ErrEmptyPassword, wantMsg: `field "password" is missing`, secret: "hunter2",
		},
		{
			name: "custom keys",
			in:   `{"user":"app","pass":"hunter2","server":"h","dbport":"6432","db":"d","password":"not-this"}`,
			keys: Keys{Username: "user", Password: "pass", Host: "server", Port: "dbport", Database: "db"},
			want: Credential{Username: "app", Password: "hunter2", Host: "h", Port: 6432, Database: "d"},
		},
		{
			name: "custom password key only, other keys default",
			in:   `{"username":"app","DB_PASSWORD":"hunter2","port":5432}`,
			keys: Keys{Password: "DB_PASSWORD"},
			want: Credential{Username: "app", Password: "hunter2", Port: 5432},
		},

		// Ports.
		{name: "port as number", in: `{"password":"hunter2","port":5432}`, want: Credential{Password: "hunter2", Port: 5432}},
		{name: "port as string", in: `{"password":"hunter2","port":"5432"}`, want: Credential{Password: "hunter2", Port: 5432}},
		{name: "port string with spaces", in: `{"password":"hunter2","port":" 5432 "}`, want: Credential{Password: "hunter2", Port: 5432}},
		{name: "port empty string means unset", in: `{"password":"hunter2","port":""}`, want: Credential{Password: "hunter2"}},
		{name: "port 1", in: `{"password":"hunter2","port":1}`, want: Credential{Password: "hunter2", Port: 1}},
		{name: "port 65535", in: `{"password":"hunter2","port":"65535"}`, want: Credential{Password: "hunter2", Port: 65535}},
		{name: "port written as float", in: `{"password":"hunter2","port":5432.0}`, want: Credential{Password: "hunter2", Port: 5432}},
		{name: "port with exponent", in: `{"password":"hunter2","port":5.432e3}`, want: Credential{Password: "hunter2", Port: 5432}},
		{
			name: "port non-numeric string", in: `{"password":"hunter2","port":"abc"}`,
			wantErr: ErrMalformed, wantMsg: `field "port" is not a decimal port number`,
		},
		{
			name: "port fractional", in: `{"password":"hunter2","port":5432.5}`,
			wantErr: ErrMalformed, wantMsg: `field "port" is not a whole number`,
		},
		{
			name: "port fractional string", in: `{"password":"hunter2","port":"5432.5"}`,
			wantErr: ErrMalformed, wantMsg: `field "port" is not a decimal port number`,
		},
		{
			name: "port too large", in: `{"password":"hunter2","port":70000}`,
			wantErr: ErrMalformed, wantMsg: `field "port" is out of range 1..65535`,
		},
		{
			name: "port too large string", in: `{"password":"hunter2","port":"70000"}`,
			wantErr: ErrMalformed, wantMsg: `field "port" is out of range 1..65535`,
		},
		{
			name: "port huge string", in: `{"password":"hunter2","port":"99999999999999999999999"}`,
			wantErr: ErrMalformed, wantMsg: `field "port" is out of range 1..65535`,
		},
		{
			name: "port zero", in: `{"password":"hunter2","port":0}`,
			wantErr: ErrMalformed, wantMsg: `field "port" is out of range 1..65535`,
		},
		{
			name: "port negative", in: `{"password":"hunter2","port":-5432}`,
			wantErr: ErrMalformed, wantMsg: `field "port" is out of range 1..65535`,
		},
		{
			name: "port negative string", in: `{"password":"hunter2","port":"-5432"}`,
			wantErr: ErrMalformed, wantMsg: `field "port" is not a decimal port number`,
		},
		{
			name: "port overflowing float", in: `{"password":"hunter2","port":1e400}`,
			wantErr: ErrMalformed, wantMsg: `field "port" is out of range 1..65535`,
		},
		{
			name: "port boolean", in: `{"password":"hunter2","port":true}`,
			wantErr: ErrMalformed, wantMsg: `field "port" is a boolean, want a number or a numeric string`,
		},
		{
			name: "port object", in: `{"password":"hunter2","port":{"n":5432}}`,
			wantErr: ErrMalformed, wantMsg: `field "port" is an object`,
		},

		// Passwords.
		{
			name: "password missing", in: `{"username":"app","host":"hunter2-host"}`,
			wantErr: ErrEmptyPassword, wantMsg: `field "password" is missing or null`, secret: "hunter2-host",
		},
		{
			name: "password null", in: `{"username":"app","password":null}`,
			wantErr: ErrEmptyPassword, wantMsg: `field "password" is missing or null`,
		},
		{
			name: "password empty", in: `{"username":"app","password":""}`,
			wantErr: ErrEmptyPassword, wantMsg: `field "password" is empty`,
		},
		{
			name: "password is a number", in: `{"username":"app","password":12345678}`,
			wantErr: ErrMalformed, wantMsg: `field "password" is a number, want a string`, secret: "12345678",
		},
		{
			name: "password is a boolean", in: `{"password":true}`,
			wantErr: ErrMalformed, wantMsg: `field "password" is a boolean, want a string`,
		},
		{
			name: "password is an array", in: `{"password":["hunter2"]}`,
			wantErr: ErrMalformed, wantMsg: `field "password" is an array, want a string`, secret: "hunter2",
		},
		{
			name: "password is an object", in: `{"password":{"value":"hunter2"}}`,
			wantErr: ErrMalformed, wantMsg: `field "password" is an object, want a string`, secret: "hunter2",
		},
		{
			name: "password with NUL", in: `{"password":"hunter2\u0000"}`,
			wantErr: ErrMalformed, wantMsg: `field "password" contains a NUL byte`, secret: "hunter2",
		},
		{
			name: "custom password key missing", in: `{"password":"hunter2"}`, keys: Keys{Password: "pass"},
			wantErr: ErrEmptyPassword, wantMsg: `field "pass" is missing or null`,
		},

		// Other fields of the wrong type.
		{
			name: "username is a number", in: `{"username":42,"password":"hunter2"}`,
			wantErr: ErrMalformed, wantMsg: `field "username" is a number, want a string`,
		},
		{
			name: "host is an array", in: `{"host":["a","b"],"password":"hunter2"}`,
			wantErr: ErrMalformed, wantMsg: `field "host" is an array, want a string`,
		},
		{
			name: "dbname is a boolean", in: `{"dbname":false,"password":"hunter2"}`,
			wantErr: ErrMalformed, wantMsg: `field "dbname" is a boolean, want a string`,
		},
		{
			name: "username with NUL", in: `{"username":"a\u0000b","password":"hunter2"}`,
			wantErr: ErrMalformed, wantMsg: `field "username" contains a NUL byte`,
		},

		// Not a JSON object.
		{name: "empty", in: ``, wantErr: ErrMalformed, wantMsg: "empty document"},
		{name: "only whitespace", in: " \n\t ", wantErr: ErrMalformed, wantMsg: "empty document"},
		{name: "null document", in: `null`, wantErr: ErrMalformed, wantMsg: "document is null, want a JSON object"},
		{name: "array document", in: `["hunter2"]`, wantErr: ErrMalformed, wantMsg: "document is an array, want a JSON object", secret: "hunter2"},
		{name: "string document", in: `"hunter2"`, wantErr: ErrMalformed, wantMsg: "document is a string, want a JSON object", secret: "hunter2"},
		{name: "number document", in: `12345678`, wantErr: ErrMalformed, wantMsg: "document is a number, want a JSON object", secret: "12345678"},
		{name: "boolean document", in: `true`, wantErr: ErrMalformed, wantMsg: "document is a boolean, want a JSON object"},
		{name: "plain password", in: `hunter2`, wantErr: ErrMalformed, wantMsg: "invalid JSON near byte offset", secret: "hunter2"},

		// Invalid JSON: encoding/json would quote the offending input.
		{
			name: "unquoted password", in: `{"password":hunter2}`,
			wantErr: ErrMalformed, wantMsg: "invalid JSON near byte offset", secret: "hunter2",
		},
		{
			name: "garbage after the object", in: `{"password":"a"}xhunter2`,
			wantErr: ErrMalformed, wantMsg: "invalid JSON near byte offset", secret: "hunter2",
		},
		{
			name: "truncated", in: `{"password":"hunter2`,
			wantErr: ErrMalformed, wantMsg: "invalid JSON: unexpected end of input", secret: "hunter2",
		},
		{
			name: "invalid escape", in: `{"password":"hunter2\q"}`,
			wantErr: ErrMalformed, wantMsg: "invalid JSON near byte offset", secret: "hunter2",
		},
		{
			name: "control character in string", in: "{\"password\":\"hunter2\x01\"}",
			wantErr: ErrMalformed, wantMsg: "invalid JSON near byte offset", secret: "hunter2",
		},
		{
			name: "offset counts the byte order mark", in: utf8BOM + `{"password":hunter2}`,
			wantErr: ErrMalformed, wantMsg: "invalid JSON near byte offset", secret: "hunter2",
		},
		{
			name: "invalid UTF-8 in the password", in: "{\"password\":\"hunter2\xff\"}",
			wantErr: ErrMalformed, wantMsg: "not valid UTF-8 at byte offset 20", secret: "hunter2",
		},
		{
			name: "invalid UTF-8 in an unknown key", in: "{\"password\":\"hunter2\",\"x\":\"\xc3\"}",
			wantErr: ErrMalformed, wantMsg: "not valid UTF-8 at byte offset 27", secret: "hunter2",
		},
		{
			name: "lone surrogate escape becomes U+FFFD", in: `{"password":"hunter2\ud800"}`,
			want: Credential{Password: "hunter2\ufffd"},
		},
		{
			name: "trailing comma", in: `{"password":"hunter2",}`,
			wantErr: ErrMalformed, wantMsg: "invalid JSON near byte offset", secret: "hunter2",
		},
	}
	for _, p := range awkwardPasswords {
		cases = append(cases, parseCase{
			name: "awkward password: " + p.name,
			in:   mustJSON(map[string]any{"username": "app", "password": p.password, "port": 5432}),
			want: Credential{Username: "app", Password: p.password, Port: 5432},
		})
	}
	return cases
}()

var parseSecretCases = []parseCase{
	{name: "plain password", in: "hunter2", want: Credential{Password: "hunter2"}},
	{name: "trailing LF removed", in: "hunter2\n", want: Credential{Password: "hunter2"}},
	{name: "trailing CRLF removed", in: "hunter2\r\n", want: Credential{Password: "hunter2"}},
	{name: "spaces kept", in: "  hunter2  \n", want: Credential{Password: "  hunter2  "}},
	{name: "byte order mark removed", in: utf8BOM + "hunter2\n", want: Credential{Password: "hunter2"}},
	{name: "awkward plain password", in: `p@ss:/?#%&="'\ wörd🔑`, want: Credential{Password: `p@ss:/?#%&="'\ wörd🔑`}},
	{name: "1 KiB plain password", in: strings.Repeat("aB3$", 256) + "\n", want: Credential{Password: strings.Repeat("aB3$", 256)}},
	{name: "JSON array is a plain password", in: `["x","y"]`, want: Credential{Password: `["x","y"]`}},
	{name: "JSON string is a plain password", in: `"hunter2"`, want: Credential{Password: `"hunter2"`}},
	{name: "brace later is a plain password", in: `x{"password":"y"}`, want: Credential{Password: `x{"password":"y"}`}},
	{
		name: "JSON object", in: `{"username":"app","password":"hunter2","port":"5432"}`,
		want: Credential{Username: "app", Password: "hunter2", Port: 5432},
	},
	{
		name: "JSON object after whitespace", in: "\n  \t{\"password\":\"hunter2\"}\n",
		want: Credential{Password: "hunter2"},
	},
	{
		name: "JSON object after byte order mark", in: utf8BOM + ` {"password":"hunter2"}`,
		want: Credential{Password: "hunter2"},
	},
	{
		name: "JSON object with custom keys", in: `{"u":"app","p":"hunter2"}`, keys: Keys{Username: "u", Password: "p"},
		want: Credential{Username: "app", Password: "hunter2"},
	},
	{
		name: "brace means JSON, no fallback", in: `{hunter2`,
		wantErr: ErrMalformed, wantMsg: "invalid JSON near byte offset", secret: "hunter2",
	},
	{
		name: "JSON object without password", in: `{"username":"app"}`,
		wantErr: ErrEmptyPassword, wantMsg: `field "password" is missing`,
	},
	{
		name: "JSON object with numeric password", in: ` {"password":12345678}`,
		wantErr: ErrMalformed, wantMsg: `field "password" is a number`, secret: "12345678",
	},
	{name: "empty", in: "", wantErr: ErrEmptyPassword, wantMsg: "plain-text secret is empty"},
	{name: "only a newline", in: "\n", wantErr: ErrEmptyPassword, wantMsg: "plain-text secret is empty"},
	{name: "only CRLF", in: "\r\n", wantErr: ErrEmptyPassword, wantMsg: "plain-text secret is empty"},
	{name: "only whitespace", in: " \t \n\n", wantErr: ErrEmptyPassword, wantMsg: "plain-text secret is empty"},
	{name: "only a byte order mark", in: utf8BOM, wantErr: ErrEmptyPassword, wantMsg: "plain-text secret is empty"},
	{
		name: "two lines", in: "app\nhunter2\n",
		wantErr: ErrMalformed, wantMsg: "plain-text secret contains a line break", secret: "hunter2",
	},
	{
		name: "two trailing newlines", in: "hunter2\n\n",
		wantErr: ErrMalformed, wantMsg: "plain-text secret contains a line break", secret: "hunter2",
	},
	{
		name: "key=value file", in: "DB_USER=app\nDB_PASSWORD=hunter2\n",
		wantErr: ErrMalformed, wantMsg: "plain-text secret contains a line break", secret: "hunter2",
	},
	{
		name: "trailing lone CR", in: "hunter2\r",
		wantErr: ErrMalformed, wantMsg: "plain-text secret contains a line break", secret: "hunter2",
	},
	{
		name: "NUL byte", in: "hunter2\x00",
		wantErr: ErrMalformed, wantMsg: "plain-text secret contains a NUL byte", secret: "hunter2",
	},
	{
		name: "invalid UTF-8", in: "hunter2\xff",
		wantErr: ErrMalformed, wantMsg: "plain-text secret is not valid UTF-8", secret: "hunter2",
	},
}

func TestParseJSON(t *testing.T) {
	for _, tc := range parseJSONCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseJSON([]byte(tc.in), tc.keys)
			checkParseCase(t, tc, got, err)
		})
	}
}

func TestParseSecret(t *testing.T) {
	for _, tc := range parseSecretCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSecret([]byte(tc.in), tc.keys)
			checkParseCase(t, tc, got, err)
		})
	}
}

// TestParseSecretJSONCases checks that ParseSecret treats every input that
// starts with '{' exactly as ParseJSON does.
func TestParseSecretJSONCases(t *testing.T) {
	for _, tc := range parseJSONCases {
		trimmed := strings.TrimLeft(strings.TrimPrefix(tc.in, utf8BOM), jsonSpace)
		if !strings.HasPrefix(trimmed, "{") {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSecret([]byte(tc.in), tc.keys)
			checkParseCase(t, tc, got, err)
		})
	}
}

func checkParseCase(t *testing.T, tc parseCase, got Credential, err error) {
	t.Helper()
	if tc.wantErr == nil {
		if err != nil {
			t.Fatalf("error %q, want %v", err, tc.want)
		}
		if got != tc.want {
			t.Fatalf("got %v (password %q), want %v (password %q)", got, got.Password, tc.want, tc.want.Password)
		}
		return
	}
	if err == nil {
		t.Fatalf("got %v, want an error wrapping %q", got, tc.wantErr)
	}
	if !errors.Is(err, tc.wantErr) {
		t.Errorf("error %q does not wrap %q", err, tc.wantErr)
	}
	if !strings.Contains(err.Error(), tc.wantMsg) {
		t.Errorf("error %q does not contain %q", err, tc.wantMsg)
	}
	if got != (Credential{}) {
		t.Errorf("with an error, got a non-zero credential %v", got)
	}
	secret := tc.secret
	if secret == "" {
		var fields map[string]any
		if json.Unmarshal([]byte(tc.in), &fields) == nil {
			secret, _ = fields["password"].(string)
		}
	}
	if secret != "" && strings.Contains(err.Error(), secret) {
		t.Errorf("error %q contains the secret value %q", err, secret)
	}
}

// TestParseJSONErrorsDoNotQuoteInput checks the reason for our own syntax
// error messages: encoding/json's would contain part of the secret.
func TestParseJSONErrorsDoNotQuoteInput(t *testing.T) {
	in := []byte(`{"password":Xhunter2}`)
	var v map[string]any
	jsonErr := json.Unmarshal(in, &v)
	if jsonErr == nil || !strings.Contains(jsonErr.Error(), "'X'") {
		t.Skipf("encoding/json no longer quotes the input (%v); the test is moot", jsonErr)
	}
	_, err := ParseJSON(in, Keys{})
	if err == nil || strings.Contains(err.Error(), "X") {
		t.Errorf("ParseJSON error %q quotes the input", err)
	}
}

func TestParseJSONOffsetCountsByteOrderMark(t *testing.T) {
	in := `{"password":hunter2}`
	_, plainErr := ParseJSON([]byte(in), Keys{})
	_, bomErr := ParseJSON([]byte(utf8BOM+in), Keys{})
	if plainErr == nil || bomErr == nil {
		t.Fatalf("errors %v, %v; want two errors", plainErr, bomErr)
	}
	var plainOffset, bomOffset int
	if _, err := fmt.Sscanf(plainErr.Error(), "secrets: malformed secret: invalid JSON near byte offset %d", &plainOffset); err != nil {
		t.Fatalf("error %q: %v", plainErr, err)
	}
	if _, err := fmt.Sscanf(bomErr.Error(), "secrets: malformed secret: invalid JSON near byte offset %d", &bomOffset); err != nil {
		t.Fatalf("error %q: %v", bomErr, err)
	}
	if bomOffset != plainOffset+len(utf8BOM) {
		t.Errorf("offset with a byte order mark = %d, want %d+%d", bomOffset, plainOffset, len(utf8BOM))
	}
	if plainOffset < 12 || plainOffset > 13 {
		t.Errorf("offset = %d, want about 12 (where the unquoted value starts)", plainOffset)
	}
}

func TestKeysWithDefaults(t *testing.T) {
	if got := (Keys{}).withDefaults(); got != DefaultKeys {
		t.Errorf("Keys{}.withDefaults() = %+v, want %+v", got, DefaultKeys)
	}
	custom := Keys{Username: "u", Password: "p", Host: "h", Port: "o", Database: "d"}
	if got := custom.withDefaults(); got != custom {
		t.Errorf("withDefaults changed set keys: %+v", got)
	}
}

// FuzzParseSecret checks ParseSecret's invariants on arbitrary input; see
// checkFuzzResult.
func FuzzParseSecret(f *testing.F) {
	for _, tc := range parseSecretCases {
		f.Add([]byte(tc.in))
	}
	for _, tc := range parseJSONCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		parse := func(data []byte) (Credential, error) { return ParseSecret(data, Keys{}) }
		checkFuzzResult(t, parse, data)

		// An input that starts with '{' is JSON, with no fallback.
		if bytes.HasPrefix(bytes.TrimLeft(bytes.TrimPrefix(data, []byte(utf8BOM)), jsonSpace), []byte("{")) {
			c, err := ParseSecret(data, Keys{})
			jc, jerr := ParseJSON(data, Keys{})
			if c != jc || fmt.Sprint(err) != fmt.Sprint(jerr) {
				t.Fatalf("ParseSecret = %v, %v; ParseJSON = %v, %v", c, err, jc, jerr)
			}
		}
	})
}

// FuzzParseJSON checks ParseJSON's invariants on arbitrary input; see
// checkFuzzResult.
func FuzzParseJSON(f *testing.F) {
	for _, tc := range parseJSONCases {
		f.Add([]byte(tc.in))
	}
	for _, tc := range parseSecretCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		parse := func(data []byte) (Credential, error) { return ParseJSON(data, Keys{}) }
		checkFuzzResult(t, parse, data)
	})
}

// checkFuzzResult checks, for a parser with the default keys and any input:
// no panic; an error wraps ErrMalformed or ErrEmptyPassword and does not
// contain the input's password; a credential is valid, has a password and
// survives a round trip through the RDS JSON format.
func checkFuzzResult(t *testing.T, parse func([]byte) (Credential, error), data []byte) {
	c, err := parse(data)
	if err != nil {
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrEmptyPassword) {
			t.Fatalf("error %q wraps neither ErrMalformed nor ErrEmptyPassword", err)
		}
		if c != (Credential{}) {
			t.Fatalf("with error %q, got a non-zero credential %#v", err, c)
		}
		if leak := passwordLeak(parse, data, err); leak != "" {
			t.Fatal(leak)
		}
		return
	}

	if c.Password == "" {
		t.Fatalf("no error, but an empty password: %#v", c)
	}
	if verr := c.Validate(); verr != nil {
		t.Fatalf("no error, but the credential is invalid: %v", verr)
	}
	if c.Version != "" || !c.Expires.IsZero() {
		t.Fatalf("parsing set Version or Expires: %#v", c)
	}

	fields := map[string]any{"username": c.Username, "password": c.Password, "host": c.Host, "dbname": c.Database}
	if c.Port != 0 {
		fields["port"] = c.Port
	}
	encoded, merr := json.Marshal(fields)
	if merr != nil {
		t.Fatalf("json.Marshal: %v", merr)
	}
	again, err := ParseJSON(encoded, DefaultKeys)
	if err != nil {
		t.Fatalf("round trip of %#v through %d JSON bytes: %v", c, len(encoded), err)
	}
	if !again.SameLogin(c) || again != c {
		t.Fatalf("round trip changed the credential: %#v, then %#v (passwords %q, %q)", c, again, c.Password, again.Password)
	}
}

// passwordLeak reports, as a description, whether err (the error parse
// returned for data) contains the password of data, if data is a JSON
// object whose "password" is a string of at least 4 bytes. It returns "" if
// not.
//
// A short password can legitimately appear in the message's own words (the
// password "pass" is in `field "password"`, "6553" in "1..65535"). So a
// password found in the message is a leak only if the message for the same
// object with a different password of the same length does not contain it
// too.
func passwordLeak(parse func([]byte) (Credential, error), data []byte, err error) string {
	obj := decodeObject(bytes.TrimPrefix(data, []byte(utf8BOM)))
	if obj == nil {
		return ""
	}
	password, ok := obj["password"].(string)
	if !ok || len(password) < 4 || !strings.Contains(err.Error(), password) {
		return ""
	}
	filler := "~"
	for _, r := range "~^|`!" {
		if !strings.ContainsRune(password, r) {
			filler = string(r)
			break
		}
	}
	obj["password"] = strings.Repeat(filler, len(password))
	other, merr := json.Marshal(obj)
	if merr != nil {
		return fmt.Sprintf("cannot re-encode the input: %v", merr)
	}
	_, otherErr := parse(other)
	if otherErr == nil || !strings.Contains(otherErr.Error(), password) {
		return fmt.Sprintf("error %q contains the password %q (with another password: %v)", err, password, otherErr)
	}
	return ""
}

func TestPasswordLeakCheck(t *testing.T) {
	leaky := func(data []byte) (Credential, error) {
		var v struct{ Password string }
		json.Unmarshal(data, &v)
		return Credential{}, fmt.Errorf("%w: bad password %s", ErrMalformed, v.Password)
	}
	leakyInput := []byte(`{"password":"hunter2"}`)
	_, leakyErr := leaky(leakyInput)
	if passwordLeak(leaky, leakyInput, leakyErr) == "" {
		t.Error("passwordLeak missed a leaking parser")
	}

	// The password "malf" appears in ParseJSON's own wording.
	in := []byte(`{"password":"malf","port":"x"}`)
	_, err := ParseJSON(in, Keys{})
	if err == nil || !strings.Contains(err.Error(), "malf") {
		t.Fatalf("ParseJSON error %v; the test needs one that contains the password", err)
	}
	parse := func(data []byte) (Credential, error) { return ParseJSON(data, Keys{}) }
	if leak := passwordLeak(parse, in, err); leak != "" {
		t.Errorf("passwordLeak flagged the message's own words: %s", leak)
	}
}

// decodeObject returns data decoded as a JSON object, numbers kept as
// written, or nil if data is anything else.
func decodeObject(data []byte) map[string]any {
	if !json.Valid(data) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var obj map[string]any
	if dec.Decode(&obj) != nil {
		return nil
	}
	return obj
}
