package faults

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/secrets"
)

// punctuation1KiB returns 1024 bytes of every ASCII punctuation character
// and the space, in a varying pattern.
func punctuation1KiB(offset int) string {
	const set = ` !"#$%&'()*+,-./:;<=>?@[\]^_{|}~` + "`"
	var b strings.Builder
	for i := offset; b.Len() < 1024; i++ {
		b.WriteByte(set[(i*7+i/len(set))%len(set)])
	}
	return b.String()
}

// awkward is a set of character classes that break naive DSN building,
// URL building, JSON handling, identifier quoting or logging.
var awkward = []struct{ name, s string }{
	{"quotes", `it's "quoted"`},
	{"backslashes", `back\slash\ \'`},
	{"spaces", `  spaces  in it `},
	{"url-reserved", `@:/?#%&=+`},
	{"dsn-syntax", `password=x host=evil.example`},
	{"json-looking", `{"password":"x"}`},
	{"non-ascii", `ünïcødé-пароль-密码-🔑`},
	{"control-chars", "tab\there\x1b[0m"},
}

// TestAwkwardCredentialsLogIn creates roles whose names and passwords hold
// every awkward character class, the passwords 1 KiB long, stores each as
// an RDS JSON secret in awssmtest, and logs in through the connector with
// a key=value DSN and a postgres:// URL, through each driver: current_user
// must be the role. A 512-byte username is also tried: PostgreSQL truncates
// role names to 63 bytes, at CREATE ROLE and at login alike, so it logs in
// as the truncated role. (A 1 KiB username is a lib/pq limit:
// TestDriverLoginLimits.)
func TestAwkwardCredentialsLogIn(t *testing.T) {
	pg := sharedServer(t)
	leakCheck(t)
	w := newWatch(t)
	type login struct{ name, user, password string }
	var logins []login
	for i, a := range awkward {
		// A random part keeps names unique on a shared server and makes a
		// password impossible to find in a log line by coincidence.
		user := a.s + " u" + randomHex(4)
		password := randomHex(6) + a.s + strings.Repeat(awkward[(i+1)%len(awkward)].s, 2)
		password += punctuation1KiB(i)[:1024-len(password)]
		logins = append(logins, login{a.name, user, password})
	}
	logins = append(logins, login{"512-byte-username", randomHex(4) + punctuation1KiB(3)[:504], randomHex(8) + punctuation1KiB(5)[:1008]})

	type role struct {
		login
		stored string
		a      *awsStore
	}
	var roles []role
	for _, l := range logins {
		w.secret(l.password)
		roles = append(roles, role{l, newRole(t, pg, l.user, l.password), newAWSStore(t, w, credJSON(l.user, l.password))})
	}
	forEachDriver(t, func(t *testing.T, d testDriver) {
		for _, r := range roles {
			l, stored, a := r.login, r.stored, r.a
			for _, dsn := range []struct{ name, dsn string }{{"key-value", baseDSN(pg)}, {"url", urlDSN(pg)}} {
				t.Run(l.name+"/"+dsn.name, func(t *testing.T) {
					c := newConnector(t, d, dsn.dsn, a.src, fastOptions(w)...)
					db := openDB(t, c)
					var current, session string
					err := db.QueryRowContext(t.Context(), "SELECT current_user, session_user").Scan(&current, &session)
					w.checkErr(err)
					if err != nil {
						t.Fatalf("login as a %d-byte user with a %d-byte password: %v", len(l.user), len(l.password), err)
					}
					if current != stored || session != stored {
						t.Errorf("current_user %q, session_user %q; want %q", current, session, stored)
					}
					if st := c.Stats(); st.AuthFailures != 0 || st.Fetches != 1 {
						t.Errorf("Stats(): %d rejected logins, %d fetches; want 0 and 1", st.AuthFailures, st.Fetches)
					}
				})
			}
		}
	})
}

// TestDriverLoginLimits tries credentials that PostgreSQL and libpq (psql)
// accept but a driver may not log in with:
//
//   - passwords that SASLprep changes (a ligature, a non-ASCII space, a soft
//     hyphen, a decomposed accent): PostgreSQL derives the SCRAM secret
//     from the SASLprep-normalised password and libpq normalises the
//     password it is given; lib/pq does not, so its proof does not match;
//     pgx normalises with PRECIS OpaqueString instead, which agrees with
//     SASLprep on the no-break space and the decomposed accent only;
//   - a 1 KiB username: lib/pq puts the username in the SCRAM initial
//     message (libpq and pgx send an empty one), and PostgreSQL refuses an
//     initial message longer than 1024 bytes ("invalid message length" in
//     the server log), so usernames of more than about 950 bytes (fewer if
//     they hold ',' or '=', which SCRAM escapes to 3 bytes) cannot log in.
//     PostgreSQL role names are at most 63 bytes: only a name PostgreSQL
//     would truncate anyway is affected.
//
// The connector cannot tell such a rejection from a wrong password. For
// the cases in the driver's loginLimits, the case checks that the caller
// gets exactly that clear error (ErrCredentialRejected, 28P01, after the
// rotation wait) if the login fails, and logs it; docs/reliability.md lists
// these as driver limitations. If a driver lifts a limit, the subtest logs
// the success. Every other case must log in, as the role PostgreSQL
// stored.
func TestDriverLoginLimits(t *testing.T) {
	pg := sharedServer(t)
	forEachDriver(t, func(t *testing.T, d testDriver) { testDriverLoginLimits(t, d, pg) })
}

