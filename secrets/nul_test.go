package secrets

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgrotate/rotating/internal/testkit"
)

// The PostgreSQL protocol ends strings at a NUL byte, so a NUL in a login
// field would reach the driver as a different value (or be refused by it
// with a message of its own). Every source refuses it with ErrMalformed
// instead. These tests print field names, never values: see
// wantNULRefused.

// nulFields are the login fields of a Credential that can carry a NUL.
var nulFields = []struct {
	name string // as Validate's errors name it
	key  string // its key in the RDS JSON format
	env  string // its default Env variable
	set  func(*Credential, string)
}{
	{"username", "username", "DB_USER", func(c *Credential, v string) { c.Username = v }},
	{"password", "password", "DB_PASSWORD", func(c *Credential, v string) { c.Password = v }},
	{"host", "host", "DB_HOST", func(c *Credential, v string) { c.Host = v }},
	{"database", "dbname", "DB_NAME", func(c *Credential, v string) { c.Database = v }},
}

// nulValues are the values with a NUL that the tests put in each field.
var nulValues = []struct{ name, value string }{
	{"NUL inside", testkit.NULValue},
	{"only a NUL", "\x00"},
	{"NUL at the end", testkit.NULValue[:strings.IndexByte(testkit.NULValue, 0)+1]},
}

// usableCredential is valid before one field is given a NUL.
var usableCredential = Credential{Username: "app", Password: "pw", Host: "db.example.com", Port: 5432, Database: "orders"}

// wantNULRefused fails the test unless err wraps ErrMalformed, its text
// contains want and got is the zero Credential, printing no value (see
// testkit.WantNULRefused).
func wantNULRefused(t *testing.T, what string, got Credential, err error, want string) {
	t.Helper()
	testkit.WantNULRefused(t, what, err, ErrMalformed, want)
	if err != nil && got != (Credential{}) {
		t.Errorf("%s: a non-zero credential came with the error", what)
	}
}

func TestCredentialValidateRefusesNUL(t *testing.T) {
	for _, f := range nulFields {
		for _, v := range nulValues {
			t.Run(f.name+"/"+v.name, func(t *testing.T) {
				c := usableCredential
				f.set(&c, v.value)
				err := c.Validate()
				wantNULRefused(t, "Validate", Credential{}, err, "secrets: malformed secret: "+f.name+" contains a NUL byte")
			})
		}
	}
}

func TestStaticRefusesNUL(t *testing.T) {
	for _, f := range nulFields {
		c := usableCredential
		f.set(&c, testkit.NULValue)
		got, err := Static(c).Fetch(context.Background())
		wantNULRefused(t, "Static with a NUL in "+f.name, got, err, "static credential: secrets: malformed secret: "+f.name+" contains a NUL byte")
	}
}

func TestEnvRefusesNUL(t *testing.T) {
	for _, f := range nulFields {
		for _, v := range nulValues {
			t.Run(f.env+"/"+v.name, func(t *testing.T) {
				env := map[string]string{"DB_USER": "app", "DB_PASSWORD": "pw", "DB_HOST": "db.example.com", "DB_PORT": "5432", "DB_NAME": "orders"}
				env[f.env] = v.value
				got, err := Env(EnvVars{Lookup: mapLookup(env)}).Fetch(context.Background())
				wantNULRefused(t, "Env", got, err, "env "+f.env+": secrets: malformed secret: value contains a NUL byte")

				// With the trailing line break that Kubernetes often keeps.
				env[f.env] = v.value + "\n"
				got, err = Env(EnvVars{Lookup: mapLookup(env)}).Fetch(context.Background())
				wantNULRefused(t, "Env with a trailing line break", got, err, "env "+f.env+": secrets: malformed secret: value contains a NUL byte")
			})
			t.Run("JSON variable/"+f.key+"/"+v.name, func(t *testing.T) {
				env := map[string]string{"DB_SECRET": nulJSON(f.key, v.value)}
				got, err := Env(EnvVars{JSON: "DB_SECRET", Lookup: mapLookup(env)}).Fetch(context.Background())
				wantNULRefused(t, "Env", got, err, fmt.Sprintf("env DB_SECRET: secrets: malformed secret: field %q contains a NUL byte", f.key))
			})
		}
	}
}

