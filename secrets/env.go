package secrets

import (
	"context"
	"fmt"
	"os"
)

// EnvVars names the environment variables that an [Env] source reads. Zero
// fields take the defaults DB_USER, DB_PASSWORD, DB_HOST, DB_PORT and
// DB_NAME.
//
// The defaults are deliberately not PGUSER, PGPASSWORD, ...: lib/pq reads
// those itself, so a credential read from them could not be told apart from
// the driver's own fallback.
type EnvVars struct {
	// Username, Password, Host, Port and Database name one variable per
	// field. Only the password variable is required.
	Username string
	Password string
	Host     string
	Port     string
	Database string

	// JSON, if set, names one variable that holds the whole secret as a
	// JSON object, as ECS and Kubernetes inject a secret from AWS Secrets
	// Manager. It is parsed by ParseJSON with Keys, and the variables
	// above are not read.
	JSON string

	// Keys names the JSON keys when JSON is set. Zero fields mean
	// DefaultKeys.
	Keys Keys

	// Lookup reads a variable. Nil means os.LookupEnv. Tests set it to read
	// from a map instead of the process environment.
	Lookup func(name string) (value string, ok bool)
}

// Env returns a Source that reads the credential from environment variables
// on every Fetch, so a process whose environment is changed (with os.Setenv,
// say) sees the change.
//
// With separate variables, the password variable must be set and follows
// [ParseSecret]'s rules for a plain password (one trailing line break
// removed; empty, whitespace-only or multi-line values are errors), except
// that a value starting with '{' is still a password. The other variables
// are optional: unset or empty leaves the field empty; one trailing line
// break is removed from each (Kubernetes Secrets created from files often
// keep it); a NUL byte in any of them is an error wrapping [ErrMalformed],
// as for the password; the port variable must hold a decimal number in
// 1..65535.
//
// Errors name the variable, never its value. Describe returns
// "env DB_USER/DB_PASSWORD" (or "env <JSON variable>").
func Env(vars EnvVars) Source {
	if vars.Username == "" {
		vars.Username = "DB_USER"
	}
	if vars.Password == "" {
		vars.Password = "DB_PASSWORD"
	}
	if vars.Host == "" {
		vars.Host = "DB_HOST"
	}
	if vars.Port == "" {
		vars.Port = "DB_PORT"
	}
	if vars.Database == "" {
		vars.Database = "DB_NAME"
	}
	if vars.Lookup == nil {
		vars.Lookup = os.LookupEnv
	}
	return envSource{vars}
}

type envSource struct{ vars EnvVars }

func (s envSource) Describe() string {
	if s.vars.JSON != "" {
		return "env " + s.vars.JSON
	}
	return "env " + s.vars.Username + "/" + s.vars.Password
}

func (s envSource) Fetch(ctx context.Context) (Credential, error) {
	if err := ctx.Err(); err != nil {
		return Credential{}, err
	}
	v := s.vars
	if v.JSON != "" {
		data, ok := v.Lookup(v.JSON)
		if !ok {
			return Credential{}, fmt.Errorf("env %s: %w: variable is not set", v.JSON, ErrEmptyPassword)
		}
		c, err := ParseJSON([]byte(data), v.Keys)
		if err != nil {
			return Credential{}, fmt.Errorf("env %s: %w", v.JSON, err)
		}
		return c, nil
	}

	password, ok := v.Lookup(v.Password)
	if !ok {
		return Credential{}, fmt.Errorf("env %s: %w: variable is not set", v.Password, ErrEmptyPassword)
	}
	password, err := plainPassword(password, "value")
	if err != nil {
		return Credential{}, fmt.Errorf("env %s: %w", v.Password, err)
	}
	c := Credential{Password: password}
	if c.Username, err = s.optional(v.Username); err != nil {
		return Credential{}, err
	}
	if c.Host, err = s.optional(v.Host); err != nil {
		return Credential{}, err
	}
	if c.Database, err = s.optional(v.Database); err != nil {
		return Credential{}, err
	}
	port, err := s.optional(v.Port)
	if err != nil {
		return Credential{}, err
	}
	if c.Port, err = parsePort(port, "value"); err != nil {
		return Credential{}, fmt.Errorf("env %s: %w", v.Port, err)
	}
	return c, nil
}

// optional returns the value of the variable name, without one trailing
// line break, or "" if it is not set. A value holding a NUL byte is an
// error that names the variable.
func (s envSource) optional(name string) (string, error) {
	value, _ := s.vars.Lookup(name)
	if err := refuseNUL(value, "value"); err != nil {
		return "", fmt.Errorf("env %s: %w", name, err)
	}
	return trimOneNewline(value), nil
}
