package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
	"github.com/pgrotate/rotating/secrets/vault/vaulttest"
)

// demoRun runs "pgrotate demo args..." on the shared PostgreSQL server and
// a local endpoint of the test's own, and checks what every run must show:
// exit 0, no failed statement, no missing row, every rotation done, and no
// secret value in the output.
func demoRun(t *testing.T, args ...string) (*Report, result) {
	t.Helper()
	if testing.Short() {
		t.Skip("the demo runs for several seconds")
	}
	pg := pgtest.Shared(t)
	sm := awssmtest.NewServer().Start()
	t.Cleanup(sm.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	r := runCmd(t, ctx, append([]string{"demo"}, args...), &stdio{demo: &demoHooks{pg: pg, sm: sm}})
	rep := r.report
	if rep == nil {
		t.Fatalf("no report; exit %d\n%s", r.code, r.err)
	}
	if r.code != exitOK {
		t.Errorf("exit %d, want 0", r.code)
	}
	rot := rep.Rotating
	if rot.Failed != 0 || rot.RowsMissing != 0 || rot.VerifyError != "" {
		t.Errorf("rotating: %d failed statements, %d missing rows, verify error %q; errors %v",
			rot.Failed, rot.RowsMissing, rot.VerifyError, rot.Errors)
	}
	if rot.OK == 0 || rot.RowsAcked != rot.OK || rot.RowsFound != rot.RowsAcked {
		t.Errorf("rotating: %d ok, %d acknowledged, %d found: want them equal and not zero", rot.OK, rot.RowsAcked, rot.RowsFound)
	}
	if len(rep.Rotations) != rep.PlannedRotations {
		t.Errorf("%d rotations ran, %d planned", len(rep.Rotations), rep.PlannedRotations)
	}
	for _, x := range rep.Rotations {
		if x.Err != "" {
			t.Errorf("rotation %d (%s): %s", x.N, x.Kind, x.Err)
		}
		if x.Window() < 900*time.Millisecond {
			t.Errorf("rotation %d (%s): window %v, want it held about 1s", x.N, x.Kind, x.Window())
		}
	}
	if rot.Logins.Failed != 0 {
		t.Errorf("%d logins failed", rot.Logins.Failed)
	}
	checkRejectedCounts(t, rep)
	for _, want := range []string{"rejected  server log", "the application's logins rejected per rotation"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if !rep.Passed() || !strings.Contains(r.out, "PASS") {
		t.Error("report does not say PASS")
	}
	// The secret's passwords and the master (superuser) password must not
	// appear anywhere.
	values := append(secretValues(t, sm, rep.SecretID), superPassword(t, pg))
	assertNoSecret(t, "the demo's output", r.out+r.err, values...)
	if t.Failed() {
		t.Logf("PostgreSQL log:\n%s", pg.ServerLog())
	}
	return rep, r
}

// checkRejectedCounts checks that the two counts of rejected logins agree:
// the server log's lines for the rotating approach's role, less those of
// the rotation function, equal the connector's Stats().AuthFailures, in
// every rotation; and that nothing was rejected before the first rotation.
// Every AWS rotation's setSecret tries AWSPENDING first, which the server
// refuses once: that proves the log is read at all.
func checkRejectedCounts(t *testing.T, rep *Report) {
	t.Helper()
	if rep.StartupRejected != 0 {
		t.Errorf("before the first rotation: %d rejected logins, want 0", rep.StartupRejected)
	}
	if rep.ServerLogNote != "" {
		t.Logf("server log not read (%s): only Stats().AuthFailures is checked", rep.ServerLogNote)
		return
	}
	if rep.StartupLogged != 0 {
		t.Errorf("before the first rotation: %d refusals in the server log, want 0", rep.StartupLogged)
	}
	for _, x := range rep.Rotations {
		wantRotationFn := int64(1)
		if x.Kind == kindRunbook {
			wantRotationFn = 0 // the runbook logs in as the superuser only
		}
		if x.RotationRefused != wantRotationFn {
			t.Errorf("rotation %d (%s): the rotation function had %d logins refused, want %d (its AWSPENDING attempt)",
				x.N, x.Kind, x.RotationRefused, wantRotationFn)
		}
		if x.Logged < x.RotationRefused || x.AppLogged() != int64(x.Rejected) {
			t.Errorf("rotation %d (%s): server log has %d refusals, %d of them the rotation function's; the connector counted %d",
				x.N, x.Kind, x.Logged, x.RotationRefused, x.Rejected)
		}
	}
}

func TestDemoSingleUser(t *testing.T) {
	rep, out := demoRun(t, "-duration", "6s", "-rotations", "2", "-workers", "8", "-recycle", "500ms")
	if got := len(rep.Rotations); got != 3 {
		t.Fatalf("%d rotations, want 2 AWS and 1 runbook", got)
	}
	st := rep.Rotating.Stats
	// Every rotation changes the login the application uses.
	if st.CredentialChanges != 3 {
		t.Errorf("CredentialChanges = %d, want 3", st.CredentialChanges)
	}
	// In the single-user window the application finds AWSPENDING; a
	// handful of calls per rotation, not one per login.
	if rep.Rotating.Fetches.Pending == 0 {
		t.Error("no AWSPENDING fetch: the single-user window was not met")
	}
	logins := int64(rep.Rotating.Logins.Ordinary.N + rep.Rotating.Logins.MetRotation.N)
	if f := rep.Rotating.Fetches.Total(); f > 20 || f*3 > logins {
		t.Errorf("%d GetSecretValue calls for %d logins: want a few per rotation", f, logins)
	}
	if rep.Rotating.Logins.MetRotation.N == 0 {
		t.Error("no login met a rotation: connections were not recycled")
	}
	if e := rep.Endpoint; e == nil || e.GetSecretValue != e.Applications+e.Operator {
		t.Errorf("endpoint counted %+v: GetSecretValue should be the applications' plus the operator's", e)
	}
	if len(rep.Rotating.PerSecond) != rep.Seconds {
		t.Errorf("%d seconds in the timeline, %d run", len(rep.Rotating.PerSecond), rep.Seconds)
	}
	// Rejected logins (issue 8): the default demo's 8 workers and 1 s
	// windows, logging in anew 4 times as often (more logins meet each
	// window). In the runbook's window no credential logs in; the first
	// login to meet the new password is rejected, then the connector
	// re-checks once per backoff step for every waiting login: at most 6.
	// In an AWS rotation, at most each worker dialing at that moment.
	// None would mean the count is broken: the database changes before
	// the store in both.
	for _, x := range rep.Rotations {
		n, most := x.RejectedLogins(), int64(8)
		if x.Kind == kindRunbook {
			most = 6
		}
		if n < 1 || n > most {
			t.Errorf("rotation %d (%s): %d rejected logins, want 1 to %d", x.N, x.Kind, n, most)
		}
	}
	if !strings.Contains(out.out, "at most 1 per worker (8 workers) in each: holds") {
		t.Error("the report does not check the AWS rotations' rejected logins against the workers")
	}

	// The AWS rotations cost no throughput: every second up to the
	// runbook acknowledged statements.
	for i, s := range rep.Rotating.PerSecond[:int(rep.Rotations[2].Start/time.Second)] {
		if s.OK == 0 {
			t.Errorf("second %d: no statement acknowledged", i)
		}
	}
}

func TestDemoAlternating(t *testing.T) {
	rep, _ := demoRun(t, "-duration", "6s", "-rotations", "2", "-workers", "8", "-recycle", "500ms", "-strategy", "alternating")
	if rep.Strategy != "alternating-users" {
		t.Errorf("Strategy = %q", rep.Strategy)
	}
	// AWSCURRENT always works with alternating users: the cached login
	// survives the first rotation, and AWSPENDING is never needed.
	if got := rep.Rotations[0].Fetches.Total(); got != 0 {
		t.Errorf("rotation 1: %d GetSecretValue calls, want 0 (the cached user still works)", got)
	}
	if got := rep.Rotating.Fetches.Pending; got != 0 {
		t.Errorf("%d AWSPENDING fetches, want 0", got)
	}
	// The first rotation leaves the cached user working; the second
	// changes its password, and the runbook then changes that of the user
	// the second made current, not the one the connector moved to.
	for i, want := range [][2]int64{{0, 0}, {1, 8}, {0, 6}} {
		if n := rep.Rotations[i].RejectedLogins(); n < want[0] || n > want[1] {
			t.Errorf("rotation %d (%s): %d rejected logins, want %d to %d", i+1, rep.Rotations[i].Kind, n, want[0], want[1])
		}
	}
}

func TestDemoCompare(t *testing.T) {
	rep, r := demoRun(t, "-duration", "6s", "-rotations", "1", "-workers", "4", "-recycle", "500ms", "-compare")
	if len(rep.Naive) != 3 {
		t.Fatalf("%d naive approaches, want 3", len(rep.Naive))
	}
	byKey := map[string]ApproachResult{}
	for _, a := range rep.Naive {
		byKey[a.Key] = a
		if a.RowsMissing != 0 {
			t.Errorf("%s: %d acknowledged rows missing", a.Key, a.RowsMissing)
		}
	}
	if s := byKey[keyStatic]; s.Failed == 0 || s.Fetches.Total() != 1 {
		t.Errorf("static DSN: %d failed, %d GetSecretValue; want failures after the first rotation and 1 call", s.Failed, s.Fetches.Total())
	}
	if p := byKey[keyPerLogin]; p.Fetches.Total() < 3*rep.Rotating.Fetches.Total() {
		t.Errorf("per-login fetching: %d GetSecretValue calls, rotating %d: want many more", p.Fetches.Total(), rep.Rotating.Fetches.Total())
	}
	if byKey[keyRebuild].Fetches.Total() < 2 {
		t.Errorf("pool rebuild: %d GetSecretValue calls; it must have refetched", byKey[keyRebuild].Fetches.Total())
	}
	for _, want := range []string{"static DSN", "secret fetched per login", "pool rebuilt on auth error", "throughput"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("comparison lacks %q", want)
		}
	}
}

// TestDemoCommand runs the demo exactly as "go run ./cmd/pgrotate demo"
// does: it starts and removes its own PostgreSQL server and endpoint.
func TestDemoCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	pgtest.Shared(t) // skips (or fails under CI) without PostgreSQL
	r := runCmd(t, t.Context(), []string{"demo", "-duration", "3s", "-rotations", "1", "-workers", "4", "-recycle", "500ms"}, nil)
	if r.code != exitOK || r.report == nil || !r.report.Passed() {
		t.Fatalf("exit %d, want 0 with a passing report", r.code)
	}
	for _, want := range []string{"statements", "rows", "logins", "rotations", "timeline", "PASS"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if !strings.Contains(r.err, "stopping PostgreSQL and removing its directory") {
		t.Error("the server was not stopped")
	}
}

// TestDemoInterrupted cancels the run, as Ctrl-C does: exit 130, a report of
// what ran, and nothing left running.
func TestDemoInterrupted(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo")
	}
	pg := pgtest.Shared(t)
	sm := awssmtest.NewServer().Start()
	t.Cleanup(sm.Close)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// Ctrl-C a second into the workload.
	var out, errw syncBuffer
	go func() {
		for !strings.Contains(errw.String(), "running the workload") {
			if testkit.Sleep(ctx, 10*time.Millisecond) != nil {
				return
			}
		}
		_ = testkit.Sleep(ctx, time.Second)
		cancel()
	}()
	std := &stdio{out: &out, err: &errw, demo: &demoHooks{pg: pg, sm: sm}}
	var r result
	std.report = func(rep *Report) { r.report = rep }
	r.code = run(ctx, []string{"demo", "-duration", "20s", "-rotations", "3"}, std)
	r.out, r.err = out.String(), errw.String()
	t.Logf("exit %d\n%s%s", r.code, r.out, r.err)
	if r.code != exitInterrupted {
		t.Errorf("exit %d, want %d", r.code, exitInterrupted)
	}
	if r.report == nil || !r.report.Interrupted || r.report.Rotating.RowsMissing != 0 {
		t.Fatalf("report %+v: want an interrupted run with no missing row", r.report)
	}
	if !strings.Contains(r.out, "INTERRUPTED") {
		t.Error("report does not say INTERRUPTED")
	}
	// The demo's roles are gone from the shared server.
	var n int
	if err := pg.Admin().QueryRowContext(t.Context(), "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'demo\\_%\\_"+
		strings.TrimPrefix(r.report.SecretID, "pgrotate-demo-")[:6]+"%'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d demo roles left on the server", n)
	}
}