func TestFileRefusesNUL(t *testing.T) {
	dir := t.TempDir()
	for _, f := range nulFields {
		path := writeFile(t, dir, f.key+".json", nulJSON(f.key, testkit.NULValue)+"\n")
		for _, format := range []Format{FormatAuto, FormatJSON} {
			got, err := File(path, WithFormat(format)).Fetch(context.Background())
			wantNULRefused(t, fmt.Sprintf("File %s with a NUL in %s", format, f.key), got, err,
				fmt.Sprintf("file %s: secrets: malformed secret: field %q contains a NUL byte", path, f.key))
		}
	}
	for _, v := range nulValues {
		path := filepath.Join(dir, "plain")
		writeFile(t, dir, "plain", v.value+"\n")
		for _, format := range []Format{FormatAuto, FormatPlain} {
			got, err := File(path, WithFormat(format)).Fetch(context.Background())
			wantNULRefused(t, fmt.Sprintf("File %s, plain password, %s", format, v.name), got, err,
				"file "+path+": secrets: malformed secret: plain-text secret contains a NUL byte")
		}
	}
}

func TestParsersRefuseNUL(t *testing.T) {
	custom := Keys{Username: "user", Password: "pass", Host: "server", Database: "db"}
	customKey := map[string]string{"username": custom.Username, "password": custom.Password, "host": custom.Host, "dbname": custom.Database}
	for _, f := range nulFields {
		for _, v := range nulValues {
			in := []byte(nulJSON(f.key, v.value))
			want := fmt.Sprintf("secrets: malformed secret: field %q contains a NUL byte", f.key)
			got, err := ParseJSON(in, Keys{})
			wantNULRefused(t, "ParseJSON, "+f.key+", "+v.name, got, err, want)
			got, err = ParseSecret(in, Keys{})
			wantNULRefused(t, "ParseSecret, "+f.key+", "+v.name, got, err, want)

			key := customKey[f.key]
			in = []byte(nulJSONKeys(custom, key, v.value))
			want = fmt.Sprintf("secrets: malformed secret: field %q contains a NUL byte", key)
			got, err = ParseJSON(in, custom)
			wantNULRefused(t, "ParseJSON with custom keys, "+key+", "+v.name, got, err, want)
		}
	}
	for _, v := range nulValues {
		for _, in := range []string{v.value, v.value + "\n", utf8BOM + v.value + "\r\n"} {
			got, err := ParseSecret([]byte(in), Keys{})
			wantNULRefused(t, "ParseSecret, plain password, "+v.name, got, err, "secrets: malformed secret: plain-text secret contains a NUL byte")
		}
	}
	// A raw NUL inside a JSON string is not JSON at all.
	got, err := ParseJSON([]byte(`{"password":"`+testkit.NULValue+`"}`), Keys{})
	wantNULRefused(t, "ParseJSON, unescaped NUL", got, err, "secrets: malformed secret: invalid JSON")
}

// nulJSON returns an RDS JSON secret whose key field holds value and whose
// other fields are usable.
func nulJSON(key, value string) string {
	return nulJSONKeys(DefaultKeys, key, value)
}

// nulJSONKeys is nulJSON with the keys named by keys (zero fields mean the
// default ones).
func nulJSONKeys(keys Keys, key, value string) string {
	keys = keys.withDefaults()
	fields := map[string]any{
		keys.Username: "app", keys.Password: "pw", keys.Host: "db.example.com", keys.Port: 5432, keys.Database: "orders",
	}
	fields[key] = value
	return mustJSON(fields)
}
