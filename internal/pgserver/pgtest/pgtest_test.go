package pgtest_test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestShared(t *testing.T) {
	a, b := pgtest.Shared(t), pgtest.Shared(t)
	if a != b {
		t.Fatal("Shared returned two servers")
	}
	role := pgtest.UniqueName(t, "shared")
	if err := a.CreateRole(context.Background(), role, "pw"); err != nil {
		t.Fatal(err)
	}
	if err := a.DropRole(context.Background(), role); err != nil {
		t.Fatal(err)
	}
}

func TestUniqueName(t *testing.T) {
	safe := regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)
	seen := map[string]bool{}
	for _, prefix := range []string{"", "Role", "9lives", "x-y z/ÄÖ", strings.Repeat("long", 30)} {
		for range 50 {
			n := pgtest.UniqueName(t, prefix)
			if !safe.MatchString(n) || seen[n] {
				t.Fatalf("UniqueName(%q) = %q: unsafe or repeated", prefix, n)
			}
			seen[n] = true
		}
	}
}
