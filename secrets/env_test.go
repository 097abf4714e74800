package secrets

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// mapLookup returns an EnvVars.Lookup that reads from env.
func mapLookup(env map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
}

func TestEnv(t *testing.T) {
	rdsJSON := `{"engine":"postgres","host":"db.example.com","username":"app","password":"hunter2","dbname":"orders","port":5432}`
	tests := []struct {
		name string
		vars EnvVars // Lookup is set from env
		env  map[string]string

		want     Credential
		wantErr  error
		wantMsg  string
		noSecret string // must not appear in the error
	}{
		{
			name: "all default variables",
			env: map[string]string{
				"DB_USER": "app", "DB_PASSWORD": "hunter2", "DB_HOST": "db.example.com",
				"DB_PORT": "5432", "DB_NAME": "orders",
			},
			want: Credential{Username: "app", Password: "hunter2", Host: "db.example.com", Port: 5432, Database: "orders"},
		},
		{
			name: "only the password",
			env:  map[string]string{"DB_PASSWORD": "hunter2"},
			want: Credential{Password: "hunter2"},
		},
		{
			name:    "PGUSER and PGPASSWORD are not defaults",
			env:     map[string]string{"PGUSER": "app", "PGPASSWORD": "hunter2"},
			wantErr: ErrEmptyPassword, wantMsg: "env DB_PASSWORD: secrets: credential has an empty password: variable is not set",
			noSecret: "hunter2",
		},
		{
			name: "custom variable names",
			vars: EnvVars{Username: "APP_DB_USER", Password: "APP_DB_PASS", Host: "APP_DB_HOST", Port: "APP_DB_PORT", Database: "APP_DB_NAME"},
			env: map[string]string{
				"APP_DB_USER": "app", "APP_DB_PASS": "hunter2", "APP_DB_HOST": "h", "APP_DB_PORT": "6432", "APP_DB_NAME": "d",
				"DB_USER": "other", "DB_PASSWORD": "other", "DB_HOST": "other", "DB_PORT": "1", "DB_NAME": "other",
			},
			want: Credential{Username: "app", Password: "hunter2", Host: "h", Port: 6432, Database: "d"},
		},
		{
			name: "trailing newlines removed",
			env:  map[string]string{"DB_USER": "app\n", "DB_PASSWORD": "hunter2\r\n", "DB_HOST": "h\n", "DB_PORT": "5432\n", "DB_NAME": "d\n"},
			want: Credential{Username: "app", Password: "hunter2", Host: "h", Port: 5432, Database: "d"},
		},
		{
			name: "password starting with a brace is a password",
			env:  map[string]string{"DB_PASSWORD": `{"password":"x"}`},
			want: Credential{Password: `{"password":"x"}`},
		},
		{
			name: "awkward password",
			env:  map[string]string{"DB_PASSWORD": ` @:/?#%&=;'"\ pässwörd🔑 `},
			want: Credential{Password: ` @:/?#%&=;'"\ pässwörd🔑 `},
		},
		{
			name: "empty optional variables",
			env:  map[string]string{"DB_USER": "", "DB_PASSWORD": "hunter2", "DB_HOST": "", "DB_PORT": "", "DB_NAME": ""},
			want: Credential{Password: "hunter2"},
		},
		{
			name:    "password empty",
			env:     map[string]string{"DB_PASSWORD": ""},
			wantErr: ErrEmptyPassword, wantMsg: "env DB_PASSWORD: secrets: credential has an empty password: value is empty",
		},
		{
			name:    "password whitespace",
			env:     map[string]string{"DB_PASSWORD": " \n"},
			wantErr: ErrEmptyPassword, wantMsg: "env DB_PASSWORD:",
		},
		{
			name:    "password with two lines",
			env:     map[string]string{"DB_PASSWORD": "hunter2\nhunter3"},
			wantErr: ErrMalformed, wantMsg: "env DB_PASSWORD: secrets: malformed secret: value contains a line break",
			noSecret: "hunter2",
		},
		{
			name:    "custom password variable not set",
			vars:    EnvVars{Password: "APP_DB_PASS"},
			env:     map[string]string{"DB_PASSWORD": "hunter2"},
			wantErr: ErrEmptyPassword, wantMsg: "env APP_DB_PASS:",
		},
		{
			name:    "port not a number",
			env:     map[string]string{"DB_PASSWORD": "hunter2", "DB_PORT": "postgres"},
			wantErr: ErrMalformed, wantMsg: "env DB_PORT: secrets: malformed secret: value is not a decimal port number",
			noSecret: "postgres",
		},
		{
			name:    "port out of range",
			env:     map[string]string{"DB_PASSWORD": "hunter2", "DB_PORT": "70000"},
			wantErr: ErrMalformed, wantMsg: "env DB_PORT: secrets: malformed secret: value is out of range 1..65535",
			noSecret: "70000",
		},

		// The whole secret in one variable.
		{
			name: "JSON variable",
			vars: EnvVars{JSON: "DB_SECRET"},
			env:  map[string]string{"DB_SECRET": rdsJSON, "DB_PASSWORD": "not-this"},
			want: Credential{Username: "app", Password: "hunter2", Host: "db.example.com", Port: 5432, Database: "orders"},
		},
		{
			name: "JSON variable with custom keys",
			vars: EnvVars{JSON: "DB_SECRET", Keys: Keys{Username: "user", Password: "pass"}},
			env:  map[string]string{"DB_SECRET": `{"user":"app","pass":"hunter2","port":"5432"}`},
			want: Credential{Username: "app", Password: "hunter2", Port: 5432},
		},
		{
			name:    "JSON variable not set",
			vars:    EnvVars{JSON: "DB_SECRET"},
			env:     map[string]string{"DB_PASSWORD": "hunter2"},
			wantErr: ErrEmptyPassword, wantMsg: "env DB_SECRET: secrets: credential has an empty password: variable is not set",
		},
		{
			name:    "JSON variable malformed",
			vars:    EnvVars{JSON: "DB_SECRET"},
			env:     map[string]string{"DB_SECRET": `{"password":hunter2}`},
			wantErr: ErrMalformed, wantMsg: "env DB_SECRET: secrets: malformed secret: invalid JSON near byte offset",
			noSecret: "hunter2",
		},
		{
			name:    "JSON variable is a plain password",
			vars:    EnvVars{JSON: "DB_SECRET"},
			env:     map[string]string{"DB_SECRET": "hunter2"},
			wantErr: ErrMalformed, wantMsg: "env DB_SECRET: secrets: malformed secret: invalid JSON",
			noSecret: "hunter2",
		},
		{
			name:    "JSON variable without password",
			vars:    EnvVars{JSON: "DB_SECRET"},
			env:     map[string]string{"DB_SECRET": `{"username":"app"}`},
			wantErr: ErrEmptyPassword, wantMsg: `env DB_SECRET: secrets: credential has an empty password: field "password" is missing`,
		},
		{
			name:    "JSON variable with a bad port",
			vars:    EnvVars{JSON: "DB_SECRET"},
			env:     map[string]string{"DB_SECRET": `{"password":"hunter2","port":"abc"}`},
			wantErr: ErrMalformed, wantMsg: `env DB_SECRET: secrets: malformed secret: field "port"`,
			noSecret: "hunter2",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vars := tc.vars
			vars.Lookup = mapLookup(tc.env)
			got, err := Env(vars).Fetch(context.Background())
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				if got != tc.want {
					t.Fatalf("got %v (password %q), want %v (password %q)", got, got.Password, tc.want, tc.want.Password)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want one wrapping %q", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tc.wantMsg)
			}
			if tc.noSecret != "" && strings.Contains(err.Error(), tc.noSecret) {
				t.Errorf("error %q contains the value %q", err, tc.noSecret)
			}
			if got != (Credential{}) {
				t.Errorf("with an error, got a non-zero credential %v", got)
			}
		})
	}
}