func testDriverLoginLimits(t *testing.T, d testDriver, pg *pgserver.Server) {
	leakCheck(t)
	w := newWatch(t)
	for _, p := range []struct{ name, user, password string }{
		{"saslprep-ligature", "", "ﬁnal-ﬂag"},
		{"saslprep-no-break-space", "", "a\u00a0b"},
		{"saslprep-soft-hyphen", "", "soft\u00adhyphen"},
		{"saslprep-decomposed-accent", "", "cafe\u0301"},
		{"1KiB-username", randomHex(4) + strings.Repeat("x", 1020), "plain"},
	} {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel() // each waits out the rotation wait alone; the leak check covers them all
			user := p.user
			if user == "" {
				user = uniqueRole(t)
			}
			password := randomHex(6) + "-" + p.password
			w.secret(password)
			stored := newRole(t, pg, user, password)
			src := newMemSource("login-limits", user, password)
			c := newConnector(t, d, baseDSN(pg), src, fastOptions(w)...)
			db := openDB(t, c)
			var current string
			r := call(t, func() error { return db.QueryRowContext(t.Context(), "SELECT current_user").Scan(&current) })
			w.checkErr(r.err)
			limited := slices.Contains(d.loginLimits, p.name)
			switch {
			case r.err == nil && current != stored:
				t.Errorf("%s: logged in as %q, want %q", p.name, current, stored)
			case r.err == nil && limited:
				t.Logf("%s: logs in (the %s limitation is gone)", p.name, d.name)
			case r.err == nil:
			case !limited:
				t.Errorf("%s: %v; %s logs in with this credential", p.name, r.err, d.name)
			default:
				ae := wantRejected(t, d, r.err, "28P01", src.Describe(), user)
				wantGaveUpInTime(t, p.name, r, ae, rotationWait)
				t.Logf("%s: %s limitation (role %d bytes as stored): %v", p.name, d.name, len(stored), r.err)
			}
		})
	}
}

// TestNonUTF8BinarySecret stores secrets in SecretBinary that are not UTF-8
// or that PostgreSQL's protocol cannot carry: the first Connect returns a
// *FetchError wrapping secrets.ErrMalformed that names the secret and the
// problem, never the bytes, and no login is attempted. After a rotation
// (the cached credential rejected), the same store gives an AuthError that
// wraps ErrMalformed too (see also TestStoreFaults/binary-secret-not-utf8).
// Through lib/pq only: the secret never reaches a driver (no login, the
// case checks), so a pgx run would prove nothing more.
func TestNonUTF8BinarySecret(t *testing.T) {
	pg := sharedServer(t)
	leakCheck(t)
	for _, b := range []struct {
		name  string
		value func(secret string) []byte
		// words is a part of the message that names the problem.
		words string
	}{
		{"plain-invalid-utf8", func(s string) []byte { return append([]byte{0xff, 0xfe}, s...) }, "UTF-8"},
		{"plain-latin1", func(s string) []byte { return append([]byte("p\xe4ssw\xf6rd-"), s...) }, "UTF-8"},
		{"json-invalid-utf8-password", func(s string) []byte {
			return []byte(`{"username":"app","password":"` + s + "\xc3\x28" + `"}`)
		}, "UTF-8"},
		{"json-nul-in-password", func(s string) []byte {
			return []byte(`{"username":"app","password":"` + s + `\u0000"}`)
		}, "NUL"},
		{"plain-nul", func(s string) []byte { return append([]byte(s), 0) }, "NUL"},
		{"utf16", func(s string) []byte {
			var out []byte
			for _, r := range "\ufeff" + s {
				out = append(out, byte(r), byte(r>>8))
			}
			return out
		}, ""},
	} {
		t.Run(b.name, func(t *testing.T) {
			w := newWatch(t)
			secret := "Binary-" + randomHex(8)
			w.secret(secret)
			a := newAWSStore(t, w, credJSON("placeholder", "placeholder-pw"))
			value := b.value(secret)
			if utf8.Valid(value) && b.name != "json-nul-in-password" && b.name != "plain-nul" {
				t.Fatalf("test value is valid UTF-8")
			}
			a.putBinary(t, value)
			c := newConnector(t, libPQ, baseDSN(pg), a.src, fastOptions(w)...)
			db := openDB(t, c)
			err := db.PingContext(t.Context())
			w.checkErr(err)
			var fe *rotating.FetchError
			if !errors.Is(err, secrets.ErrMalformed) || !errors.Is(err, rotating.ErrFetchFailed) || !errors.As(err, &fe) {
				t.Fatalf("Ping with a binary secret %s: %v; want a *rotating.FetchError wrapping secrets.ErrMalformed", b.name, err)
			}
			if !strings.Contains(err.Error(), a.id) || !strings.Contains(err.Error(), b.words) {
				t.Errorf("%q: want the secret id and %q in the message", err, b.words)
			}
			if st := c.Stats(); st.Dials != 0 {
				t.Errorf("Stats().Dials = %d: a login was attempted with a malformed secret", st.Dials)
			}
		})
	}
}

