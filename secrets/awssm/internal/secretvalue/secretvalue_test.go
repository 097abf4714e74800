package secretvalue

import (
	"errors"
	"strings"
	"testing"

	"github.com/pgrotate/rotating/secrets"
)

func ptr(s string) *string { return &s }

func TestCredential(t *testing.T) {
	c, err := Value{VersionID: "v1", SecretString: ptr(`{"username":"u","password":"p"}`)}.Credential(secrets.Keys{})
	if err != nil || c.Username != "u" || c.Password != "p" || c.Version != "v1" {
		t.Errorf("SecretString: %v, %v", c, err)
	}
	c, err = Value{VersionID: "v2", SecretBinary: []byte("plain")}.Credential(secrets.Keys{})
	if err != nil || c.Password != "plain" || c.Version != "v2" {
		t.Errorf("SecretBinary: %v, %v", c, err)
	}
	c, err = Value{VersionID: "v3"}.Credential(secrets.Keys{})
	if !errors.Is(err, secrets.ErrEmptyPassword) || c != (secrets.Credential{Version: "v3"}) {
		t.Errorf("no value: %v, %v", c, err)
	}
	c, err = Value{VersionID: "v4", SecretString: ptr(`{"password":`)}.Credential(secrets.Keys{})
	if !errors.Is(err, secrets.ErrMalformed) || c != (secrets.Credential{Version: "v4"}) {
		t.Errorf("malformed: %v, %v", c, err)
	}
}

func TestPending(t *testing.T) {
	rejected := secrets.Credential{Username: "u", Password: "old", Version: "v1"}
	cases := []struct {
		name     string
		v        Value
		finished bool
		why      string // "" for a pending credential
		err      error
	}{
		{"a pending version", Value{VersionID: "v2", SecretString: ptr(`{"username":"u","password":"new"}`), VersionStages: []string{"AWSPENDING"}}, false, "", nil},
		{"finished since", Value{VersionID: "v2", SecretString: ptr(`{"username":"u","password":"new"}`), VersionStages: []string{"AWSPENDING", "AWSCURRENT"}}, true, "", nil},
		{"the rejected version", Value{VersionID: "v1", SecretString: ptr(`x`), VersionStages: []string{"AWSPENDING"}}, false, "is the rejected one", nil},
		{"the rejected version, current", Value{VersionID: "v1", VersionStages: []string{"AWSPENDING", "AWSCURRENT"}}, true, "also AWSCURRENT (no rotation in progress)", nil},
		{"the rejected login", Value{VersionID: "v2", SecretString: ptr(`{"username":"u","password":"old"}`)}, false, "holds the rejected login", nil},
		{"malformed", Value{VersionID: "v2", SecretString: ptr(`{"username":"u"}`)}, false, "", secrets.ErrEmptyPassword},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, finished, why, err := tc.v.Pending("AWSCURRENT", rejected, secrets.Keys{})
			switch {
			case finished != tc.finished:
				t.Errorf("finished = %v", finished)
			case tc.err != nil && !errors.Is(err, tc.err):
				t.Errorf("err = %v, want %v", err, tc.err)
			case tc.err == nil && err != nil:
				t.Errorf("err = %v", err)
			case tc.why == "" && why != "":
				t.Errorf("no pending: %s", why)
			case tc.why != "" && !strings.Contains(why, tc.why):
				t.Errorf("why = %q, want %q", why, tc.why)
			case tc.why == "" && tc.err == nil && (c.Password != "new" || c.Version != "v2"):
				t.Errorf("credential %v", c)
			case tc.why != "" && c != (secrets.Credential{}):
				t.Errorf("a credential with no pending: %v", c)
			}
		})
	}
}
