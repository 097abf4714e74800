package recipes_test

import (
	"context"
	"strings"
)

// The migrations of the goose and golang-migrate recipes, in
// migrations/goose and migrations/migrate (tests run in the package's
// directory, so the recipes' relative paths work as they are): the same
// four steps in each tool's file format: create table accounts, add a
// column, add a unique index, insert three rows.
const migrationSteps = 4

// checkAccounts checks, through the superuser's pool, that all four
// migrations took effect in the role's schema.
func (r *rig) checkAccounts(ctx context.Context) {
	r.t.Helper()
	var rows int
	var indexDef string
	err := r.srv.Admin().QueryRowContext(ctx,
		"SELECT (SELECT count(*) FROM "+r.qualified("accounts")+" WHERE email LIKE '%@example.com'), "+
			"(SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = 'accounts_email')", r.role).
		Scan(&rows, &indexDef)
	if err != nil {
		r.t.Fatalf("read the migrated schema: %v", err)
	}
	if rows != 3 || !strings.HasPrefix(indexDef, "CREATE UNIQUE INDEX") {
		r.t.Errorf("after the migrations: %d seeded accounts and index %q; want 3 and a unique index", rows, indexDef)
	}
}
