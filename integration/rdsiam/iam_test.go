package rdsiamintegration

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/internal/testkit/drivers"
)

var standIns = []standIn{passwordStandIn, ldapStandIn}

// TestTokenExpiresAtTheDatabase shows the stand-ins behave as RDS does: a
// token logs in until its (shortened) life ends and is refused after it,
// by PostgreSQL, with 28P01 (password) or 28000 (ldap, RDS's code), while
// a session opened with it lives on.
func TestTokenExpiresAtTheDatabase(t *testing.T) {
	for _, kind := range standIns {
		for _, d := range drivers.All {
			t.Run(kind.String()+"/"+d.Name, func(t *testing.T) { testTokenExpires(t, kind, d) })
		}
	}
}

func testTokenExpires(t *testing.T, kind standIn, d drivers.Driver) {
	const life = 3 * time.Second
	w := newWorld(t, kind, life)
	src := w.source(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	cred, err := src.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	expires := src.built()[0].expires
	session, err := w.control(ctx, t, d, cred.Password)
	if err != nil {
		t.Fatalf("a fresh token is refused: %v", err)
	}
	defer session.Close()
	pinned, err := session.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer pinned.Close()

	if err := testkit.Sleep(ctx, time.Until(expires)+200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	_, err = w.control(ctx, t, d, cred.Password)
	if code := d.SQLState(err); code != kind.refusal() {
		t.Errorf("a login with the expired token: %v (SQLSTATE %q), want %s from %s", err, code, kind.refusal(), d.ErrorType)
	}
	var who string
	if err := pinned.QueryRowContext(ctx, "SELECT current_user").Scan(&who); err != nil || who != w.role {
		t.Errorf("the session opened with the token, after it expired: %q, %v; want it alive", who, err)
	}
	if err != nil {
		w.assertNoSecret(t, "the driver's error", fmt.Sprintf("%v %+v", err, err), src)
	}
}

// TestTokensUnderLoad runs 16 workers inserting rows for 12 s, each
// statement on a new login, with tokens that live 6 s (RDS's 15 minutes,
// scaled down) and the background refresh 2 s ahead of each expiry
// (WithRefreshBeforeExpiry; 1 minute by default, for 15): four tokens or
// so, three successions, each checked on its own (20 s gave seven tokens
// and only repeated the checks, for 32 s more over the four runs). The lead leaves
// a login that starts just before a refresh 2 s to reach the server's
// check, time a TLS login takes on a loaded 2-CPU machine under -race; with
// a 1 s lead, 7 of 1,405 logins were refused there (the token had expired
// when the server checked it) though every token was built in time. No statement
// may fail and no acknowledged row may be lost. With the ldap stand-in
// (every token good until its own expiry, as on RDS) each token must have
// exactly one successor, built before it expired, and no login may be
// refused. The password stand-in also refuses the previous token the
// moment a new one is built (one password per role), so some logins that
// were already under way when the refresh ran are refused; they must cost
// no failed statement, and the test reports the extra builds they cause.
func TestTokensUnderLoad(t *testing.T) {
	for _, kind := range []standIn{ldapStandIn, passwordStandIn} {
		for _, d := range drivers.All {
			t.Run(kind.String()+"/"+d.Name, func(t *testing.T) { testTokensUnderLoad(t, kind, d) })
		}
	}
}

func testTokensUnderLoad(t *testing.T, kind standIn, d drivers.Driver) {
	const (
		workers  = 16
		duration = 12 * time.Second
		life     = 6 * time.Second
		lead     = 2 * time.Second
		pause    = 50 * time.Millisecond
	)
	w := newWorld(t, kind, life)
	src := w.source(t)
	c, db := w.open(t, d, w.dsn(), src, rotating.WithRefreshBeforeExpiry(lead))
	db.SetMaxIdleConns(0) // every statement logs in anew, with the token of the moment
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	table := w.createTable(ctx, t)

	start := time.Now()
	load := testkit.StartInserts(ctx, db, table, workers, 1<<30, pause)
	if err := testkit.Sleep(ctx, duration); err != nil {
		t.Fatal(err)
	}
	load.Finish()
	elapsed := time.Since(start)
	res, err := load.Verify(ctx, w.pg.Admin())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Problems() {
		t.Error(p)
	}

	st := c.Stats()
	builds := src.built()
	// Each token after the first must have been built by the background
	// refresh of its predecessor: before that one expired (late: the
	// refresh ran too late, or not at all), and not more than the refresh's
	// largest lead, 1.5 * lead, before (early: a second build for the same
	// token, asked by a refused login).
	var leads []time.Duration
	late, early := 0, 0
	for i := 1; i < len(builds); i++ {
		ahead := builds[i-1].expires.Sub(builds[i].at)
		leads = append(leads, ahead.Round(10*time.Millisecond))
		switch {
		case ahead <= 0:
			late++
		case ahead > lead*3/2:
			early++
		}
	}
	t.Logf("%s stand-in, %s: %d workers for %v, token life %v, refresh %v ahead: %v; %d tokens built (%.1f per 10 s), "+
		"%d replaced late, %d built early; built ahead of the predecessor's expiry by %v; rejected logins %d (%v), store calls %d, fetch errors %d",
		kind, d.Name, workers, elapsed.Round(time.Millisecond), life, lead, res, len(builds),
		float64(len(builds))/elapsed.Seconds()*10, late, early, leads, st.AuthFailures, w.loggedSQLStates(),
		st.Fetches, st.FetchErrors)

	// A token lives life-1s to life from its build (X-Amz-Date has whole
	// seconds) and is replaced lead to 1.5*lead (jittered, at most half its
	// life) before it expires: one build per life-1s-1.5*lead to life-lead
	// (2 to 4 s), plus the first.
	shortest, longest := life-time.Second-lead*3/2, life-lead
	minBuilds, maxBuilds := int(elapsed/longest), int(elapsed/shortest)+1
	if kind == ldapStandIn {
		if len(builds) < minBuilds || len(builds) > maxBuilds {
			t.Errorf("%d tokens built in %v, want %d..%d", len(builds), elapsed, minBuilds, maxBuilds)
		}
		if late != 0 || early != 0 {
			t.Errorf("%d tokens were replaced after they expired and %d were built early; want one build per token, ahead of its expiry", late, early)
		}
		if st.AuthFailures != 0 {
			t.Errorf("%d logins were refused (%v), want 0: every token is good until its own expiry", st.AuthFailures, w.loggedSQLStates())
		}
	} else if len(builds) < minBuilds {
		t.Errorf("%d tokens built in %v, want at least %d", len(builds), elapsed, minBuilds)
	}
	if st.Fetches != uint64(len(builds)) || st.FetchErrors != 0 {
		t.Errorf("Stats: %d store calls, %d errors; want one call per token built (%d) and no error", st.Fetches, st.FetchErrors, len(builds))
	}
	if st.RecoveryFailures != 0 {
		t.Errorf("Stats().RecoveryFailures = %d, want 0", st.RecoveryFailures)
	}
	w.assertNoSecret(t, "the application's log", w.logs.String(), src)
}

// createTable creates the load's table, owned by the superuser as an
// application's tables belong to their owner, with what inserting needs
// granted to the test's role.
func (w *world) createTable(ctx context.Context, t *testing.T) string {
	t.Helper()
	table := pgtest.UniqueName(t, "t")
	if err := w.pg.ExecSerialized(ctx,
		"CREATE TABLE "+table+" (id bigserial PRIMARY KEY, worker int NOT NULL, seq int NOT NULL)",
		"GRANT SELECT, INSERT ON "+table+" TO "+w.role,
		"GRANT USAGE ON SEQUENCE "+table+"_id_seq TO "+w.role); err != nil {
		t.Fatalf("create table: %v", err)
	}
	t.Cleanup(func() {
		if err := w.pg.Exec(context.Background(), "DROP TABLE "+table); err != nil {
			t.Errorf("drop table: %v", err)
		}
	})
	return table
}

// TestRefusedTokenIsRebuiltOnceForAllCallers meets a token the database
// refuses, with 16 callers at once, each on a new login: one that expired
// without the connector knowing (its Expires said 15 minutes; a host
// suspended past its expiry behaves the same), or one signed with a key
// that was revoked meanwhile (the credentials cache still holding it).
// The refusal is 28P01 with the password stand-in and 28000 with the
// ldap one, as on RDS, including behind a DSN with two hosts, where both
// drivers go on to the next host after 28000 (here, a closed port) and
// return the errors joined. Every caller must get a connection, and the
// connector must build one new token for all of them.
func TestRefusedTokenIsRebuiltOnceForAllCallers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		kind     standIn
		cause    string // "expired" or "revoked"
		twoHosts bool
	}{
		{"expired/28P01", passwordStandIn, "expired", false},
		{"expired/28000", ldapStandIn, "expired", false},
		{"key revoked/28000", ldapStandIn, "revoked", false},
		{"expired/28000/two hosts", ldapStandIn, "expired", true},
	} {
		for _, d := range drivers.All {
			t.Run(tc.name+"/"+d.Name, func(t *testing.T) {
				testRefusedToken(t, d, tc.kind, tc.cause, tc.twoHosts)
			})
		}
	}
}