// FuzzFileSource checks secrets.File on arbitrary file contents: it never
// panics, it returns a usable credential or an error wrapping
// secrets.ErrMalformed or ErrEmptyPassword (never another kind for a
// readable file), and its credential is what ParseSecret makes of the same
// bytes. The seeds run with every `go test`.
func FuzzFileSource(f *testing.F) {
	for _, a := range awkward {
		f.Add([]byte(a.s))
		f.Add([]byte(a.s + "\n"))
		f.Add([]byte(credJSON("u "+a.s, a.s)))
	}
	for _, s := range []string{"", "\n", " \r\n", "\xef\xbb\xbfpw", "two\nlines", "nul\x00", "\xff\xfe", `{"password":""}`, `{"password":"p","port":"x"}`, "{"} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "secret")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := secrets.File(path).Fetch(context.Background())
		want, wantErr := secrets.ParseSecret(data, secrets.Keys{})
		if err != nil {
			if !errors.Is(err, secrets.ErrMalformed) && !errors.Is(err, secrets.ErrEmptyPassword) {
				t.Fatalf("File.Fetch error %v wraps neither ErrMalformed nor ErrEmptyPassword", err)
			}
			if wantErr == nil {
				t.Fatalf("File.Fetch error %v, but ParseSecret accepts the contents", err)
			}
			return
		}
		if wantErr != nil || got != want {
			t.Fatalf("File.Fetch = %v, ParseSecret = %v, %v", got, want, wantErr)
		}
		if got.Validate() != nil {
			t.Fatalf("File.Fetch returned an unusable credential %v", got)
		}
	})
}

// trimOneNewline removes one trailing "\n" or "\r\n", as the secrets
// package documents for plain values.
func trimOneNewline(s string) string {
	if t, ok := strings.CutSuffix(s, "\n"); ok {
		return strings.TrimSuffix(t, "\r")
	}
	return s
}

// FuzzEnvSource checks secrets.Env on arbitrary variable values: no panic;
// an error wraps secrets.ErrMalformed or ErrEmptyPassword; otherwise the
// password is the variable's value less one trailing line break, never
// anything else (no JSON detection, no trimming), and the credential is
// usable.
func FuzzEnvSource(f *testing.F) {
	for _, a := range awkward {
		f.Add("u "+a.s, a.s, "5432")
	}
	for _, s := range []string{"", "\n", "pw\r\n", "two\nlines", "\xff", "{not json}"} {
		f.Add("app", s, "")
	}
	f.Add("app", "pw", "99999")
	f.Add("app", "pw", " 6432 ")
	f.Fuzz(func(t *testing.T, user, password, port string) {
		env := map[string]string{"DB_USER": user, "DB_PASSWORD": password, "DB_PORT": port}
		src := secrets.Env(secrets.EnvVars{Lookup: func(name string) (string, bool) {
			v, ok := env[name]
			return v, ok
		}})
		got, err := src.Fetch(context.Background())
		if err != nil {
			if !errors.Is(err, secrets.ErrMalformed) && !errors.Is(err, secrets.ErrEmptyPassword) {
				t.Fatalf("Env.Fetch error %v wraps neither ErrMalformed nor ErrEmptyPassword", err)
			}
			return
		}
		if want := trimOneNewline(password); got.Password != want || got.Validate() != nil {
			t.Fatalf("Env.Fetch password %q from %q; want %q and a usable credential", got.Password, password, want)
		}
		if want := trimOneNewline(user); got.Username != want {
			t.Fatalf("Env.Fetch username %q from %q; want %q", got.Username, user, want)
		}
	})
}
