package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/lib/pq"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/internal/testkit/drivers"
	"github.com/pgrotate/rotating/secrets"
)

// The lease and the options of TestVaultLeaseEndsUnderLoad. Real Vault
// leases last an hour or more and the defaults (a minute of margin, a
// minute of lead) are sized for them; here they are scaled down so that
// three leases end within about 16 s, keeping the same shape:
//
//   - sessionMargin is how long before a lease's end its connections are
//     retired. It has to cover the longest statement running at retireAt
//     (an insert takes milliseconds) and the delay before the closed
//     sessions leave pg_stat_activity, on 2 CPUs shared with other tests
//     under -race: 2 s is hundreds of times that.
//   - refreshBefore is the lead of the background refresh before retireAt
//     (plus up to half of it as jitter, and never earlier than half-way
//     through the 6 s to retireAt: so 2 to 3 s). The successor lease must
//     be fetched (a CREATE ROLE and two GRANTs, tens of milliseconds) well
//     before retireAt, when new logins stop using the old one.
//   - leaseTTL leaves the first lease about 3 s of normal use before its
//     successor is fetched, and the pool a few seconds with two roles.
const (
	leaseTTL      = 8 * time.Second
	sessionMargin = 2 * time.Second
	refreshBefore = 2 * time.Second
)

// TestVaultLeaseEndsUnderLoad is the Vault dynamic-role case end to end:
// every read of the source creates a new role whose lease ends leaseTTL
// later, and at each end a revoker does what Vault's revocation does
// (REVOKE ALL, REVOKE CONNECT, terminate the role's backends, DROP ROLE),
// after which any statement on a session of that role would fail with
// 42501. 32 workers insert through an ordinary pool across at least three
// ends. The connector must have retired every session of a lease before
// its end: no statement fails, no acknowledged row is lost, each lease's
// role served inserts, no session of a lease is open at its end (so the
// revoker's pg_terminate_backend has nothing to kill) and none appears
// after it. It runs through each driver: retiring a session is closing the
// driver's connection, which each driver does its own way.
func TestVaultLeaseEndsUnderLoad(t *testing.T) {
	for _, d := range drivers.All {
		t.Run(d.Name, func(t *testing.T) { testVaultLeaseEndsUnderLoad(t, d) })
	}
}

