//go:build unix

package secrets

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestFileNamedPipe checks that a named pipe is refused rather than opened:
// opening one blocks until a writer appears, and no context can interrupt
// that.
func TestFileNamedPipe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db.json")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("cannot create a named pipe: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	result := make(chan error, 1)
	go func() {
		_, err := File(path).Fetch(ctx)
		result <- err
	}()
	select {
	case err := <-result:
		if want := "file " + path + ": is a named pipe, want a regular file"; err == nil || err.Error() != want {
			t.Errorf("error %q, want %q", err, want)
		}
	case <-ctx.Done():
		t.Fatal("Fetch blocked on a named pipe")
	}
}
