package secrets

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// writeFile writes contents to name in dir and returns its path.
func writeFile(t *testing.T, dir, name, contents string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(contents), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func fetchPassword(t *testing.T, src Source) string {
	t.Helper()
	c, err := src.Fetch(context.Background())
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	return c.Password
}

func TestFile(t *testing.T) {
	rdsJSON := `{"engine":"postgres","host":"db.example.com","username":"app","password":"hunter2","dbname":"orders","port":"5432"}` + "\n"
	tests := []struct {
		name     string
		contents string
		opts     []FileOption

		want     Credential
		wantErr  error
		wantMsg  string // after "file <path>: "
		noSecret string
	}{
		{
			name: "RDS JSON", contents: rdsJSON,
			want: Credential{Username: "app", Password: "hunter2", Host: "db.example.com", Port: 5432, Database: "orders"},
		},
		{name: "plain password", contents: "hunter2\n", want: Credential{Password: "hunter2"}},
		{name: "plain password CRLF", contents: "hunter2\r\n", want: Credential{Password: "hunter2"}},
		{
			name: "JSON with custom keys", contents: `{"user":"app","secret":"hunter2"}`,
			opts: []FileOption{WithKeys(Keys{Username: "user", Password: "secret"})},
			want: Credential{Username: "app", Password: "hunter2"},
		},
		{
			name: "FormatJSON", contents: rdsJSON, opts: []FileOption{WithFormat(FormatJSON)},
			want: Credential{Username: "app", Password: "hunter2", Host: "db.example.com", Port: 5432, Database: "orders"},
		},
		{
			name: "FormatJSON refuses a plain password", contents: "hunter2\n", opts: []FileOption{WithFormat(FormatJSON)},
			wantErr: ErrMalformed, wantMsg: "secrets: malformed secret: invalid JSON near byte offset", noSecret: "hunter2",
		},
		{
			name: "FormatPlain takes a brace as a password", contents: `{hunter2}` + "\n", opts: []FileOption{WithFormat(FormatPlain)},
			want: Credential{Password: `{hunter2}`},
		},
		{
			name: "FormatPlain with byte order mark", contents: utf8BOM + "hunter2\n", opts: []FileOption{WithFormat(FormatPlain)},
			want: Credential{Password: "hunter2"},
		},
		{
			name: "FormatPlain refuses two lines", contents: "app\nhunter2\n", opts: []FileOption{WithFormat(FormatPlain)},
			wantErr: ErrMalformed, wantMsg: "secrets: malformed secret: plain-text secret contains a line break", noSecret: "hunter2",
		},
		{
			name: "later option wins", contents: `{hunter2}`,
			opts: []FileOption{WithFormat(FormatJSON), WithFormat(FormatPlain)},
			want: Credential{Password: `{hunter2}`},
		},
		{
			name: "unknown format", contents: "hunter2", opts: []FileOption{WithFormat(Format(7))},
			wantMsg: "unknown format Format(7)",
		},
		{
			name: "empty file", contents: "",
			wantErr: ErrEmptyPassword, wantMsg: "secrets: credential has an empty password: plain-text secret is empty",
		},
		{
			name: "empty file as JSON", contents: "", opts: []FileOption{WithFormat(FormatJSON)},
			wantErr: ErrMalformed, wantMsg: "secrets: malformed secret: empty document",
		},
		{
			name: "malformed field", contents: `{"password":"hunter2","port":"abc"}`,
			wantErr: ErrMalformed, wantMsg: `secrets: malformed secret: field "port" is not a decimal port number`,
			noSecret: "hunter2",
		},
		{
			name: "missing password", contents: `{"username":"app"}`,
			wantErr: ErrEmptyPassword, wantMsg: `secrets: credential has an empty password: field "password" is missing or null`,
		},
		{
			name: "exactly MaxFileSize", contents: strings.Repeat("x", MaxFileSize),
			want: Credential{Password: strings.Repeat("x", MaxFileSize)},
		},
		{
			name: "larger than MaxFileSize", contents: strings.Repeat("x", MaxFileSize+1),
			wantErr: ErrMalformed, wantMsg: "secrets: malformed secret: larger than 1048576 bytes", noSecret: "xxxx",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "secret", tc.contents)
			got, err := File(path, tc.opts...).Fetch(context.Background())
			if tc.wantMsg == "" {
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				if got != tc.want {
					t.Fatalf("got %v (password %.40q), want %v (password %.40q)", got, got.Password, tc.want, tc.want.Password)
				}
				return
			}
			if err == nil {
				t.Fatalf("got %v, want an error", got)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %q does not wrap %q", err, tc.wantErr)
			}
			if want := "file " + path + ": " + tc.wantMsg; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q, want it to start with %q", err, want)
			}
			if tc.noSecret != "" && strings.Contains(err.Error(), tc.noSecret) {
				t.Errorf("error %q contains the contents %q", err, tc.noSecret)
			}
			if got != (Credential{}) {
				t.Errorf("with an error, got a non-zero credential %v", got)
			}
		})
	}
}

func TestFileNotFound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.json")
	_, err := File(path).Fetch(context.Background())
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v, want one wrapping fs.ErrNotExist", err)
	}
	if want := "file " + path + ": not found"; err == nil || err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestFileDanglingSymlink(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "db.json")
	if err := os.Symlink(filepath.Join(dir, "nowhere"), path); err != nil {
		t.Skipf("cannot create symlinks: %v", err)
	}
	_, err := File(path).Fetch(context.Background())
	if !errors.Is(err, fs.ErrNotExist) || err.Error() != "file "+path+": not found" {
		t.Errorf("error %v, want not found", err)
	}
}

func TestFilePermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root can read any file")
	}
	path := writeFile(t, t.TempDir(), "db.json", "hunter2")
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	_, err := File(path).Fetch(context.Background())
	if !errors.Is(err, fs.ErrPermission) {
		t.Errorf("error %v, want one wrapping fs.ErrPermission", err)
	}
	if want := "file " + path + ": permission denied"; err == nil || err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestFileDirectory(t *testing.T) {
	dir := t.TempDir()
	_, err := File(dir).Fetch(context.Background())
	if want := "file " + dir + ": is a directory, want a regular file"; err == nil || err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestFileCancelledContext(t *testing.T) {
	path := writeFile(t, t.TempDir(), "db.json", "hunter2")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := File(path).Fetch(ctx); err != context.Canceled {
		t.Errorf("Fetch with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestFileDescribe(t *testing.T) {
	const path = "/var/run/secrets/db.json"
	if got, want := Describe(File(path, WithFormat(FormatJSON))), "file "+path; got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
}

func TestFormatString(t *testing.T) {
	for f, want := range map[Format]string{FormatAuto: "auto", FormatJSON: "json", FormatPlain: "plain", Format(-1): "Format(-1)"} {
		if got := f.String(); got != want {
			t.Errorf("Format(%d).String() = %q, want %q", int(f), got, want)
		}
	}
}

// TestFileRenameSwap covers a writer that writes a temporary file and
// renames it over the secret file, as Vault Agent and most tools do.
func TestFileRenameSwap(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "db.json", `{"username":"app","password":"first-password"}`)
	src := File(path)
	if got := fetchPassword(t, src); got != "first-password" {
		t.Fatalf("first fetch: password %q", got)
	}

	tmp := writeFile(t, dir, ".db.json.tmp", `{"username":"app","password":"second-password"}`)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if got := fetchPassword(t, src); got != "second-password" {
		t.Fatalf("after rename: password %q, want the new one", got)
	}
}

// k8sVolume is a directory laid out the way the kubelet lays out a Secret
// volume:
//
//	..2026_01_01_00_00_00.000000001/db.json
//	..data -> ..2026_01_01_00_00_00.000000001
//	db.json -> ..data/db.json
//
// An update writes a new timestamped directory, points a temporary symlink
// at it, renames that symlink over ..data (atomic) and removes the old
// directory.
type k8sVolume struct {
	t       *testing.T
	dir     string
	current string // name of the timestamped directory ..data points to
	serial  int
}

func newK8sVolume(t *testing.T, contents string) *k8sVolume {
	t.Helper()
	v := &k8sVolume{t: t, dir: t.TempDir()}
	v.writeVersion(contents)
	if err := os.Symlink(v.current, filepath.Join(v.dir, "..data")); err != nil {
		t.Skipf("cannot create symlinks: %v", err)
	}
	if err := os.Symlink(filepath.Join("..data", "db.json"), filepath.Join(v.dir, "db.json")); err != nil {
		t.Fatal(err)
	}
	return v
}

func (v *k8sVolume) path() string { return filepath.Join(v.dir, "db.json") }

func (v *k8sVolume) writeVersion(contents string) {
	v.serial++
	v.current = fmt.Sprintf("..2026_01_01_00_00_00.%09d", v.serial)
	if err := os.Mkdir(filepath.Join(v.dir, v.current), 0o755); err != nil {
		v.t.Error(err)
		return
	}
	if err := os.WriteFile(filepath.Join(v.dir, v.current, "db.json"), []byte(contents), 0o644); err != nil {
		v.t.Error(err)
	}
}

// update swaps the volume to contents the way the kubelet does.
func (v *k8sVolume) update(contents string) {
	old := v.current
	v.writeVersion(contents)
	tmpLink := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(v.current, tmpLink); err != nil {
		v.t.Error(err)
		return
	}
	if err := os.Rename(tmpLink, filepath.Join(v.dir, "..data")); err != nil {
		v.t.Error(err)
		return
	}
	if err := os.RemoveAll(filepath.Join(v.dir, old)); err != nil {
		v.t.Error(err)
	}
}

func TestFileKubernetesSymlinkSwap(t *testing.T) {
	vol := newK8sVolume(t, `{"username":"app","password":"first-password"}`)
	src := File(vol.path())
	if got := fetchPassword(t, src); got != "first-password" {
		t.Fatalf("first fetch: password %q", got)
	}

	vol.update(`{"username":"app","password":"second-password"}`)
	if got := fetchPassword(t, src); got != "second-password" {
		t.Fatalf("after the ..data swap: password %q, want the new one", got)
	}
}

// TestFileKubernetesSwapConcurrent fetches while the volume is being
// swapped: every fetch must succeed and see one complete version.
func TestFileKubernetesSwapConcurrent(t *testing.T) {
	vol := newK8sVolume(t, `{"password":"password-1"}`)
	src := File(vol.path())
	const updates = 200

	var wg sync.WaitGroup
	done := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				c, err := src.Fetch(context.Background())
				if err != nil {
					t.Errorf("Fetch during swaps: %v", err)
					return
				}
				if !strings.HasPrefix(c.Password, "password-") {
					t.Errorf("Fetch during swaps: password %q", c.Password)
					return
				}
			}
		})
	}
	for i := 2; i <= updates; i++ {
		vol.update(fmt.Sprintf(`{"password":"password-%d"}`, i))
	}
	close(done)
	wg.Wait()
	if got, want := fetchPassword(t, src), fmt.Sprintf("password-%d", updates); got != want {
		t.Errorf("after the swaps: password %q, want %q", got, want)
	}
}
