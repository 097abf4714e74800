package vault

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/pgrotate/rotating/secrets"
)

// FuzzParse feeds arbitrary answers to the three parsers. None may panic;
// each either returns a credential that validates, with a password, or an
// error wrapping secrets.ErrMalformed or secrets.ErrEmptyPassword that
// quotes no string of the answer (the seeds' values contain '@', which no
// message of the parsers does).
func FuzzParse(f *testing.F) {
	seeds := []string{
		`{"data":{"username":"app","password":"Pass@1","last_vault_rotation":"2024-01-01T00:00:00Z","ttl":3600,"rotation_period":86400}}`,
		`{"lease_id":"database/creds/app/abc","lease_duration":60,"renewable":true,"data":{"username":"v-token-app-1","password":"Pass@2"}}`,
		`{"data":{"data":{"username":"app","password":"Pass@3","host":"db","port":"5432","dbname":"d"},"metadata":{"version":3,"deletion_time":"","destroyed":false}}}`,
		`{"data":{"username":"app","password":12}}`,
		`{"data":{"username":"app","password":"a\u0000@b"}}`,
		`{"lease_id":"x","lease_duration":"Pass@4","data":{"username":"u","password":"p@"}}`,
		`{"data":{"data":"Pass@5"}}`,
		`{"data":null}`, `[]`, `null`, `"Pass@6"`, `{`, "\xff",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		check := func(parser string, cred secrets.Credential, err error) {
			if err == nil {
				if cred.Password == "" {
					t.Fatalf("%s: no error and no password", parser)
				}
				if verr := cred.Validate(); verr != nil {
					t.Fatalf("%s: a credential that does not validate: %v", parser, verr)
				}
				return
			}
			if !errors.Is(err, secrets.ErrMalformed) && !errors.Is(err, secrets.ErrEmptyPassword) {
				t.Fatalf("%s: error %v wraps neither ErrMalformed nor ErrEmptyPassword", parser, err)
			}
			for _, s := range stringsIn(body) {
				if strings.Contains(s, "@") && strings.Contains(err.Error(), s) {
					t.Fatalf("%s: error %q quotes %q from the answer", parser, err, s)
				}
			}
		}
		s, err := parseStatic(body)
		check("static", s.cred, err)
		l, err := parseLease(body)
		check("lease", l.cred, err)
		if err == nil && (l.leaseID == "" || l.duration <= 0 || l.cred.Version != l.leaseID) {
			t.Fatalf("lease parsed without a lease id or duration: %+v", l)
		}
		k, err := parseKV(body, secrets.Keys{})
		check("kv", k.cred, err)
	})
}

// stringsIn returns every JSON string (keys and values) in body, if it is
// valid JSON.
func stringsIn(body []byte) []string {
	var v any
	if json.Unmarshal(body, &v) != nil {
		return nil
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			out = append(out, x)
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			for k, e := range x {
				out = append(out, k)
				walk(e)
			}
		}
	}
	walk(v)
	return out
}
