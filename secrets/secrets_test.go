package secrets

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testPassword is distinctive so that any leak of it, or of its common
// encodings, is found by a substring search.
const testPassword = `Pa55-w0rd"with'quotes\and spaces🔑`

var fullCredential = Credential{
	Username: "app",
	Password: testPassword,
	Host:     "db.example.com",
	Port:     5432,
	Database: "orders",
	Version:  "v-0123",
	Expires:  time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),

	SessionsEnd:  time.Date(2026, 1, 3, 3, 4, 5, 0, time.UTC),
	NextRotation: time.Date(2026, 1, 4, 3, 4, 5, 0, time.UTC),
}

// checkNoPassword fails if out contains the password in any common
// encoding: raw, Go-quoted, JSON-escaped, hex.
func checkNoPassword(t *testing.T, what, out string) {
	t.Helper()
	for _, form := range []string{
		testPassword,
		"Pa55-w0rd", // a prefix that survives any escaping
		strconv.Quote(testPassword),
		hex.EncodeToString([]byte(testPassword)),
		strings.ToUpper(hex.EncodeToString([]byte("Pa55-w0rd"))),
		hex.EncodeToString([]byte("Pa55-w0rd")),
	} {
		if strings.Contains(out, form) {
			t.Errorf("%s = %q contains the password (as %q)", what, out, form)
		}
	}
}

func TestCredentialFormatRedacts(t *testing.T) {
	c := fullCredential
	type holder struct{ Cred Credential }
	// Not %p: fmt handles it before looking for a Formatter and, for a
	// non-pointer, prints the raw fields as a bad verb. No method can
	// prevent that; go vet reports %p with a non-pointer argument.
	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10v", "%-80s", "%#q", "%+q", "% x", "%t", "%[1]v"}
	for _, verb := range verbs {
		checkNoPassword(t, "Sprintf("+verb+", c)", fmt.Sprintf(verb, c))
		checkNoPassword(t, "Sprintf("+verb+", &c)", fmt.Sprintf(verb, &c))
	}
	checkNoPassword(t, "Sprintf(%p, &c)", fmt.Sprintf("%p", &c))
	// Wrong format strings (held in variables so that vet lets them
	// through): fmt prints the argument in its error text.
	for _, format := range []string{"x", "%!", "%d %d", "%.*v"} {
		checkNoPassword(t, "Sprintf("+format+", c)", fmt.Sprintf(format, c))
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		checkNoPassword(t, "Sprintf("+verb+", []Credential)", fmt.Sprintf(verb, []Credential{c, c}))
		checkNoPassword(t, "Sprintf("+verb+", map)", fmt.Sprintf(verb, map[string]Credential{"db": c}))
		checkNoPassword(t, "Sprintf("+verb+", struct)", fmt.Sprintf(verb, holder{c}))
		checkNoPassword(t, "Sprintf("+verb+", *struct)", fmt.Sprintf(verb, &holder{c}))
	}
	checkNoPassword(t, "Sprint", fmt.Sprint(c))
	checkNoPassword(t, "Sprintln", fmt.Sprintln(c, &c))
	checkNoPassword(t, "String", c.String())
	checkNoPassword(t, "GoString", c.GoString())
	checkNoPassword(t, "Errorf %v", fmt.Errorf("login as %v failed", c).Error())
	checkNoPassword(t, "Errorf %w-wrapped", fmt.Errorf("login as %+v: %w", c, ErrEmptyPassword).Error())
}

