package secrets

import (
	"context"
	"fmt"
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