func TestEnvDescribe(t *testing.T) {
	tests := []struct {
		vars EnvVars
		want string
	}{
		{EnvVars{}, "env DB_USER/DB_PASSWORD"},
		{EnvVars{Username: "U", Password: "P"}, "env U/P"},
		{EnvVars{JSON: "DB_SECRET"}, "env DB_SECRET"},
	}
	for _, tc := range tests {
		if got := Describe(Env(tc.vars)); got != tc.want {
			t.Errorf("Describe(Env(%+v)) = %q, want %q", tc.vars, got, tc.want)
		}
	}
}

// TestEnvReadsEachFetch checks that a change to the process environment is
// seen by the next Fetch, through the default os.LookupEnv.
func TestEnvReadsEachFetch(t *testing.T) {
	const prefix = "SECRETS_TEST_ENV_"
	t.Setenv(prefix+"USER", "app")
	t.Setenv(prefix+"PASSWORD", "first-password")
	src := Env(EnvVars{Username: prefix + "USER", Password: prefix + "PASSWORD", Host: prefix + "HOST", Port: prefix + "PORT", Database: prefix + "NAME"})

	first, err := src.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(prefix+"PASSWORD", "second-password")
	second, err := src.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if first.Password != "first-password" || second.Password != "second-password" || second.Username != "app" {
		t.Errorf("fetched %q then %q (user %q), want the password to follow the environment", first.Password, second.Password, second.Username)
	}
}

func TestEnvCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	looked := false
	src := Env(EnvVars{Lookup: func(string) (string, bool) { looked = true; return "hunter2", true }})
	if _, err := src.Fetch(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Fetch with a cancelled context: %v, want context.Canceled", err)
	}
	if looked {
		t.Error("Fetch with a cancelled context read the environment")
	}
}