func testVaultLeaseEndsUnderLoad(t *testing.T, d drivers.Driver) {
	const workers, wantEnds = 32, 3
	srv := pgtest.Shared(t)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()

	// The table belongs to the superuser, as an application's tables
	// belong to its owner role; each lease is granted what inserting
	// needs, and role records which lease's session inserted the row.
	table := pgtest.UniqueName(t, "t")
	if err := srv.Exec(ctx, "CREATE TABLE "+table+
		" (id bigserial PRIMARY KEY, worker int NOT NULL, seq int NOT NULL, role text NOT NULL DEFAULT current_user)"); err != nil {
		t.Fatalf("create table: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Exec(context.Background(), "DROP TABLE "+table); err != nil {
			t.Errorf("drop table: %v", err)
		}
	})
	src, err := newVaultSource(ctx, srv, strings.ReplaceAll(pgtest.UniqueName(t, "v"), "_", "-"), table, leaseTTL)
	if err != nil {
		t.Fatal(err)
	}
	// Registered before the pool, so that it runs after the pool is
	// closed: no lease outlives the test, even one that fails early.
	t.Cleanup(func() {
		if err := src.revokeRemaining(context.Background()); err != nil {
			t.Errorf("revoke the leases left: %v", err)
		}
	})

	logger, logs := newLogger()
	c := newConnector(t, baseDSN(srv), src, d.With(rotating.WithLogger(logger),
		rotating.WithSessionMargin(sessionMargin), rotating.WithRefreshBeforeExpiry(refreshBefore))...)
	db := openDB(t, c)
	// An ordinary pool, except that it keeps its connections: with the
	// default of 2 idle ones, database/sql itself would close all but two
	// after every statement, and hardly any session would live long enough
	// for the connector to have to retire it. No ConnMaxLifetime: retiring
	// the sessions before their lease ends is the connector's job.
	db.SetMaxIdleConns(workers)

	// The revoker ends each lease at its end, and the watcher looks for
	// sessions of ended leases meanwhile.
	bgCtx, stopBG := context.WithCancel(ctx)
	var bg sync.WaitGroup
	ended := make(chan *lease, 64)
	bg.Go(func() { src.revokeAtEnds(bgCtx, ended) })
	bg.Go(func() { src.watchEnded(bgCtx, 50*time.Millisecond) })
	stopBackground := sync.OnceFunc(func() { stopBG(); bg.Wait() })
	t.Cleanup(stopBackground)

	start := time.Now()
	since := func(at time.Time) string { return fmt.Sprintf("+%.2fs", at.Sub(start).Seconds()) }
	load := testkit.StartInserts(ctx, db, table, workers, 1<<30, 0)
	var ends []*lease
	for len(ends) < wantEnds {
		select {
		case l := <-ended:
			ends = append(ends, l)
			st := c.Stats()
			t.Logf("lease %d ended at %s (revoked in %v): %d sessions of %s open at its end %s; "+
				"%d leases fetched; %d inserts acknowledged, %d failed; stats: dials=%d dialErrors=%d authFailures=%d "+
				"generation=%d version=%s changes=%d fetchErrors=%d",
				l.n, since(l.end), l.revokeTook.Round(time.Millisecond), l.openAtEnd, l.role, l.statesAtEnd,
				src.fetched(), load.OK.Load(), load.Failed.Load(), st.Dials, st.DialErrors, st.AuthFailures,
				st.CredentialGeneration, st.CredentialVersion, st.CredentialChanges, st.FetchErrors)
		case <-ctx.Done():
			load.Finish()
			t.Fatalf("only %d lease ends in %v: %v", len(ends), time.Since(start).Round(time.Millisecond), ctx.Err())
		}
	}
	testkit.Sleep(ctx, time.Second) // statements after the last end
	load.Finish()
	elapsed := time.Since(start)

	// Read back through the superuser's pool, not the connector's.
	res, err := load.Verify(ctx, srv.Admin())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Problems() {
		t.Error(p)
	}
	for _, err := range res.FirstErrors {
		if code := d.SQLState(err); code != "" {
			t.Errorf("failed statement: SQLSTATE %s: %v", code, err)
		} else {
			t.Errorf("failed statement: %v", err)
		}
	}
	rowsByRole, err := countRowsByRole(ctx, srv, table)
	if err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	if err := db.Close(); err != nil {
		t.Errorf("close the pool: %v", err)
	}
	stopBackground()
	// Closing the pool ends the sessions of the leases still running (their
	// backends leave pg_stat_activity a moment later); only then are those
	// leases revoked, early.
	testkit.WaitFor(ctx, t, 5*time.Second, "the pool's sessions to end once it is closed", func() bool {
		return src.openSessions(ctx) == 0
	})
	if err := src.revokeRemaining(ctx); err != nil {
		t.Errorf("revoke the leases left: %v", err)
	}
	// Every role is gone now; give the backends pg_terminate_backend
	// signalled a moment to exit, then nothing of any lease may be left.
	testkit.WaitFor(ctx, t, 5*time.Second, "the sessions of revoked leases to leave pg_stat_activity", func() bool {
		return src.checkEnded(ctx) == nil
	})

	leases := src.all()
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "lease\tfetched\tretires\tends\trevoked\tsessions at revocation\trows\t")
	for _, l := range leases {
		how := "at its end"
		if l.early {
			how = "at test end"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d %s\t%d\t\n", l.n, since(l.fetchedAt),
			since(l.end.Add(-sessionMargin)), since(l.end), how, l.openAtEnd, l.statesAtEnd, rowsByRole[l.role])
	}
	tw.Flush()
	t.Logf("%d workers, %v: %d statements, %d failed; %d rows acknowledged, %d found, %d lost; %d lease ends, %d leases fetched\n%s"+
		"stats: %+v", workers, elapsed.Round(time.Millisecond), res.Acknowledged+res.Failures, res.Failures,
		res.Acknowledged, res.Found, res.Lost, len(ends), len(leases), b.String(), st)

	// Each ended lease served inserts, and no row came from anything else.
	known := make(map[string]bool)
	for _, l := range leases {
		known[l.role] = true
		if !l.early && rowsByRole[l.role] == 0 {
			t.Errorf("lease %d (%s) ended without having served a single insert", l.n, l.role)
		}
		if !l.early && l.openAtEnd != 0 {
			t.Errorf("lease %d: %d sessions of %s were still open at its end (%s): the connector should have "+
				"retired them at %s, %v before it", l.n, l.openAtEnd, l.role, l.statesAtEnd,
				since(l.end.Add(-sessionMargin)), sessionMargin)
		}
		if l.err != nil {
			t.Errorf("revoking lease %d: %v", l.n, l.err)
		}
	}
	for _, role := range slices.Sorted(maps.Keys(rowsByRole)) {
		if !known[role] {
			t.Errorf("%d rows were inserted by %q, which is no lease's role", rowsByRole[role], role)
		}
	}
	for _, v := range src.violations() {
		t.Error(v)
	}
	// The connector never logged in with an ended lease (28P01 after VALID
	// UNTIL), and every read of the source succeeded.
	if st.AuthFailures != 0 || st.FetchErrors != 0 {
		t.Errorf("Stats: AuthFailures = %d, FetchErrors = %d; want 0 and 0", st.AuthFailures, st.FetchErrors)
	}
	// The ended leases' connections left the pool by retirement (32 workers
	// keep at least one connection each per lease).
	if st.RetiredConnections < uint64(len(ends)) {
		t.Errorf("Stats().RetiredConnections = %d after %d lease ends, want the ended leases' connections counted", st.RetiredConnections, len(ends))
	}
	// A lease is refreshed no earlier than half-way to its retirement, so
	// the source is read at most once per (leaseTTL-sessionMargin)/2, plus
	// the first read: a connector that re-read it in a loop would create a
	// role per read.
	if limit := int(elapsed/((leaseTTL-sessionMargin)/2)) + 2; len(leases) > limit {
		t.Errorf("%d leases fetched in %v, want at most %d", len(leases), elapsed.Round(time.Millisecond), limit)
	}

	var passwords []string
	for _, l := range leases {
		passwords = append(passwords, l.password)
	}
	assertNoSecret(t, "the connector's logs", logs.String(), passwords...)
	for _, err := range res.FirstErrors {
		assertNoSecret(t, "a statement's error", err.Error(), passwords...)
	}
}

