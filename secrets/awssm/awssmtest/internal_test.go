package awssmtest

import (
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"
)

// checkPassword verifies pw against spec: its length, that every character
// is allowed and, when required, that every included class appears.
func checkPassword(t *testing.T, spec *passwordSpec, pw string) {
	t.Helper()
	length := defaultPasswordLength
	if spec.PasswordLength != nil {
		length = int(*spec.PasswordLength)
	}
	if len(pw) != length {
		t.Fatalf("length %d, want %d", len(pw), length)
	}
	type class struct {
		chars    string
		excluded bool
	}
	classes := []class{
		{lowercaseChars, spec.ExcludeLowercase},
		{uppercaseChars, spec.ExcludeUppercase},
		{numberChars, spec.ExcludeNumbers},
		{punctuationChars, spec.ExcludePunctuation},
	}
	allowed := ""
	for _, c := range classes {
		if !c.excluded {
			allowed += c.chars
		}
	}
	if spec.IncludeSpace {
		allowed += " "
	}
	for _, r := range pw {
		if !strings.ContainsRune(allowed, r) || strings.ContainsRune(spec.ExcludeCharacters, r) {
			t.Fatalf("character %q not allowed", r)
		}
	}
	if spec.RequireEachIncludedType != nil && !*spec.RequireEachIncludedType {
		return
	}
	for _, c := range classes {
		usable := strings.Map(func(r rune) rune {
			if strings.ContainsRune(spec.ExcludeCharacters, r) {
				return -1
			}
			return r
		}, c.chars)
		if !c.excluded && usable != "" && !strings.ContainsAny(pw, usable) {
			t.Fatalf("no character from %q", usable)
		}
	}
}

// TestPasswordEveryTypeEveryTime draws many short passwords: with
// RequireEachIncludedType each must hold all four classes, which a plain
// draw from the pool would often miss.
func TestPasswordEveryTypeEveryTime(t *testing.T) {
	four := int64(4)
	spec := &passwordSpec{PasswordLength: &four, ExcludeCharacters: `:/@"'\`}
	first := map[byte]bool{}
	for range 2000 {
		pw, err := spec.generate()
		if err != nil {
			t.Fatal(err)
		}
		checkPassword(t, spec, pw)
		first[pw[0]] = true
	}
	// The shuffle puts every class in front sometimes.
	for _, set := range []string{lowercaseChars, uppercaseChars, numberChars, punctuationChars} {
		seen := false
		for c := range first {
			seen = seen || strings.IndexByte(set, c) >= 0
		}
		if !seen {
			t.Errorf("no password started with a character from %q", set)
		}
	}
}

func FuzzPasswordSpec(f *testing.F) {
	f.Add(int64(32), `:/@"'\`, false, false, false, false, false, true)
	f.Add(int64(1), "", true, true, true, false, false, false)
	f.Add(int64(5), "abc", false, true, false, true, true, true)
	f.Add(int64(0), "", false, false, false, false, false, true)
	f.Add(int64(4), "0123456789", false, false, false, false, false, true)
	f.Fuzz(func(t *testing.T, length int64, exclude string, noNum, noPunct, noUpper, noLower, space, require bool) {
		if length > 300 {
			length %= 300
		}
		spec := &passwordSpec{
			PasswordLength: &length, ExcludeCharacters: exclude,
			ExcludeNumbers: noNum, ExcludePunctuation: noPunct, ExcludeUppercase: noUpper, ExcludeLowercase: noLower,
			IncludeSpace: space, RequireEachIncludedType: &require,
		}
		pw, err := spec.generate()
		if err != nil {
			if err.code != "InvalidParameterException" {
				t.Fatalf("error code %s", err.code)
			}
			return
		}
		checkPassword(t, spec, pw)
	})
}

func TestPageTokenRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 99, 100, 12345} {
		tok := base64.RawURLEncoding.EncodeToString([]byte(pageTokenPrefix + strconv.Itoa(n)))
		if got, ok := parsePageToken(tok); !ok || got != n {
			t.Errorf("parsePageToken(token for %d) = %d, %v", n, got, ok)
		}
	}
}

func FuzzParsePageToken(f *testing.F) {
	f.Add(base64.RawURLEncoding.EncodeToString([]byte(pageTokenPrefix + "2")))
	f.Add("garbage")
	f.Add("")
	f.Add(base64.RawURLEncoding.EncodeToString([]byte(pageTokenPrefix + "-1")))
	f.Fuzz(func(t *testing.T, tok string) {
		n, ok := parsePageToken(tok)
		if !ok {
			return
		}
		if n < 0 {
			t.Fatalf("accepted negative offset %d", n)
		}
		again := base64.RawURLEncoding.EncodeToString([]byte(pageTokenPrefix + strconv.Itoa(n)))
		if m, ok := parsePageToken(again); !ok || m != n {
			t.Fatalf("re-encoded token parses to %d, %v", m, ok)
		}
	})
}

func TestFormatEpoch(t *testing.T) {
	cases := []struct {
		t    time.Time
		want string
	}{
		{time.Unix(1700000000, 123_000_000), "1700000000.123"},
		{time.Unix(1700000000, 0), "1700000000.000"},
		{time.Unix(0, 5_000_000), "0.005"},
	}
	for _, tc := range cases {
		if got := formatEpoch(tc.t); got != tc.want {
			t.Errorf("formatEpoch(%v) = %s, want %s", tc.t, got, tc.want)
		}
	}
}