// TestDemoExternal runs the workload against "your" server and secret:
// the shared server and a local endpoint reached through the standard AWS
// configuration, as -dsn and -secret-id do with real ones.
func TestDemoExternal(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo")
	}
	pg := pgtest.Shared(t)
	sm := startSM(t)
	role, password := pgtest.NewRole(t, pg)
	if err := pg.Exec(t.Context(), "GRANT CREATE ON SCHEMA public TO "+role); err != nil {
		t.Fatal(err)
	}
	sm.CreateSecret("ext/app", `{"username":"`+role+`","password":"`+password+`"}`)
	r := runCmd(t, t.Context(), []string{"demo", "-dsn", baseDSN(pg), "-secret-id", "ext/app", "-duration", "3s", "-workers", "4", "-rotations", "5"}, nil)
	if r.code != exitOK {
		t.Fatalf("exit %d, want 0", r.code)
	}
	rep := r.report
	if rep.Mode != "external" || len(rep.Rotations) != 0 || rep.Rotating.Failed != 0 || rep.Rotating.RowsMissing != 0 || rep.Rotating.OK == 0 {
		t.Errorf("report: mode %q, %d rotations, %d ok, %d failed, %d missing", rep.Mode, len(rep.Rotations), rep.Rotating.OK, rep.Rotating.Failed, rep.Rotating.RowsMissing)
	}
	// The server log of "your" server is not the demo's to read: the
	// connector's count only, and the report says so.
	if !strings.Contains(r.out, "logins rejected, as the connector counted them") || !strings.Contains(r.out, "not checked against the server log") {
		t.Error("the report does not give the connector's rejected logins and say that the server log was not read")
	}
	if !strings.Contains(r.err, "ignored with -dsn/-secret-id") || !strings.Contains(r.err, "rotates nothing") {
		t.Error("the demo does not say that it rotates nothing and ignores -rotations")
	}
	var n int
	if err := pg.Admin().QueryRowContext(t.Context(), "SELECT count(*) FROM pg_tables WHERE tableowner = $1", role).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d tables of the demo left behind", n)
	}
	assertNoSecret(t, "the demo's output", r.out+r.err, password)

	// A secret that does not exist: a source problem.
	r = runCmd(t, t.Context(), []string{"demo", "-dsn", baseDSN(pg), "-secret-id", "ext/none", "-duration", "2s"}, nil)
	if r.code != exitSource || !strings.Contains(r.err, "secret not found") {
		t.Errorf("missing secret: exit %d, want %d with 'secret not found'", r.code, exitSource)
	}
}