// countRowsByRole returns how many rows of table each role inserted.
func countRowsByRole(ctx context.Context, srv *pgserver.Server, table string) (map[string]int64, error) {
	rows, err := srv.Admin().QueryContext(ctx, "SELECT role, count(*) FROM "+table+" GROUP BY role")
	if err != nil {
		return nil, fmt.Errorf("count rows by role: %w", err)
	}
	defer rows.Close()
	n := make(map[string]int64)
	for rows.Next() {
		var role string
		var count int64
		if err := rows.Scan(&role, &count); err != nil {
			return nil, fmt.Errorf("count rows by role: %w", err)
		}
		n[role] = count
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count rows by role: %w", err)
	}
	return n, nil
}

// vaultSource is a secrets.Source that behaves like HashiCorp Vault's
// database secrets engine with a dynamic role: each Fetch is a read of
// database/creds/:role, which creates a new login role valid until its
// lease ends and grants it what the application needs on table.
// revokeAtEnds is Vault's revocation of each lease at its end.
type vaultSource struct {
	srv    *pgserver.Server
	prefix string // the roles are "<prefix>-<n>"
	table  string
	seq    string // table's id sequence
	dbname string
	ttl    time.Duration
	next   atomic.Int64 // the last lease number handed out
	issued chan *lease  // every lease, in order, for revokeAtEnds

	// mu guards leases, ended, found and seen. A lease's revocation fields
	// are written by the one goroutine revoking it, before it is added to
	// ended or sent to the revoker's caller.
	mu     sync.Mutex
	leases []*lease
	ended  []*lease       // revoked leases whose sessions are gone
	found  []string       // sessions of ended leases seen, and the watcher's errors
	seen   map[int64]bool // the pids in found
}