func TestCredentialMarshalJSONRedacts(t *testing.T) {
	c := fullCredential
	type holder struct {
		Cred  Credential
		Ptr   *Credential
		Creds []Credential
	}
	for name, v := range map[string]any{
		"value":   c,
		"pointer": &c,
		"slice":   []Credential{c},
		"map":     map[string]Credential{"db": c},
		"struct":  holder{c, &c, []Credential{c}},
	} {
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json.Marshal(%s): %v", name, err)
		}
		checkNoPassword(t, "json.Marshal("+name+")", string(out))
		if !strings.Contains(string(out), `"Password":"[REDACTED]"`) || !strings.Contains(string(out), `"Username":"app"`) {
			t.Errorf("json.Marshal(%s) = %s, want the fields with the password redacted", name, out)
		}
	}

	out, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"Username":"app","Password":"[REDACTED]","Host":"db.example.com","Port":5432,"Database":"orders","Version":"v-0123","Expires":"2026-01-02T03:04:05Z","SessionsEnd":"2026-01-03T03:04:05Z","NextRotation":"2026-01-04T03:04:05Z"}`
	if string(out) != want {
		t.Errorf("json.Marshal = %s, want %s", out, want)
	}
}

func TestCredentialString(t *testing.T) {
	tests := []struct {
		c    Credential
		want string
	}{
		{Credential{}, `{Username:"" Password:[REDACTED]}`},
		{Credential{Username: "app", Password: "x"}, `{Username:"app" Password:[REDACTED]}`},
		{
			fullCredential,
			`{Username:"app" Password:[REDACTED] Host:"db.example.com" Port:5432 Database:"orders" Version:"v-0123" Expires:2026-01-02T03:04:05Z SessionsEnd:2026-01-03T03:04:05Z NextRotation:2026-01-04T03:04:05Z}`,
		},
		{
			Credential{Username: "a\"b\n", Password: "x", Expires: time.Date(2026, 1, 2, 4, 4, 5, 0, time.FixedZone("CET", 3600))},
			`{Username:"a\"b\n" Password:[REDACTED] Expires:2026-01-02T03:04:05Z}`,
		},
		{
			Credential{Username: "app", Password: "x", SessionsEnd: time.Date(2026, 1, 2, 4, 4, 5, 0, time.FixedZone("CET", 3600))},
			`{Username:"app" Password:[REDACTED] SessionsEnd:2026-01-02T03:04:05Z}`,
		},
	}
	for _, tc := range tests {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("String() = %s, want %s", got, tc.want)
		}
		if got := fmt.Sprintf("%v", tc.c); got != tc.want {
			t.Errorf("%%v = %s, want %s", got, tc.want)
		}
		if got := fmt.Sprintf("%+v", tc.c); got != tc.want {
			t.Errorf("%%+v = %s, want %s", got, tc.want)
		}
		if got, want := fmt.Sprintf("%#v", tc.c), "secrets.Credential"+tc.want; got != want {
			t.Errorf("%%#v = %s, want %s", got, want)
		}
		if got, want := tc.c.GoString(), "secrets.Credential"+tc.want; got != want {
			t.Errorf("GoString() = %s, want %s", got, want)
		}
		if got, want := fmt.Sprintf("%q", tc.c), strconv.Quote(tc.want); got != want {
			t.Errorf("%%q = %s, want %s", got, want)
		}
	}
}

func TestCredentialLogValueRedacts(t *testing.T) {
	c := fullCredential
	handlers := map[string]func(*bytes.Buffer) slog.Handler{
		"slog JSON": func(b *bytes.Buffer) slog.Handler {
			return slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})
		},
		"slog text": func(b *bytes.Buffer) slog.Handler {
			return slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})
		},
	}
	for name, newHandler := range handlers {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			logger := slog.New(newHandler(&buf))
			logger.Info("fetched", "cred", c)
			logger.Info("fetched", "cred", &c)
			logger.Info("fetched", slog.Any("cred", c))
			logger.Info("fetched", slog.Group("db", slog.Any("cred", c)))
			logger.With("cred", c).Info("with")
			logger.WithGroup("g").Info("fetched", "creds", []Credential{c})
			logger.Info("fetched", "err", fmt.Errorf("bad %v", c))
			out := buf.String()
			checkNoPassword(t, name, out)
			for _, want := range []string{"app", "v-0123", "db.example.com"} {
				if !strings.Contains(out, want) {
					t.Errorf("log output does not contain %q:\n%s", want, out)
				}
			}
		})
	}
}

func TestCredentialLogValue(t *testing.T) {
	v := fullCredential.LogValue()
	if v.Kind() != slog.KindGroup {
		t.Fatalf("LogValue kind = %v, want Group", v.Kind())
	}
	got := map[string]string{}
	for _, a := range v.Group() {
		got[a.Key] = a.Value.String()
	}
	want := map[string]string{
		"username": "app",
		"version":  "v-0123",
		"host":     "db.example.com",
		"expires":  fullCredential.Expires.String(),

		"sessions_end":  fullCredential.SessionsEnd.String(),
		"next_rotation": fullCredential.NextRotation.String(),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("LogValue = %v, want %v", got, want)
	}

	minimal := Credential{Username: "app", Password: "x"}.LogValue().Group()
	if len(minimal) != 1 || minimal[0].Key != "username" {
		t.Errorf("LogValue of a minimal credential = %v, want only the username", minimal)
	}
}

func TestCredentialValidate(t *testing.T) {
	tests := []struct {
		name    string
		c       Credential
		wantErr error
	}{
		{"password only", Credential{Password: "x"}, nil},
		{"full", fullCredential, nil},
		{"port 1", Credential{Password: "x", Port: 1}, nil},
		{"port 65535", Credential{Password: "x", Port: 65535}, nil},
		{"zero", Credential{}, ErrEmptyPassword},
		{"empty password", Credential{Username: "app", Host: "h"}, ErrEmptyPassword},
		{"port negative", Credential{Password: "x", Port: -1}, ErrMalformed},
		{"port too large", Credential{Password: "x", Port: 65536}, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate()
			if tc.wantErr == nil {
				if err != nil {
					t.Errorf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("Validate() = %v, want %v", err, tc.wantErr)
			}
			if tc.c.Password != "" && strings.Contains(err.Error(), tc.c.Password) {
				t.Errorf("Validate() = %q contains the password", err)
			}
		})
	}
}

func TestCredentialSameLogin(t *testing.T) {
	base := Credential{Username: "app", Password: "p1", Host: "h", Port: 5432, Database: "d", Version: "v1"}
	tests := []struct {
		name   string
		change func(*Credential)
		want   bool
	}{
		{"identical", func(*Credential) {}, true},
		{"new version only", func(c *Credential) { c.Version = "v2" }, true},
		{"new expiry only", func(c *Credential) { c.Expires = time.Now() }, true},
		{"new sessions end only (lease renewed)", func(c *Credential) { c.SessionsEnd = time.Now() }, true},
		{"password", func(c *Credential) { c.Password = "p2" }, false},
		{"username (alternating users)", func(c *Credential) { c.Username = "app_clone" }, false},
		{"host", func(c *Credential) { c.Host = "h2" }, false},
		{"port", func(c *Credential) { c.Port = 5433 }, false},
		{"database", func(c *Credential) { c.Database = "d2" }, false},
	}
	for _, tc := range tests {
		other := base
		tc.change(&other)
		if got := base.SameLogin(other); got != tc.want {
			t.Errorf("%s: SameLogin = %v, want %v", tc.name, got, tc.want)
		}
		if got := other.SameLogin(base); got != tc.want {
			t.Errorf("%s: SameLogin (reversed) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestStatic(t *testing.T) {
	src := Static(fullCredential)
	got, err := src.Fetch(context.Background())
	if err != nil || got != fullCredential {
		t.Errorf("Fetch = %v, %v; want %v", got, err, fullCredential)
	}
	if d := Describe(src); d != "static" {
		t.Errorf("Describe = %q, want static", d)
	}

	_, err = Static(Credential{Username: "app"}).Fetch(context.Background())
	if !errors.Is(err, ErrEmptyPassword) {
		t.Errorf("Fetch of a credential without password: %v, want ErrEmptyPassword", err)
	}
	_, err = Static(Credential{Password: "hunter2", Port: 70000}).Fetch(context.Background())
	if !errors.Is(err, ErrMalformed) || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Fetch of a credential with a bad port: %v, want ErrMalformed without the password", err)
	}
}

func TestFunc(t *testing.T) {
	type ctxKey struct{}
	calls := 0
	src := Func(func(ctx context.Context) (Credential, error) {
		calls++
		if ctx.Value(ctxKey{}) != "marker" {
			return Credential{}, errors.New("context not passed through")
		}
		return Credential{Password: fmt.Sprint("p", calls)}, nil
	})
	ctx := context.WithValue(context.Background(), ctxKey{}, "marker")
	for want := 1; want <= 2; want++ {
		c, err := src.Fetch(ctx)
		if err != nil || c.Password != fmt.Sprint("p", want) {
			t.Errorf("Fetch #%d = %v (password %q), %v", want, c, c.Password, err)
		}
	}
	if d := Describe(src); d != "func" {
		t.Errorf("Describe = %q, want func", d)
	}

	wantErr := errors.New("store down")
	if _, err := Func(func(context.Context) (Credential, error) { return Credential{}, wantErr }).Fetch(ctx); err != wantErr {
		t.Errorf("Fetch error = %v, want %v", err, wantErr)
	}
}

type undescribedSource struct{}

func (undescribedSource) Fetch(context.Context) (Credential, error) { return Credential{}, nil }

func TestDescribeFallsBackToType(t *testing.T) {
	if got, want := Describe(undescribedSource{}), "secrets.undescribedSource"; got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
	if got, want := Describe(&undescribedSource{}), "*secrets.undescribedSource"; got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
}

// Compile-time checks that the sources describe themselves.
var (
	_ Describer = Static(Credential{}).(Describer)
	_ Describer = Func(nil)
	_ Describer = Env(EnvVars{}).(Describer)
	_ Describer = File("").(Describer)
)