func testRefusedToken(t *testing.T, d drivers.Driver, kind standIn, cause string, twoHosts bool) {
	const callers = 16
	life := 2 * time.Second
	if cause == "revoked" {
		life = time.Minute // no expiry during the test
	}
	w := newWorld(t, kind, life)
	src := w.source(t)
	src.staleExpires = cause == "expired"
	dsn, dead := w.dsn(), 0
	if twoHosts {
		// The DSN names the endpoint: the token's (the first host) and a
		// second one that refuses connections.
		dead = closedPort(t)
		dsn = fmt.Sprintf("host=%s,%s port=%d,%d %s", w.pg.Host, w.pg.Host, w.pg.Port, dead, dsn)
	}
	c, db := w.open(t, d, dsn, src)
	db.SetMaxIdleConns(0)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("first login: %v", err)
	}

	retrievals := w.keys.retrievals()
	switch cause {
	case "expired":
		if err := testkit.Sleep(ctx, time.Until(src.built()[0].expires)+300*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	case "revoked":
		w.verifier.Revoke(w.keys.rotate())
	}
	if twoHosts {
		// Control: the driver alone, with the refused token, tries the
		// second host after the first one's 28000 and returns both
		// errors; the 28000 is still found in them.
		control, err := sql.Open(d.SQLName, dsn+" user="+w.role+" password='"+src.built()[0].token+"'")
		if err != nil {
			t.Fatal(err)
		}
		err = control.PingContext(ctx)
		control.Close()
		if code := d.SQLState(err); code != "28000" || !strings.Contains(fmt.Sprint(err), strconv.Itoa(dead)) {
			t.Errorf("the driver alone over two hosts: SQLSTATE %q; the error names the second host's port: %v; want 28000 and both hosts tried",
				code, strings.Contains(fmt.Sprint(err), strconv.Itoa(dead)))
		}
	}
	before, buildsBefore := c.Stats(), len(src.built())
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { errs[i] = db.PingContext(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	st := c.Stats()
	builds, rejected := len(src.built())-buildsBefore, st.AuthFailures-before.AuthFailures
	codes := w.loggedSQLStates()
	t.Logf("%s token, %s stand-in, %s, two hosts %v: %d callers, %d refused logins %v, %d new token(s), %d credential retrievals",
		cause, kind, d.Name, twoHosts, callers, rejected, codes, builds, w.keys.retrievals()-retrievals)
	if builds != 1 {
		t.Errorf("%d tokens built for %d callers after the refusal, want 1", builds, callers)
	}
	if rejected < 1 || rejected > callers {
		t.Errorf("%d logins refused, want 1..%d", rejected, callers)
	}
	if codes[kind.refusal()] < 1 || len(codes) != 1 {
		t.Errorf("the connector logged refusals with SQLSTATEs %v, want %s only", codes, kind.refusal())
	}
	if cause == "revoked" {
		if n := w.keys.retrievals() - retrievals; n != 1 {
			t.Errorf("the credentials provider was asked %d times, want once: the cache refreshed after the refusal", n)
		}
	}
	w.assertNoSecret(t, "the application's log", w.logs.String(), src)
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}