var (
	_ secrets.Source    = (*vaultSource)(nil)
	_ secrets.Describer = (*vaultSource)(nil)
)

// lease is one read of the source: a role and the end of its lease.
type lease struct {
	n         int
	role      string
	oid       int64 // the role's, to find its sessions after DROP ROLE (usename is then NULL)
	password  string
	fetchedAt time.Time
	end       time.Time

	// Set by revoke.
	revoked     bool   // its role is dropped and its sessions are gone
	early       bool   // revoked before its end: by revokeRemaining, the test being over
	openAtEnd   int    // sessions of the role just before the revocation
	statesAtEnd string // those sessions by state, e.g. "(idle:2)"; empty for none
	revokeTook  time.Duration
	err         error
}

func newVaultSource(ctx context.Context, srv *pgserver.Server, prefix, table string, ttl time.Duration) (*vaultSource, error) {
	s := &vaultSource{srv: srv, prefix: prefix, table: table, seq: table + "_id_seq", ttl: ttl, issued: make(chan *lease, 1024), seen: make(map[int64]bool)}
	if err := srv.Admin().QueryRowContext(ctx, "SELECT current_database()").Scan(&s.dbname); err != nil {
		return nil, fmt.Errorf("vault source: %w", err)
	}
	return s, nil
}

func (s *vaultSource) Describe() string { return "vault-dynamic-role " + s.prefix }

// pgTimestamp formats VALID UNTIL's timestamp, in UTC.
const pgTimestamp = "2006-01-02 15:04:05.000000Z07:00"

// Fetch creates a new role with a lease of ttl, as Vault's creation
// statements do, and returns it.
func (s *vaultSource) Fetch(ctx context.Context) (secrets.Credential, error) {
	rnd := make([]byte, 16)
	if _, err := rand.Read(rnd); err != nil {
		return secrets.Credential{}, err
	}
	l := &lease{n: int(s.next.Add(1)), password: "pw-" + hex.EncodeToString(rnd), fetchedAt: time.Now()}
	l.role = fmt.Sprintf("%s-%d", s.prefix, l.n)
	l.end = l.fetchedAt.Add(s.ttl)
	id := pq.QuoteIdentifier(l.role)
	// One transaction with the lock the revocations take: GRANT and REVOKE
	// on the same table at once fail with "tuple concurrently updated".
	if err := s.srv.ExecSerialized(ctx,
		"CREATE ROLE "+id+" LOGIN PASSWORD "+pq.QuoteLiteral(l.password)+
			" VALID UNTIL "+pq.QuoteLiteral(l.end.UTC().Format(pgTimestamp)),
		"GRANT SELECT, INSERT ON TABLE "+s.table+" TO "+id,
		"GRANT USAGE ON SEQUENCE "+s.seq+" TO "+id,
	); err != nil {
		return secrets.Credential{}, fmt.Errorf("vault source: create lease %d: %w", l.n, err)
	}
	err := s.srv.Admin().QueryRowContext(ctx, "SELECT oid::bigint FROM pg_roles WHERE rolname = $1", l.role).Scan(&l.oid)
	s.mu.Lock()
	s.leases = append(s.leases, l)
	s.mu.Unlock()
	s.issued <- l // never full: far more room than a test has leases
	if err != nil {
		return secrets.Credential{}, fmt.Errorf("vault source: lease %d: read the role's oid: %w", l.n, err)
	}
	return secrets.Credential{
		Username:    l.role,
		Password:    l.password,
		Version:     fmt.Sprintf("lease-%d", l.n),
		Expires:     l.end,
		SessionsEnd: l.end,
	}, nil
}

// fetched returns how many leases were created.
func (s *vaultSource) fetched() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.leases)
}

func (s *vaultSource) all() []*lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.leases)
}