// TestDemoPGX runs the demo through pgx v5 (-driver pgx), the naive
// approaches too: the same guarantees as through lib/pq, the single-user
// window bridged with AWSPENDING, the server log agreeing with the
// connector's count (demoRun), and the naive approaches failing the same
// way over pgx. One run covers both, to keep the package's run time down.
func TestDemoPGX(t *testing.T) {
	rep, r := demoRun(t, "-driver", "pgx", "-duration", "5s", "-rotations", "1", "-workers", "4", "-recycle", "500ms", "-compare")
	if rep.Driver != string(driverPGX) || !strings.Contains(r.out, "driver      pgx v5 (github.com/jackc/pgx/v5/stdlib)") {
		t.Errorf("report names driver %q, want pgx", rep.Driver)
	}
	if !strings.Contains(r.out, "a wrapper around the pgxv5 driver's connectors") {
		t.Error("the report does not say how pgx logins are counted")
	}
	if rep.Rotating.Fetches.Pending == 0 {
		t.Error("no AWSPENDING fetch: the single-user window was not met")
	}
	if rep.Rotating.Logins.MetRotation.N == 0 {
		t.Error("no login met a rotation: pgx's login attempts were not counted")
	}
	if st := rep.Rotating.Stats; st.CredentialChanges != 2 {
		t.Errorf("CredentialChanges = %d, want 2 (an AWS rotation and the runbook)", st.CredentialChanges)
	}
	for _, x := range rep.Rotations {
		n, most := x.RejectedLogins(), int64(4)
		if x.Kind == kindRunbook {
			most = 6
		}
		if n < 1 || n > most {
			t.Errorf("rotation %d (%s): %d rejected logins, want 1 to %d", x.N, x.Kind, n, most)
		}
	}
	byKey := map[string]ApproachResult{}
	for _, a := range rep.Naive {
		byKey[a.Key] = a
		if a.RowsMissing != 0 {
			t.Errorf("%s: %d acknowledged rows missing", a.Key, a.RowsMissing)
		}
	}
	// A static DSN fails after the first rotation, with pgx's error
	// ("failed to connect to `user=...`: ... password authentication
	// failed"): the naive approaches log in through pgx as well.
	static := byKey[keyStatic]
	if static.Failed == 0 || len(static.Errors) == 0 || !strings.HasPrefix(static.Errors[0].Error, "failed to connect to `user=") ||
		!strings.Contains(static.Errors[0].Error, "password authentication failed") {
		t.Errorf("static DSN over pgx: %d failed, errors %v; want pgx's rejected login", static.Failed, static.Errors)
	}
	if byKey[keyPerLogin].OK == 0 || byKey[keyRebuild].Fetches.Total() < 2 {
		t.Errorf("per-login %d ok, rebuild %d GetSecretValue calls: want both to have run and the rebuild to have refetched",
			byKey[keyPerLogin].OK, byKey[keyRebuild].Fetches.Total())
	}
}

