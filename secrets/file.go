package secrets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
)

// MaxFileSize is the largest secret file that a [File] source reads. A
// larger file is an error wrapping [ErrMalformed]: no credential needs a
// megabyte, and a path pointing at the wrong file should not be read whole.
const MaxFileSize = 1 << 20

// Format says how a [File] source interprets the file's contents.
type Format int

const (
	// FormatAuto parses the contents with [ParseSecret]: a JSON object if
	// the contents start with '{', a plain password otherwise.
	FormatAuto Format = iota
	// FormatJSON parses the contents with [ParseJSON].
	FormatJSON
	// FormatPlain takes the contents as a plain password under
	// [ParseSecret]'s rules, even if it starts with '{'.
	FormatPlain
)

// String returns "auto", "json" or "plain".
func (f Format) String() string {
	switch f {
	case FormatAuto:
		return "auto"
	case FormatJSON:
		return "json"
	case FormatPlain:
		return "plain"
	}
	return "Format(" + strconv.Itoa(int(f)) + ")"
}

// FileOption configures a [File] source.
type FileOption func(*fileSource)

// WithKeys sets the JSON keys used when the file holds a JSON object. Zero
// fields of keys mean [DefaultKeys].
func WithKeys(keys Keys) FileOption {
	return func(s *fileSource) { s.keys = keys }
}

// WithFormat sets how the file is parsed; the default is [FormatAuto].
func WithFormat(format Format) FileOption {
	return func(s *fileSource) { s.format = format }
}

// File returns a Source that reads the credential from the file at path on
// every Fetch.
//
// Because the file is opened anew each time (following symbolic links),
// the ways Kubernetes Secret volumes, the Secrets Store CSI driver and Vault
// Agent replace a file (renaming a new file over the old one, or swapping
// the ..data symbolic link) are picked up by the next Fetch. The file must
// be a regular file (so that opening it cannot block on a named pipe) of at
// most [MaxFileSize] bytes.
//
// Fetch returns ctx.Err() if ctx is already done; reading a regular file is
// not interruptible after that. Errors name the path and the problem ("not
// found", "permission denied", a malformed field), never the contents; the
// error from the operating system stays reachable with errors.Is (for
// example errors.Is(err, fs.ErrNotExist)). Describe returns "file <path>".
func File(path string, opts ...FileOption) Source {
	s := &fileSource{path: path}
	for _, opt := range opts {
		opt(s)
	}
	return s
}

type fileSource struct {
	path   string
	format Format
	keys   Keys
}

func (s *fileSource) Describe() string { return "file " + s.path }

func (s *fileSource) Fetch(ctx context.Context) (Credential, error) {
	if err := ctx.Err(); err != nil {
		return Credential{}, err
	}
	data, err := s.read()
	if err != nil {
		return Credential{}, err
	}
	var c Credential
	switch s.format {
	case FormatAuto:
		c, err = ParseSecret(data, s.keys)
	case FormatJSON:
		c, err = ParseJSON(data, s.keys)
	case FormatPlain:
		c, err = parsePlainSecret(bytes.TrimPrefix(data, []byte(utf8BOM)))
	default:
		return Credential{}, &fileError{path: s.path, problem: "unknown format " + s.format.String()}
	}
	if err != nil {
		return Credential{}, &fileError{path: s.path, problem: err.Error(), err: err}
	}
	return c, nil
}

// notFoundRetries is how many more times read tries a path that was not
// found. Resolving db.json -> ..data/db.json is not atomic: if the kubelet
// swaps ..data and removes the old directory between the lookup of ..data
// and the lookup of db.json inside it, the open fails with ENOENT although
// the file is there before and after. A fresh lookup sees the new ..data.
const notFoundRetries = 3

// read returns the contents of the file, refusing anything but a regular
// file of at most MaxFileSize bytes.
func (s *fileSource) read() ([]byte, error) {
	data, err := s.readOnce()
	for i := 0; i < notFoundRetries && errors.Is(err, fs.ErrNotExist); i++ {
		data, err = s.readOnce()
	}
	return data, err
}

func (s *fileSource) readOnce() ([]byte, error) {
	// Stat before opening: opening a named pipe would block until a writer
	// appears, and no context can interrupt that.
	info, err := os.Stat(s.path)
	if err != nil {
		return nil, s.osError(err)
	}
	if !info.Mode().IsRegular() {
		return nil, &fileError{path: s.path, problem: "is " + fileKind(info.Mode()) + ", want a regular file"}
	}
	f, err := os.Open(s.path)
	if err != nil {
		return nil, s.osError(err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, s.osError(err)
	}
	if len(data) > MaxFileSize {
		err := fmt.Errorf("%w: larger than %d bytes", ErrMalformed, MaxFileSize)
		return nil, &fileError{path: s.path, problem: err.Error(), err: err}
	}
	return data, nil
}

// fileKind names the kind of a file that is not a regular file.
func fileKind(mode fs.FileMode) string {
	switch {
	case mode.IsDir():
		return "a directory"
	case mode&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case mode&fs.ModeSocket != 0:
		return "a socket"
	case mode&fs.ModeDevice != 0:
		return "a device"
	}
	return "a special file"
}

// osError describes err, from the operating system, by its kind only: the
// *fs.PathError text would repeat the path.
func (s *fileSource) osError(err error) error {
	problem := "read failed"
	var pathErr *fs.PathError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		problem = "not found"
	case errors.Is(err, fs.ErrPermission):
		problem = "permission denied"
	case errors.As(err, &pathErr):
		problem = pathErr.Op + ": " + pathErr.Err.Error()
	}
	return &fileError{path: s.path, problem: problem, err: err}
}

// fileError is an error of a File source: "file <path>: <problem>", wrapping
// the underlying error (which may be nil).
type fileError struct {
	path    string
	problem string
	err     error
}

func (e *fileError) Error() string { return "file " + e.path + ": " + e.problem }

func (e *fileError) Unwrap() error { return e.err }
