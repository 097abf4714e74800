package smagent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// DefaultTokenFile is where the agent's install script on Amazon EC2 writes
// the token (readable by the awssmatokenreader group).
const DefaultTokenFile = "/var/run/awssmatoken"

// The environment variables the agent takes its token from, in the order
// of its ssrf_env_variables default. A value of AWS_TOKEN may be
// "file://PATH", naming a file that holds the token.
const (
	EnvToken                  = "AWS_TOKEN"
	EnvSessionToken           = "AWS_SESSION_TOKEN"
	EnvContainerAuthorization = "AWS_CONTAINER_AUTHORIZATION_TOKEN"
)

const (
	fileScheme   = "file://"
	maxTokenFile = 64 << 10
	// tokenFileAdvice follows a permission error on a token file.
	tokenFileAdvice = " (on EC2, add the application's user to the awssmatokenreader group)"
	// tokenPlaces lists where the discovery looks, for ErrNoToken.
	tokenPlaces = EnvToken + ", " + DefaultTokenFile + ", " + EnvSessionToken + " or " + EnvContainerAuthorization
)

// tokenFinder says where a Source's token comes from. Exactly one of its
// ways is set by the options; the zero value is the discovery the package
// documentation describes.
type tokenFinder struct {
	fixed    string // WithToken
	hasFixed bool
	file     string // WithTokenFile

	// For the discovery, replaceable in tests.
	getenv      func(string) string
	defaultFile string
}

// find returns the token and where it came from, reading a file anew on
// every call: the agent makes a new token when it restarts, and the
// requests are few (a handful per rotation).
func (f tokenFinder) find() (token, from string, err error) {
	switch {
	case f.hasFixed:
		return f.fixed, "WithToken", nil
	case f.file != "":
		token, err := readTokenFile(f.file)
		return token, "file " + f.file, err
	}
	getenv := f.getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	defaultFile := f.defaultFile
	if defaultFile == "" {
		defaultFile = DefaultTokenFile
	}
	// AWS_TOKEN first: the agent gives it precedence over the other two,
	// and it is set on purpose.
	if v := getenv(EnvToken); v != "" {
		if path, ok := strings.CutPrefix(v, fileScheme); ok {
			token, err := readTokenFile(path)
			return token, EnvToken + " (file " + path + ")", err
		}
		token, err := cleanToken(v, EnvToken)
		return token, EnvToken, err
	}
	// Then the install script's file, before the session tokens: on EC2 an
	// application may hold an AWS_SESSION_TOKEN of its own credentials,
	// which the agent (started by systemd with AWS_TOKEN pointing at this
	// file) does not use.
	token, err = readTokenFile(defaultFile)
	switch {
	case err == nil:
		return token, "file " + defaultFile, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", "file " + defaultFile, err
	}
	for _, name := range []string{EnvSessionToken, EnvContainerAuthorization} {
		if v := getenv(name); v != "" {
			token, err := cleanToken(v, name)
			return token, name, err
		}
	}
	return "", "", fmt.Errorf("%w: none of %s is set or exists", ErrNoToken, tokenPlaces)
}

// readTokenFile reads a token file as the agent does: its contents with
// surrounding whitespace removed. Errors name the file, never its
// contents.
func readTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return "", fmt.Errorf("reading the agent's token file: %w%s", err, tokenFileAdvice)
		}
		return "", fmt.Errorf("reading the agent's token file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("reading the agent's token file %s: %w", path, err)
	}
	if len(b) > maxTokenFile {
		return "", fmt.Errorf("the agent's token file %s is larger than %d bytes", path, maxTokenFile)
	}
	return cleanToken(string(b), "the token file "+path)
}

// cleanToken trims whitespace from a token and checks that it can be sent
// in a header. what names where it came from, for errors that never quote
// it.
func cleanToken(s, what string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("%w: %s is empty", ErrNoToken, what)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return "", fmt.Errorf("%s holds a control character at byte %d, which no HTTP header can carry", what, i)
		}
	}
	return s, nil
}
