package gcpsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"hash/crc32"
	"strings"
	"testing"

	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"

	"github.com/pgrotate/rotating/secrets"
)

// Checksum modes of FuzzCredential's payloads.
const (
	crcAbsent = iota
	crcRight
	crcWrong
)

// FuzzCredential feeds arbitrary payloads, with no checksum, the right one
// or a wrong one, and arbitrary answer names, to the part of Fetch that
// turns an AccessSecretVersion answer into a credential. It must not
// panic; a wrong checksum is always caught; an error is an *Error that
// wraps ErrChecksum, secrets.ErrMalformed or secrets.ErrEmptyPassword and
// does not contain the payload's password; a credential is what
// secrets.ParseSecret makes of the payload, valid, with the answer's
// version number.
func FuzzCredential(f *testing.F) {
	for _, seed := range []string{
		`{"engine":"postgres","host":"db","port":5432,"username":"app","password":"pw-seed","dbname":"app"}`,
		`{"username":"app","password":"pw-seed",`,
		`{"password":"pw\u0000seed"}`,
		`{"password":""}`,
		`{"port":"x","password":"pw-seed"}`,
		"pw-seed\n",
		"pw-seed\r\n",
		"line1\npw-seed\n",
		"\xef\xbb\xbfpw-seed",
		"\xff\xfe",
		"",
		"   ",
	} {
		for _, mode := range []uint8{crcAbsent, crcRight, crcWrong} {
			f.Add([]byte(seed), mode, "projects/123/secrets/db/versions/7")
		}
	}
	f.Add([]byte("pw-seed"), uint8(crcRight), "")
	f.Add([]byte("pw-seed"), uint8(crcRight), "projects/123/secrets/db/versions/")
	f.Add([]byte("pw-seed"), uint8(crcRight), "nonsense")
	s := &Source{name: "projects/p/secrets/db/versions/latest"}
	f.Fuzz(func(t *testing.T, data []byte, mode uint8, name string) {
		mode %= 3
		build := func(data []byte) *secretmanagerpb.AccessSecretVersionResponse {
			p := &secretmanagerpb.SecretPayload{Data: data}
			crc := int64(crc32.Checksum(data, castagnoli))
			switch mode {
			case crcRight:
				p.DataCrc32C = &crc
			case crcWrong:
				crc ^= 1
				p.DataCrc32C = &crc
			}
			return &secretmanagerpb.AccessSecretVersionResponse{Name: name, Payload: p}
		}
		c, err := s.credential(build(data), 1)
		if v := versionNumber(name); strings.Contains(v, "/") {
			t.Fatalf("versionNumber(%q) = %q", name, v)
		}
		if err != nil {
			if !errors.Is(err, ErrChecksum) && !errors.Is(err, secrets.ErrMalformed) && !errors.Is(err, secrets.ErrEmptyPassword) {
				t.Fatalf("error %q wraps none of ErrChecksum, ErrMalformed, ErrEmptyPassword", err)
			}
			if err.Version != versionNumber(name) || err.Name != s.name {
				t.Fatalf("Error{Name: %q, Version: %q}, want %q, %q", err.Name, err.Version, s.name, versionNumber(name))
			}
			if c != (secrets.Credential{}) {
				t.Fatalf("with error %q, a non-zero credential %v", err, c)
			}
			for _, pw := range passwordsIn(data) {
				if !strings.Contains(err.Error(), pw) {
					continue
				}
				// The password might be a word of the message: if the
				// same payload with another password gives a message that
				// still has it, it is.
				other := bytes.ReplaceAll(data, []byte(pw), []byte(strings.Repeat("~", len(pw))))
				if _, oerr := s.credential(build(other), 1); oerr == nil || !strings.Contains(oerr.Error(), pw) {
					t.Fatalf("error %q contains the password %q", err, pw)
				}
			}
			return
		}
		if mode == crcWrong {
			t.Fatalf("a wrong checksum was not caught: %v", c)
		}
		want, perr := secrets.ParseSecret(data, secrets.Keys{})
		if perr != nil {
			t.Fatalf("credential accepted what ParseSecret refuses (%v)", perr)
		}
		want.Version = versionNumber(name)
		if c != want {
			t.Fatalf("credential = %v, want %v", c, want)
		}
		if verr := c.Validate(); verr != nil {
			t.Fatalf("credential is invalid: %v", verr)
		}
	})
}

// passwordsIn returns the strings of data that may be its password, for
// the leak check: the whole payload, its first line, and a JSON
// "password" field; only those of 4 bytes or more, which cannot match a
// message by chance.
func passwordsIn(data []byte) []string {
	var out []string
	add := func(s string) {
		if len(s) >= 4 {
			out = append(out, s)
		}
	}
	add(string(data))
	if line, _, ok := bytes.Cut(data, []byte("\n")); ok {
		add(string(line))
	}
	var obj map[string]any
	if json.Unmarshal(data, &obj) == nil {
		if pw, ok := obj["password"].(string); ok {
			add(pw)
		}
	}
	return out
}

// FuzzVersionName: versionName never panics, and what it accepts is a
// version name that it accepts again unchanged and whose last segment is
// the version.
func FuzzVersionName(f *testing.F) {
	for _, seed := range []string{
		"projects/p/secrets/s", "projects/p/secrets/s/versions/3", "projects/p/locations/l/secrets/s",
		"projects/p/locations/l/secrets/s/versions/latest", "", "/", "projects//secrets/s", "projects/p/secrets/s/",
		"projects/p/secrets/s/versions/1/x", "projects/p/secrets/s t",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		v, err := versionName(name)
		if err != nil {
			if v != "" {
				t.Fatalf("versionName(%q) = %q with error %v", name, v, err)
			}
			return
		}
		again, err := versionName(v)
		if err != nil || again != v {
			t.Fatalf("versionName(%q) = %q, and again %q, %v", name, v, again, err)
		}
		if n := versionNumber(v); n == "" || !strings.HasSuffix(v, "/versions/"+n) {
			t.Fatalf("versionNumber(%q) = %q", v, n)
		}
		if v != name && v != name+"/versions/latest" {
			t.Fatalf("versionName(%q) = %q", name, v)
		}
	})
}