// vaultSecrets matches the passwords and tokens the Vault-compatible server
// makes: none may appear in the demo's output.
var vaultSecrets = regexp.MustCompile(`A1a-[A-Za-z0-9]{16}|hvs\.[A-Za-z0-9]{24}`)

// vaultDemoRun runs "pgrotate demo -store vault args..." on the shared
// PostgreSQL server (the demo starts its own Vault-compatible server on
// it) and checks what every run must show: exit 0, no failed statement or
// login, no missing row, every rotation done, no password or token in the
// output, and nothing left behind on the server.
func vaultDemoRun(t *testing.T, args ...string) (*Report, result) {
	t.Helper()
	if testing.Short() {
		t.Skip("the demo runs for several seconds")
	}
	pg := pgtest.Shared(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	r := runCmd(t, ctx, append([]string{"demo", "-store", "vault"}, args...), &stdio{demo: &demoHooks{pg: pg}})
	rep := r.report
	if rep == nil || rep.Vault == nil {
		t.Fatalf("no Vault report; exit %d\n%s", r.code, r.err)
	}
	if r.code != exitOK {
		t.Errorf("exit %d, want 0", r.code)
	}
	rot := rep.Rotating
	if rot.Failed != 0 || rot.RowsMissing != 0 || rot.VerifyError != "" {
		t.Errorf("%d failed statements, %d missing rows, verify error %q; errors %v", rot.Failed, rot.RowsMissing, rot.VerifyError, rot.Errors)
	}
	if rot.OK == 0 || rot.RowsAcked != rot.OK || rot.RowsFound != rot.RowsAcked {
		t.Errorf("%d ok, %d acknowledged, %d found: want them equal and not zero", rot.OK, rot.RowsAcked, rot.RowsFound)
	}
	if rot.Logins.Failed != 0 {
		t.Errorf("%d logins failed", rot.Logins.Failed)
	}
	if len(rep.Rotations) != rep.PlannedRotations {
		t.Errorf("%d rotations ran, %d planned", len(rep.Rotations), rep.PlannedRotations)
	}
	for _, x := range rep.Rotations {
		if x.Err != "" {
			t.Errorf("rotation %d (%s): %s", x.N, x.Kind, x.Err)
		}
	}
	// One lookup-self for the token's TTL; its hour outlasts the run.
	if got := rep.Vault.Calls.Token; got != 1 {
		t.Errorf("%d token calls, want 1 (lookup-self)", got)
	}
	if rep.StartupRejected != 0 {
		t.Errorf("%d logins rejected before the first rotation, want 0", rep.StartupRejected)
	}
	if !rep.Passed() || !strings.Contains(r.out, "PASS") {
		t.Error("report does not say PASS")
	}
	if s := vaultSecrets.FindString(r.out + r.err); s != "" {
		t.Errorf("the demo's output holds a password or token of the Vault server (%d characters)", len(s))
	}
	assertNoSecret(t, "the demo's output", r.out+r.err, superPassword(t, pg))

	// Everything the demo made on the shared server is gone: the table,
	// the static role's user, every lease's user.
	suffix := rep.Vault.Name[2:]
	var roles, tables int
	if err := pg.Admin().QueryRowContext(t.Context(), "SELECT count(*) FROM pg_roles WHERE rolname = $1 OR rolname LIKE $2",
		"demo_static_"+suffix, "v-token-"+rep.Vault.Name+"-%").Scan(&roles); err != nil {
		t.Fatal(err)
	}
	if err := pg.Admin().QueryRowContext(t.Context(), "SELECT count(*) FROM pg_tables WHERE tablename = $1",
		"demo_vault_"+suffix+"_rows").Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if roles != 0 || tables != 0 {
		t.Errorf("%d roles and %d tables of the demo left on the server", roles, tables)
	}
	if t.Failed() {
		t.Logf("PostgreSQL log:\n%s", pg.ServerLog())
	}
	return rep, r
}

// TestDemoVaultStatic runs the demo over a static role with a 3 s
// rotation_period and two rotations on demand, each half a period after a
// scheduled one: every rotation costs one Vault read for the whole
// process (the scheduled one read at the time the answer's ttl gave, the
// one on demand after the first rejected login), and at most one rejected
// login per worker, as the server log and the connector both count them.
func TestDemoVaultStatic(t *testing.T) {
	rep, r := vaultDemoRun(t, "-role", "static", "-duration", "8s", "-rotations", "2", "-rotation-period", "3s",
		"-workers", "8", "-recycle", "500ms")
	v := rep.Vault
	if v.Role != roleStatic || v.RotateRole != 2 || v.OnDemand != 2 {
		t.Errorf("role %q, %d rotate-role calls, %d on demand planned: want static, 2, 2", v.Role, v.RotateRole, v.OnDemand)
	}
	kinds := []string{kindScheduled, kindRotateRole, kindScheduled, kindRotateRole}
	if len(rep.Rotations) != len(kinds) {
		t.Fatalf("%d rotations, want %d", len(rep.Rotations), len(kinds))
	}
	if rep.StartupVault.Reads != 1 {
		t.Errorf("%d reads before the first rotation, want 1", rep.StartupVault.Reads)
	}
	for i, x := range rep.Rotations {
		if x.Kind != kinds[i] {
			t.Errorf("rotation %d: kind %q, want %q", x.N, x.Kind, kinds[i])
		}
		// A scheduled rotation may be read once more if the first read
		// came before the server's timer ran it.
		most := int64(1)
		if x.Kind == kindScheduled {
			most = 2
		}
		if x.Vault.Reads < 1 || x.Vault.Reads > most {
			t.Errorf("rotation %d (%s): %d Vault reads, want 1 to %d", x.N, x.Kind, x.Vault.Reads, most)
		}
		// On demand, the connector learns of the rotation from the first
		// rejected login; on schedule it may read first. Either way at
		// most the workers dialing then.
		least := int64(0)
		if x.Kind == kindRotateRole {
			least = 1
		}
		if n := x.RejectedLogins(); n < least || n > 8 {
			t.Errorf("rotation %d (%s): %d rejected logins, want %d to 8", x.N, x.Kind, n, least)
		}
		if rep.ServerLogNote == "" && x.Logged != int64(x.Rejected) {
			t.Errorf("rotation %d (%s): the server log has %d refusals, the connector counted %d", x.N, x.Kind, x.Logged, x.Rejected)
		}
		if x.Vault.Renewals != 0 {
			t.Errorf("rotation %d: %d lease renewals for a static role", x.N, x.Vault.Renewals)
		}
	}
	if st := rep.Rotating.Stats; st.CredentialChanges != 4 || st.PendingFetches != 0 {
		t.Errorf("CredentialChanges = %d, PendingFetches = %d; want 4 and 0", st.CredentialChanges, st.PendingFetches)
	}
	// The rotations cost no throughput.
	for i, s := range rep.Rotating.PerSecond {
		if s.OK == 0 {
			t.Errorf("second %d: no statement acknowledged", i)
		}
	}
	for _, want := range []string{"vault.StaticRole (database/static-creds/" + v.Name, "2 on demand (POST database/rotate-role/" + v.Name,
		"at most 1 per worker (8 workers) in each: holds", "▲2 rotate-role", "2 of them the operator's rotate-role"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

// TestDemoVaultDynamic runs the demo over a dynamic role with leases of
// 3 s renewable to 6 s, through both drivers: each lease is read once and
// renewed about twice, its connections are retired before it ends (none
// alive at its revocation), the next lease is read ahead, and no login is
// rejected.
func TestDemoVaultDynamic(t *testing.T) {
	for _, drv := range []driverName{driverPQ, driverPGX} {
		t.Run(string(drv), func(t *testing.T) {
			rep, r := vaultDemoRun(t, "-role", "dynamic", "-driver", string(drv), "-duration", "12s", "-ttl", "3s", "-max-ttl", "6s",
				"-workers", "8", "-recycle", "500ms")
			v := rep.Vault
			if v.SessionMargin != 750*time.Millisecond || v.RefreshLead != 375*time.Millisecond {
				t.Errorf("margins %v and %v, want 750ms and 375ms", v.SessionMargin, v.RefreshLead)
			}
			// A lease is replaced about 4.8 s after it is read (1.2 s
			// before max_ttl): leases end at about 6 and 10.8 s.
			if n := v.LeasesEnded(); n < 2 || n > 3 {
				t.Errorf("%d leases ended in 12s, want 2 or 3", n)
			}
			if n := len(v.Leases); n < 3 || n > 4 || v.Calls.Reads != int64(n) {
				t.Errorf("%d leases, %d reads: want 3 or 4, one read each", n, v.Calls.Reads)
			}
			for _, l := range v.Leases {
				if !l.EndedInRun() {
					continue
				}
				if l.EndReason != string(vaulttest.EndExpired) || l.SessionsAtEnd != 0 || l.RevokeError != "" {
					t.Errorf("lease %d: ended %q with %d sessions open, revocation error %q; want expired with none",
						l.N, l.EndReason, l.SessionsAtEnd, l.RevokeError)
				}
				if l.Renewals < 1 || l.Renewals > 4 {
					t.Errorf("lease %d: %d renewals, want 1 to 4 (about 2)", l.N, l.Renewals)
				}
			}
			if v.SessionsPastEnd() != 0 || v.RejectedLogins() != 0 || v.Rejected != 0 {
				t.Errorf("%d sessions past a lease end, %d rejected logins (connector: %d); want 0", v.SessionsPastEnd(), v.RejectedLogins(), v.Rejected)
			}
			st := rep.Rotating.Stats
			if st.CredentialChanges < 2 || st.PendingFetches != 0 || st.RetiredConnections == 0 {
				t.Errorf("CredentialChanges %d, PendingFetches %d, RetiredConnections %d: want 2 or more, 0, and some",
					st.CredentialChanges, st.PendingFetches, st.RetiredConnections)
			}
			if rep.Driver != string(drv) {
				t.Errorf("report names driver %q", rep.Driver)
			}
			for _, want := range []string{"vault.DynamicRole (database/creds/" + v.Name, "WithSessionMargin(750ms)",
				"WithRefreshBeforeExpiry(375ms)", "0 sessions alive past a lease end", "✕1", "no session outlived its lease"} {
				if !strings.Contains(r.out, want) {
					t.Errorf("report lacks %q", want)
				}
			}
		})
	}
}