// revokeAtEnds revokes each lease at its end, sending it to ended once its
// sessions are gone, until ctx ends. Leases left are revokeRemaining's.
func (s *vaultSource) revokeAtEnds(ctx context.Context, ended chan<- *lease) {
	for {
		var l *lease
		select {
		case l = <-s.issued:
		case <-ctx.Done():
			return
		}
		testkit.Sleep(ctx, time.Until(l.end))
		if ctx.Err() != nil {
			return
		}
		s.revoke(ctx, l)
		select {
		case ended <- l:
		case <-ctx.Done():
			return
		}
	}
}

// revokeRemaining revokes, now, the leases not revoked yet (or whose
// revocation was interrupted): the test is over. Call it once revokeAtEnds
// has returned.
func (s *vaultSource) revokeRemaining(ctx context.Context) error {
	var errs []error
	for _, l := range s.all() {
		if !l.revoked {
			s.revoke(ctx, l)
			errs = append(errs, l.err)
		}
	}
	return errors.Join(errs...)
}

// revoke ends lease l as Vault's default revocation statements do, plus
// the pg_terminate_backend that operators add (Vault's own leaves sessions
// connected, without privileges). It first records the role's sessions:
// the connector should have closed every one of them already.
func (s *vaultSource) revoke(ctx context.Context, l *lease) {
	begin := time.Now()
	l.early = begin.Before(l.end)
	l.openAtEnd, l.statesAtEnd, l.err = s.sessionsOf(ctx, l.role)
	if l.err != nil {
		return
	}
	id := pq.QuoteIdentifier(l.role)
	if err := s.srv.ExecSerialized(ctx,
		"REVOKE ALL ON TABLE "+s.table+" FROM "+id,
		"REVOKE ALL ON SEQUENCE "+s.seq+" FROM "+id,
		"REVOKE USAGE ON SCHEMA public FROM "+id,
		"REVOKE CONNECT ON DATABASE "+pq.QuoteIdentifier(s.dbname)+" FROM "+id,
	); err != nil {
		l.err = fmt.Errorf("lease %d: revoke: %w", l.n, err)
		return
	}
	if err := s.srv.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usesysid = $1", l.oid); err != nil {
		l.err = fmt.Errorf("lease %d: terminate its sessions: %w", l.n, err)
		return
	}
	// A backend being terminated may still hold the role's catalog entry
	// for a moment; Vault retries too.
	for attempt := 1; ; attempt++ {
		err := s.srv.Exec(ctx, "DROP ROLE IF EXISTS "+id)
		if err == nil {
			break
		}
		if attempt == 20 || ctx.Err() != nil {
			l.err = fmt.Errorf("lease %d: drop role: %w", l.n, err)
			return
		}
		testkit.Sleep(ctx, 50*time.Millisecond)
	}
	// Sessions pg_terminate_backend signalled leave pg_stat_activity as
	// their backends exit; only then does the watcher look for them.
	for s.sessionsOfOID(ctx, l.oid) > 0 && ctx.Err() == nil && time.Since(begin) < 5*time.Second {
		testkit.Sleep(ctx, 10*time.Millisecond)
	}
	l.revokeTook = time.Since(begin)
	l.revoked = true
	s.mu.Lock()
	s.ended = append(s.ended, l)
	s.mu.Unlock()
}

// sessionsOf counts the sessions of role in pg_stat_activity, and lists
// them by state.
func (s *vaultSource) sessionsOf(ctx context.Context, role string) (int, string, error) {
	rows, err := s.srv.Admin().QueryContext(ctx,
		"SELECT coalesce(state, 'none'), count(*) FROM pg_stat_activity WHERE usename = $1 GROUP BY 1 ORDER BY 1", role)
	if err != nil {
		return 0, "", fmt.Errorf("sessions of %s: %w", role, err)
	}
	defer rows.Close()
	total, states := 0, []string{}
	for rows.Next() {
		var state string
		var n int
		if err := rows.Scan(&state, &n); err != nil {
			return 0, "", fmt.Errorf("sessions of %s: %w", role, err)
		}
		total += n
		states = append(states, fmt.Sprintf("%s:%d", state, n))
	}
	if err := rows.Err(); err != nil {
		return 0, "", fmt.Errorf("sessions of %s: %w", role, err)
	}
	if total == 0 {
		return 0, "", nil
	}
	return total, "(" + strings.Join(states, " ") + ")", nil
}

