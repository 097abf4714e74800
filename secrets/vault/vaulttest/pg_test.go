package vaulttest

import (
	"slices"
	"strings"
	"testing"
	"time"
)

var splitCases = []struct {
	in   string
	want []string
}{
	{`CREATE ROLE "a" WITH LOGIN PASSWORD 'p'; GRANT SELECT ON t TO "a";`, []string{`CREATE ROLE "a" WITH LOGIN PASSWORD 'p'`, `GRANT SELECT ON t TO "a"`}},
	{`SELECT 'a;b'; SELECT "x;y"`, []string{`SELECT 'a;b'`, `SELECT "x;y"`}},
	{`SELECT 'it''s; fine'`, []string{`SELECT 'it''s; fine'`}},
	{"SELECT 1; -- a comment; with a semicolon\nSELECT 2", []string{"SELECT 1", "-- a comment; with a semicolon\nSELECT 2"}},
	{`SELECT 1 /* ; */; SELECT 2`, []string{`SELECT 1 /* ; */`, `SELECT 2`}},
	{`DO $$ BEGIN PERFORM 1; END $$; SELECT $1`, []string{`DO $$ BEGIN PERFORM 1; END $$`, `SELECT $1`}},
	{`DO $fn$ BEGIN; END $fn$`, []string{`DO $fn$ BEGIN; END $fn$`}},
	{` ; ;; `, nil},
	{`SELECT 'unterminated; still one`, []string{`SELECT 'unterminated; still one`}},
}

func TestSplitStatements(t *testing.T) {
	for _, tc := range splitCases {
		if got := splitStatements(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("splitStatements(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// splitStatements never panics, loses no non-space text but the
// separating semicolons, and each piece splits into itself.
func FuzzSplitStatements(f *testing.F) {
	for _, tc := range splitCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		parts := splitStatements(in)
		// The parts appear in order in the input, and only semicolons and
		// spaces lie between them.
		onlySeparators := func(s string) bool { return strings.TrimSpace(strings.ReplaceAll(s, ";", "")) == "" }
		rest := in
		for _, p := range parts {
			// The last start that only separators precede: a part
			// never begins with a space or a semicolon.
			at := -1
			for i := 0; i+len(p) <= len(rest); i++ {
				if strings.HasPrefix(rest[i:], p) && onlySeparators(rest[:i]) {
					at = i
				}
			}
			if at < 0 {
				t.Fatalf("splitStatements(%q) = %q: %q lost or reordered", in, parts, p)
			}
			rest = rest[at+len(p):]
		}
		if !onlySeparators(rest) {
			t.Fatalf("splitStatements(%q) = %q lost %q", in, parts, rest)
		}
		for _, p := range parts {
			if strings.TrimSpace(p) == "" {
				t.Fatalf("empty statement in %q", parts)
			}
		}
	})
}

func TestRender(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 20, 30, 999, time.FixedZone("X", 3600))
	got := render([]string{defaultCreation, `GRANT x TO "{{username}}"`}, "v-a", "pw", at)
	want := []string{`CREATE ROLE "v-a" WITH LOGIN PASSWORD 'pw' VALID UNTIL '2026-12-01 09:20:30+0000'`, `GRANT x TO "v-a"`}
	if !slices.Equal(got, want) {
		t.Errorf("render = %q, want %q", got, want)
	}
}

func TestUsername(t *testing.T) {
	now := time.Unix(1800000000, 0)
	u := newUsername("kubernetes-prod-web", "a-very-long-role-name", now)
	if !strings.HasPrefix(u, "v-kubernet-a-very-l-") || !strings.HasSuffix(u, "-1800000000") || len(u) != len("v-kubernet-a-very-l-")+20+11 {
		t.Errorf("username %q", u)
	}
	long := newUsername(strings.Repeat("d", 40), strings.Repeat("r", 40), now)
	if len(long) > 63 {
		t.Errorf("username of %d bytes, PostgreSQL allows 63", len(long))
	}
}

func TestSecondsParam(t *testing.T) {
	for in, want := range map[any]time.Duration{nil: 0, float64(90): 90 * time.Second, "90": 90 * time.Second, "1h": time.Hour, "1.5s": time.Second, "": 0} {
		if got, err := secondsParam(in); err != nil || got != want {
			t.Errorf("secondsParam(%v) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []any{float64(-1), 1.5, "soon", "-1h", true} {
		if _, err := secondsParam(in); err == nil {
			t.Errorf("secondsParam(%v) accepted", in)
		}
	}
}
