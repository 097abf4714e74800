package vaulttest_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/secrets/vault/vaulttest"
)

// wantKeys fails t unless m has exactly the keys want (sorted).
func wantKeys(t *testing.T, what string, m any, want ...string) {
	t.Helper()
	mm, isMap := m.(map[string]any)
	if !isMap {
		t.Errorf("%s: %T, want a JSON object", what, m)
		return
	}
	got := keys(mm)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s: keys %v, want %v", what, got, want)
	}
}

// envelopeKeys are the keys of every answer of Vault's but sys/health and
// sys/seal-status.
var envelopeKeys = []string{"request_id", "lease_id", "renewable", "lease_duration", "data", "wrap_info", "warnings", "auth", "mount_type"}

func number(t *testing.T, v any) int64 {
	t.Helper()
	n, isNum := v.(json.Number)
	if !isNum {
		t.Errorf("%v (%T), want a number", v, v)
		return -1
	}
	i, err := n.Int64()
	if err != nil {
		t.Errorf("%v: want a whole number", v)
	}
	return i
}

// The JSON of each endpoint, as Vault writes it.
func TestWireShapes(t *testing.T) {
	t.Parallel()
	pg := pgtest.Shared(t)
	user, _ := pgtest.NewRole(t, pg)
	srv, _ := start(t)
	ctx := t.Context()
	if err := srv.SetRole("app", vaulttest.DynamicRole{DefaultTTL: time.Hour, MaxTTL: 2 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := srv.SetStaticRole(ctx, "static", vaulttest.StaticRole{Username: user, RotationPeriod: time.Hour}); err != nil {
		t.Fatal(err)
	}
	roleID, secretID, err := srv.SetAppRole("web", vaulttest.AppRole{TokenTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c := client(t, srv, "")

	st, body := raw(t, c, "GET", "database/creds/app", nil)
	wantKeys(t, "creds", body, envelopeKeys...)
	wantKeys(t, "creds data", body["data"], "username", "password")
	leaseID, _ := body["lease_id"].(string)
	if st != 200 || body["renewable"] != true || number(t, body["lease_duration"]) != 3600 || body["request_id"] == "" || body["auth"] != nil || body["warnings"] != nil {
		t.Errorf("creds: %d %v", st, body)
	}

	st, body = raw(t, c, "PUT", "sys/leases/renew", map[string]any{"lease_id": leaseID, "increment": 60})
	wantKeys(t, "renew", body, envelopeKeys...)
	if st != 200 || body["lease_id"] != leaseID || body["renewable"] != true || number(t, body["lease_duration"]) != 60 {
		t.Errorf("renew: %d %v", st, body)
	}
	// The lease id may also be in the path.
	if st, body = raw(t, c, "PUT", "sys/leases/renew/"+leaseID, nil); st != 200 || number(t, body["lease_duration"]) != 3600 {
		t.Errorf("renew by path: %d %v", st, body)
	}

	st, body = raw(t, c, "PUT", "sys/leases/lookup", map[string]any{"lease_id": leaseID})
	wantKeys(t, "lookup data", body["data"], "id", "issue_time", "expire_time", "last_renewal", "renewable", "ttl")
	if d := body["data"].(map[string]any); st != 200 || d["id"] != leaseID || number(t, d["ttl"]) < 3590 {
		t.Errorf("lookup: %d %v", st, body)
	}
	for _, k := range []string{"issue_time", "expire_time", "last_renewal"} {
		if _, err := time.Parse(time.RFC3339Nano, body["data"].(map[string]any)[k].(string)); err != nil {
			t.Errorf("lookup %s: %v", k, err)
		}
	}

	st, body = raw(t, c, "GET", "database/static-creds/static", nil)
	wantKeys(t, "static-creds data", body["data"], "username", "password", "last_vault_rotation", "rotation_period", "ttl")
	if d := body["data"].(map[string]any); st != 200 || body["lease_id"] != "" || number(t, d["rotation_period"]) != 3600 || number(t, d["ttl"]) < 3590 {
		t.Errorf("static-creds: %d %v", st, body)
	}
	if st, body = raw(t, c, "POST", "database/rotate-role/static", nil); st != 204 || body != nil {
		t.Errorf("rotate-role: %d %v, want 204 without a body", st, body)
	}
	if st, _ = raw(t, c, "PUT", "sys/leases/revoke", map[string]any{"lease_id": leaseID}); st != 204 {
		t.Errorf("revoke: %d, want 204", st)
	}

	st, body = raw(t, c, "GET", "auth/token/lookup-self", nil)
	wantKeys(t, "lookup-self data", body["data"], "accessor", "creation_time", "creation_ttl", "display_name", "entity_id", "expire_time",
		"explicit_max_ttl", "id", "issue_time", "meta", "num_uses", "orphan", "path", "policies", "renewable", "ttl", "type")
	if st != 200 {
		t.Errorf("lookup-self: %d", st)
	}

	authKeys := []string{"client_token", "accessor", "policies", "token_policies", "metadata", "lease_duration", "renewable",
		"entity_id", "token_type", "orphan", "mfa_requirement", "num_uses"}
	st, body = raw(t, c, "POST", "auth/approle/login", map[string]any{"role_id": roleID, "secret_id": secretID})
	wantKeys(t, "login", body, envelopeKeys...)
	wantKeys(t, "login auth", body["auth"], authKeys...)
	a := body["auth"].(map[string]any)
	if st != 200 || number(t, a["lease_duration"]) != 3600 || a["renewable"] != true || body["data"] != nil {
		t.Errorf("login: %d %v", st, body)
	}
	login := client(t, srv, a["client_token"].(string))
	st, body = raw(t, login, "PUT", "auth/token/renew-self", map[string]any{"increment": "30m"})
	wantKeys(t, "renew-self auth", body["auth"], authKeys...)
	if st != 200 || number(t, body["auth"].(map[string]any)["lease_duration"]) != 1800 {
		t.Errorf("renew-self: %d %v", st, body)
	}

	st, body = raw(t, c, "POST", "secret/data/app/db", map[string]any{"data": map[string]any{"password": "x"}})
	wantKeys(t, "kv write data", body["data"], "version", "created_time", "deletion_time", "destroyed", "custom_metadata")
	if st != 200 || number(t, body["data"].(map[string]any)["version"]) != 1 {
		t.Errorf("kv write: %d %v", st, body)
	}
	st, body = raw(t, c, "GET", "secret/data/app/db", nil)
	wantKeys(t, "kv read data", body["data"], "data", "metadata")
	wantKeys(t, "kv read metadata", body["data"].(map[string]any)["metadata"], "version", "created_time", "deletion_time", "destroyed", "custom_metadata")
	if md := body["data"].(map[string]any)["metadata"].(map[string]any); st != 200 || md["deletion_time"] != "" || md["destroyed"] != false {
		t.Errorf("kv read: %d %v", st, body)
	}
	if _, err := time.Parse(time.RFC3339Nano, body["data"].(map[string]any)["metadata"].(map[string]any)["created_time"].(string)); err != nil {
		t.Errorf("created_time: %v", err)
	}
	if st, _ = raw(t, c, "DELETE", "secret/data/app/db", nil); st != 204 {
		t.Errorf("kv delete: %d", st)
	}
	st, body = raw(t, c, "GET", "secret/data/app/db", nil)
	if d := body["data"].(map[string]any); st != 404 || d["data"] != nil || d["metadata"].(map[string]any)["deletion_time"] == "" {
		t.Errorf("kv read of a deleted version: %d %v, want 404 with its metadata", st, body)
	}
	st, body = raw(t, c, "GET", "secret/metadata/app/db", nil)
	wantKeys(t, "kv metadata data", body["data"], "versions", "current_version", "oldest_version", "created_time", "updated_time",
		"max_versions", "cas_required", "delete_version_after", "custom_metadata")
	if st != 200 {
		t.Errorf("kv metadata: %d", st)
	}

	// Errors: {"errors": [...]} with Vault's status codes.
	for _, tc := range []struct {
		method, path string
		status       int
		errs         []string
	}{
		{"GET", "secret/data/absent", 404, []string{}},
		{"GET", "database/creds/absent", 400, []string{"unknown role: absent"}},
		{"GET", "no/such/mount", 404, []string{`no handler for route "no/such/mount". route entry not found.`}},
		{"DELETE", "database/creds/app", 405, []string{"1 error occurred:\n\t* unsupported operation\n\n"}},
		{"PUT", "sys/leases/renew", 400, []string{"lease_id must be specified"}},
	} {
		st, body := raw(t, c, tc.method, tc.path, nil)
		wantKeys(t, tc.path, body, "errors")
		var errs []string
		for _, e := range body["errors"].([]any) {
			errs = append(errs, e.(string))
		}
		if st != tc.status || !slices.Equal(errs, tc.errs) && !(len(errs) == 0 && len(tc.errs) == 0) {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, st, errs, tc.status, tc.errs)
		}
	}
	srv.Seal()
	if st, body = raw(t, c, "GET", "sys/seal-status", nil); st != 200 || body["sealed"] != true {
		t.Errorf("seal-status while sealed: %d %v", st, body)
	}
	if st, body = raw(t, c, "GET", "sys/health", nil); st != http.StatusServiceUnavailable || body["sealed"] != true {
		t.Errorf("sys/health while sealed: %d %v", st, body)
	}
	if st, body = raw(t, c, "GET", "auth/token/lookup-self", nil); st != 503 || body["errors"].([]any)[0] != "Vault is sealed" {
		t.Errorf("a request while sealed: %d %v", st, body)
	}
}
