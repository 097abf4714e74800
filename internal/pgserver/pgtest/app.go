package pgtest

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/pgrotate/rotating/internal/pgserver"
)

// EndpointDSN is an application's DSN for srv: the endpoint only, with no
// user and no password, which come from the credential source.
func EndpointDSN(srv *pgserver.Server) string {
	return fmt.Sprintf("host=%s port=%d dbname=postgres sslmode=disable", srv.Host, srv.Port)
}

// SecretJSON returns an RDS-format secret (engine, host, port, username,
// password, dbname) for user on srv, with extra's fields added.
func SecretJSON(t testing.TB, srv *pgserver.Server, user, password string, extra map[string]any) string {
	t.Helper()
	m := map[string]any{"engine": "postgres", "host": srv.Host, "port": srv.Port,
		"username": user, "password": password, "dbname": "postgres"}
	maps.Copy(m, extra)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// CreateLoadTable creates a table of the test's own for an insert load
// (testkit.StartInserts) through db, so that it is owned by db's role and
// dropped with it, and returns its name.
func CreateLoadTable(ctx context.Context, t testing.TB, db *sql.DB) string {
	t.Helper()
	table := UniqueName(t, "t")
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+table+" (id bigserial PRIMARY KEY, worker int NOT NULL, seq int NOT NULL)"); err != nil {
		t.Fatalf("create table: %v", err)
	}
	return table
}

// DropRoleIfExists drops role on srv (with what it owns) unless it is gone
// already, failing t (not fatally: it is for cleanups) if it cannot.
func DropRoleIfExists(t testing.TB, srv *pgserver.Server, role string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var exists bool
	if err := srv.Admin().QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role).Scan(&exists); err != nil {
		t.Errorf("look up role %s: %v", role, err)
		return
	}
	if exists {
		if err := srv.DropRole(ctx, role); err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	}
}