// sessionsOfOID counts the sessions of the role with oid, dropped or not;
// -1 if the query fails.
func (s *vaultSource) sessionsOfOID(ctx context.Context, oid int64) int {
	var n int
	if err := s.srv.Admin().QueryRowContext(ctx, "SELECT count(*) FROM pg_stat_activity WHERE usesysid = $1", oid).Scan(&n); err != nil {
		return -1
	}
	return n
}

// openSessions counts the sessions of every lease, ended or not; -1 if a
// query fails.
func (s *vaultSource) openSessions(ctx context.Context) int {
	total := 0
	for _, l := range s.all() {
		n := s.sessionsOfOID(ctx, l.oid)
		if n < 0 {
			return -1
		}
		total += n
	}
	return total
}

// watchEnded looks for sessions of ended leases every interval until ctx
// ends, recording each one found.
func (s *vaultSource) watchEnded(ctx context.Context, every time.Duration) {
	for ctx.Err() == nil {
		sessions, err := s.endedSessions(ctx)
		s.mu.Lock()
		if err != nil && ctx.Err() == nil {
			s.found = append(s.found, err.Error())
		}
		for _, ss := range sessions {
			if !s.seen[ss.pid] {
				s.seen[ss.pid] = true
				s.found = append(s.found, ss.String())
			}
		}
		s.mu.Unlock()
		testkit.Sleep(ctx, every)
	}
}

// checkEnded returns an error naming every session of an ended lease in
// pg_stat_activity.
func (s *vaultSource) checkEnded(ctx context.Context) error {
	sessions, err := s.endedSessions(ctx)
	if err != nil {
		return err
	}
	if len(sessions) > 0 {
		var found []string
		for _, ss := range sessions {
			found = append(found, ss.String())
		}
		return errors.New(strings.Join(found, "; "))
	}
	return nil
}

// endedSession is a session of an ended lease, seen in pg_stat_activity.
type endedSession struct {
	pid   int64
	state string
	lease *lease
	after time.Duration // since the lease's end
}

func (ss endedSession) String() string {
	return fmt.Sprintf("session %d of lease %d (%s), in state %s, %v after the lease ended",
		ss.pid, ss.lease.n, ss.lease.role, ss.state, ss.after.Round(time.Millisecond))
}

// endedSessions returns the sessions of ended leases in pg_stat_activity.
func (s *vaultSource) endedSessions(ctx context.Context) ([]endedSession, error) {
	s.mu.Lock()
	byOID := make(map[int64]*lease, len(s.ended))
	oids := make([]int64, 0, len(s.ended))
	for _, l := range s.ended {
		byOID[l.oid] = l
		oids = append(oids, l.oid)
	}
	s.mu.Unlock()
	if len(oids) == 0 {
		return nil, nil
	}
	rows, err := s.srv.Admin().QueryContext(ctx,
		"SELECT usesysid::bigint, pid, coalesce(state, 'none') FROM pg_stat_activity WHERE usesysid = ANY($1::oid[])", pq.Array(oids))
	if err != nil {
		return nil, fmt.Errorf("look for sessions of ended leases: %w", err)
	}
	defer rows.Close()
	var found []endedSession
	for rows.Next() {
		var oid int64
		var ss endedSession
		if err := rows.Scan(&oid, &ss.pid, &ss.state); err != nil {
			return nil, fmt.Errorf("look for sessions of ended leases: %w", err)
		}
		ss.lease = byOID[oid]
		ss.after = time.Since(ss.lease.end)
		found = append(found, ss)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("look for sessions of ended leases: %w", err)
	}
	return found, nil
}

// violations returns what watchEnded found.
func (s *vaultSource) violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.found)
}
