package awssmtest

import (
	"crypto/rand"
	"math/big"
	"strings"
)

// Character classes of GetRandomPassword. punctuationChars is every ASCII
// punctuation character, the set AWS documents for ExcludePunctuation.
const (
	lowercaseChars   = "abcdefghijklmnopqrstuvwxyz"
	uppercaseChars   = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	numberChars      = "0123456789"
	punctuationChars = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
)

// AWS's default and largest PasswordLength.
const (
	defaultPasswordLength = 32
	maxPasswordLength     = 4096
)

// passwordSpec is the GetRandomPassword request.
type passwordSpec struct {
	PasswordLength          *int64
	ExcludeCharacters       string
	ExcludeNumbers          bool
	ExcludePunctuation      bool
	ExcludeUppercase        bool
	ExcludeLowercase        bool
	IncludeSpace            bool
	RequireEachIncludedType *bool // AWS's default is true
}

// generate draws a password from crypto/rand. With RequireEachIncludedType
// (the default) it holds at least one character of every included class
// other than space.
func (p *passwordSpec) generate() (string, *apiError) {
	length := defaultPasswordLength
	if p.PasswordLength != nil {
		if *p.PasswordLength < 1 || *p.PasswordLength > maxPasswordLength {
			return "", errInvalidParameter("PasswordLength must be between 1 and %d.", maxPasswordLength)
		}
		length = int(*p.PasswordLength)
	}
	keep := func(set string) string {
		return strings.Map(func(r rune) rune {
			if strings.ContainsRune(p.ExcludeCharacters, r) {
				return -1
			}
			return r
		}, set)
	}
	var required []string // classes that must appear
	add := func(excluded bool, set string) {
		if set = keep(set); !excluded && set != "" {
			required = append(required, set)
		}
	}
	add(p.ExcludeLowercase, lowercaseChars)
	add(p.ExcludeUppercase, uppercaseChars)
	add(p.ExcludeNumbers, numberChars)
	add(p.ExcludePunctuation, punctuationChars)
	pool := strings.Join(required, "")
	if p.IncludeSpace {
		pool += keep(" ")
	}
	if pool == "" {
		return "", errInvalidParameter("The request excludes every character; no password can be generated.")
	}

	pw := make([]byte, 0, length)
	if p.RequireEachIncludedType == nil || *p.RequireEachIncludedType {
		if len(required) > length {
			return "", errInvalidParameter("PasswordLength %d is too short to include one character of each of the %d required types.", length, len(required))
		}
		for _, set := range required {
			pw = append(pw, set[randIndex(len(set))])
		}
	}
	for len(pw) < length {
		pw = append(pw, pool[randIndex(len(pool))])
	}
	// Shuffle so the required characters are not always in front.
	for i := len(pw) - 1; i > 0; i-- {
		j := randIndex(i + 1)
		pw[i], pw[j] = pw[j], pw[i]
	}
	return string(pw), nil
}

// randIndex returns a uniform random int in [0, n) from crypto/rand.
func randIndex(n int) int {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		// crypto/rand does not fail on supported platforms.
		panic("awssmtest: crypto/rand: " + err.Error())
	}
	return int(v.Int64())
}
