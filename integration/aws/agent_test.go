package awsintegration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
	"github.com/pgrotate/rotating/secrets/awssm/rotation"
	"github.com/pgrotate/rotating/secrets/awssm/smagent"
)

// The tests in this file run the application through the Secrets Manager
// Agent: the smagent source, over real HTTP on loopback, to the awssmtest
// agent in front of the same local Secrets Manager endpoint that AWS's
// rotation function (secrets/awssm/rotation) changes. The agent's calls to
// that endpoint are the application's store calls (e.appCalls), and the
// agent's own counters tell its requests from them.

// newAgent starts an agent in front of e's endpoint, closed when the test
// ends. Its token joins the secrets the tests look for in logs and errors.
func (e *env) newAgent(t testing.TB, opts ...awssmtest.AgentOption) *awssmtest.Agent {
	t.Helper()
	a := e.sm.NewAgent(opts...).Start()
	t.Cleanup(a.Close)
	e.remember(a.Token())
	return a
}

// newAgentApp is the application reading secretID through agent: a
// rotating Connector over the smagent source and sql.OpenDB on it, closed
// when the test ends.
func (e *env) newAgentApp(t testing.TB, agent *awssmtest.Agent, secretID string, srcOpts []smagent.Option, opts ...rotating.Option) (*rotating.Connector, *sql.DB) {
	t.Helper()
	base := []smagent.Option{smagent.WithEndpoint(agent.URL()), smagent.WithToken(agent.Token()), smagent.WithLogger(e.logger)}
	src, err := smagent.New(secretID, append(base, srcOpts...)...)
	if err != nil {
		t.Fatalf("smagent.New: %v", err)
	}
	c, err := rotating.NewConnector(e.appDSN(), src, append([]rotating.Option{rotating.WithLogger(e.logger)}, opts...)...)
	if err != nil {
		t.Fatalf("NewConnector: %v", err)
	}
	db := sql.OpenDB(c)
	t.Cleanup(func() { _ = db.Close() })
	return c, db
}

// agentDelta is what an agent did between two Stats.
func agentDelta(after, before awssmtest.AgentStats) awssmtest.AgentStats {
	return awssmtest.AgentStats{
		Requests:            after.Requests - before.Requests,
		RefreshNow:          after.RefreshNow - before.RefreshNow,
		CacheHits:           after.CacheHits - before.CacheHits,
		Revalidations:       after.Revalidations - before.Revalidations,
		StaleServed:         after.StaleServed - before.StaleServed,
		GetSecretValueCalls: after.GetSecretValueCalls - before.GetSecretValueCalls,
		DescribeSecretCalls: after.DescribeSecretCalls - before.DescribeSecretCalls,
		BadToken:            after.BadToken - before.BadToken,
		OverLimit:           after.OverLimit - before.OverLimit,
	}
}

// TestAgentSingleUserRotationWindow is TestSingleUserRotationWindow through
// the agent (TTL 300 s, so that its copies of AWSCURRENT and AWSPENDING are
// the previous rotation's every time): five rotations while 32 workers
// insert rows, every statement on a new login, each window between
// setSecret and finishSecret held open for 2 s. No statement may fail, no
// row may be lost, and per rotation the application (the agent, for it)
// may call Secrets Manager at most once per label.
func TestAgentSingleUserRotationWindow(t *testing.T) {
	const (
		workers   = 32
		rotations = 5
		window    = 2 * time.Second
		pause     = 200 * time.Millisecond
	)
	e := newEnv(t)
	role, pw := e.newRole(t, "app")
	id := "prod/" + role
	e.logOnFailure(t, id)
	e.sm.CreateSecret(id, e.secretJSON(t, role, pw, nil))
	agent := e.newAgent(t)
	c, db := e.newAgentApp(t, agent, id, nil)
	db.SetMaxIdleConns(0) // every statement logs in anew

	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	table := createTable(ctx, t, db)
	r := e.rotator(rotation.SingleUser, holdAfter(rotation.StepSet, window))
	load := startLoad(ctx, db, table, workers, 100_000, pause)
	load.waitAcks(ctx, t, workers, "the first inserts")
	var perRotation []string
	windowsMet := 0
	for i := 1; i <= rotations; i++ {
		before, agentBefore, failedBefore := c.Stats(), agent.Stats(), load.Failed.Load()
		load.TakeSlowest()
		e.resetCalls()
		version, err := r.Rotate(ctx, id)
		if err != nil {
			t.Fatalf("rotation %d: %v", i, err)
		}
		load.waitAcks(ctx, t, workers, fmt.Sprintf("inserts after rotation %d", i))
		_ = testkit.Sleep(ctx, 200*time.Millisecond)
		cur, pend := e.appCalls(awssmtest.StageCurrent), e.appCalls(awssmtest.StagePending)
		after, a := c.Stats(), agentDelta(agent.Stats(), agentBefore)
		if after.PendingFetches > before.PendingFetches {
			windowsMet++
		}
		line := fmt.Sprintf("rotation %d: agent requests %d (refreshNow %d, cache hits %d), Secrets Manager GetSecretValue AWSCURRENT=%d AWSPENDING=%d, DescribeSecret %d; "+
			"rejected logins %d, promotions %d, failed statements %d, slowest statement %v",
			i, a.Requests, a.RefreshNow, a.CacheHits, cur, pend, a.DescribeSecretCalls,
			after.AuthFailures-before.AuthFailures, after.PendingPromotions-before.PendingPromotions,
			load.Failed.Load()-failedBefore, load.TakeSlowest().Round(time.Millisecond))
		t.Log(line)
		perRotation = append(perRotation, fmt.Sprintf("%d/%d/%d", a.Requests, a.RefreshNow, cur+pend))
		if cur > 1 || pend > 1 || a.RefreshNow > 2 {
			t.Errorf("rotation %d: %d AWSCURRENT and %d AWSPENDING calls to Secrets Manager, %d refreshNow requests; want at most 1, 1 and 2", i, cur, pend, a.RefreshNow)
		}
		if a.GetSecretValueCalls != cur+pend {
			t.Errorf("rotation %d: the agent counts %d GetSecretValue calls, the endpoint %d", i, a.GetSecretValueCalls, cur+pend)
		}
		if after.CredentialVersion != version {
			t.Errorf("rotation %d: the connector uses version %q, want the new AWSCURRENT %q", i, after.CredentialVersion, version)
		}
	}
	load.finish()
	if ctx.Err() != nil {
		t.Fatalf("test ran out of time: %v", ctx.Err())
	}
	res := load.check(ctx, t, e.pg)
	st := c.Stats()
	t.Logf("single-user through the agent: %d workers, %d rotations, window %v: %v; windows met %d/%d; "+
		"per rotation agent requests/refreshNow/Secrets Manager calls %v; stats: fetches %d, pending fetches %d, fetch errors %d, rejected logins %d, give-ups %d",
		workers, rotations, window, res, windowsMet, rotations, perRotation,
		st.Fetches, st.PendingFetches, st.FetchErrors, st.AuthFailures, st.RecoveryFailures)
	if windowsMet == 0 {
		t.Error("no rotation made the application ask for AWSPENDING: the setSecret-finishSecret window was never met")
	}
	if st.RecoveryFailures != 0 {
		t.Errorf("Stats().RecoveryFailures = %d, want 0", st.RecoveryFailures)
	}
	e.rememberAllVersions(ctx, t, id)
	e.assertNoPassword(t, "the application's logs", e.logs.String())
}

// TestAgentAlternatingUsersRotation is TestAlternatingUsersRotation through
// the agent: ten rotations (app, app_clone, app, ...) while 32 workers
// insert rows; the credential the connector holds dies one rotation later,
// and the agent's copy of AWSCURRENT may be older still. No statement may
// fail, a new login is always the user of the version in use, and per
// rotation the application may call Secrets Manager at most once per
// label.
func TestAgentAlternatingUsersRotation(t *testing.T) {
	const (
		workers   = 32
		rotations = 10
		hold      = 300 * time.Millisecond
		pause     = 200 * time.Millisecond
	)
	e := newEnv(t)
	master, masterPW := e.newMaster(t)
	masterARN, _ := e.sm.CreateSecret("master/"+master, e.secretJSON(t, master, masterPW, nil))
	role, pw := e.newRole(t, "app")
	id := "prod/" + role
	e.logOnFailure(t, id)
	_, v1 := e.sm.CreateSecret(id, e.secretJSON(t, role, pw, map[string]any{"masterarn": masterARN}))
	agent := e.newAgent(t)
	c, db := e.newAgentApp(t, agent, id, nil)
	db.SetMaxIdleConns(0)

	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	table := createTable(ctx, t, db)
	r := e.rotator(rotation.AlternatingUsers, holdAfter(rotation.StepSet, hold))
	currentUser := func() string {
		t.Helper()
		var u string
		if err := db.QueryRowContext(ctx, "SELECT current_user").Scan(&u); err != nil {
			t.Fatalf("SELECT current_user: %v", err)
		}
		return u
	}
	load := startLoad(ctx, db, table, workers, 100_000, pause)
	load.waitAcks(ctx, t, workers, "the first inserts")
	usernames := map[string]string{v1: role}
	var perRotation []string
	for i := 1; i <= rotations; i++ {
		before, agentBefore, failedBefore := c.Stats(), agent.Stats(), load.Failed.Load()
		e.resetCalls()
		version, err := r.Rotate(ctx, id)
		if err != nil {
			t.Fatalf("rotation %d: %v", i, err)
		}
		l, err := e.version(ctx, id, version)
		if err != nil {
			t.Fatalf("rotation %d: read the new version: %v", i, err)
		}
		e.remember(l.Password)
		usernames[version] = l.Username
		load.waitAcks(ctx, t, workers, fmt.Sprintf("inserts after rotation %d", i))
		_ = testkit.Sleep(ctx, 200*time.Millisecond)
		cur, pend := e.appCalls(awssmtest.StageCurrent), e.appCalls(awssmtest.StagePending)
		after, a := c.Stats(), agentDelta(agent.Stats(), agentBefore)
		got := currentUser()
		t.Logf("rotation %d: AWSCURRENT is %s; the app logs in as %s (version %.8s); agent requests %d (refreshNow %d), "+
			"Secrets Manager GetSecretValue AWSCURRENT=%d AWSPENDING=%d; rejected logins %d, changes %d, failed statements %d",
			i, l.Username, got, after.CredentialVersion, a.Requests, a.RefreshNow, cur, pend,
			after.AuthFailures-before.AuthFailures, after.CredentialChanges-before.CredentialChanges, load.Failed.Load()-failedBefore)
		perRotation = append(perRotation, fmt.Sprintf("%d/%d/%d", a.Requests, a.RefreshNow, cur+pend))
		if want := usernames[after.CredentialVersion]; got != want {
			t.Errorf("rotation %d: a new login is %s, want %s, the user of the version in use (%s)", i, got, want, after.CredentialVersion)
		}
		if cur > 1 || pend > 1 || a.RefreshNow > 2 {
			t.Errorf("rotation %d: %d AWSCURRENT and %d AWSPENDING calls to Secrets Manager, %d refreshNow requests; want at most 1, 1 and 2", i, cur, pend, a.RefreshNow)
		}
	}
	load.finish()
	if ctx.Err() != nil {
		t.Fatalf("test ran out of time: %v", ctx.Err())
	}
	res := load.check(ctx, t, e.pg)
	st := c.Stats()
	t.Logf("alternating-users through the agent: %d workers, %d rotations: %v; per rotation agent requests/refreshNow/Secrets Manager calls %v; "+
		"stats: fetches %d, pending fetches %d, changes %d, rejected logins %d, give-ups %d",
		workers, rotations, res, perRotation, st.Fetches, st.PendingFetches, st.CredentialChanges, st.AuthFailures, st.RecoveryFailures)
	if st.RecoveryFailures != 0 {
		t.Errorf("Stats().RecoveryFailures = %d, want 0", st.RecoveryFailures)
	}
	e.rememberAllVersions(ctx, t, id)
	e.assertNoPassword(t, "the application's logs", e.logs.String())
}

// hostMode is how the processes of one host read the secret.
type hostMode struct {
	name string // for logs and tables
	key  string // for benchmark names
	ttl  time.Duration
	// ttl is the agent's TTL; 0 means no agent: each process reads
	// Secrets Manager itself with the awssm source.
}

// hostModes are the ways TestAgentSavesStoreCallsForManyProcesses and
// BenchmarkAgentStoreCalls compare: (a) directly with the awssm source,
// (b) through one agent whose TTL (300 s) outlives the rotations' spacing,
// so its copies are the previous rotation's, and (c) through one agent with
// a 1 s TTL, shorter than the spacing, as rotations days apart are against
// the default TTL.
var hostModes = []hostMode{
	{name: "direct (awssm)", key: "direct"},
	{name: "agent, TTL 300 s", key: "agent-ttl-300s", ttl: awssmtest.DefaultAgentTTL},
	{name: "agent, TTL 1 s", key: "agent-ttl-1s", ttl: time.Second},
}

// hostFigures is what one host's processes cost over its rotations.
type hostFigures struct {
	mode             hostMode
	procs, rotations int
	// requests and refreshNow are the agent's requests, getSecretValue and
	// describe the application's (or its agent's) Secrets Manager calls,
	// all summed over the rotations; firstRotation is the Secrets Manager
	// calls of the first rotation alone.
	requests, refreshNow, getSecretValue, describe, firstRotation int64
	// fetches and pendingFetches are the connectors' Fetch and FetchPending
	// calls, failed the failed statements, over the rotations.
	fetches, pendingFetches, failed uint64
}

// rotateHost runs procs connectors on one host ("processes", each with its
// own source, pool and workers inserting rows, every statement on a new
// login) through rotations single-user rotations, each window held open
// for 2 s, reading the secret as mode says, and returns what they cost.
// It fails tb if a process does not use the new version after a rotation,
// if a statement fails or a row is lost, if the host's Secrets Manager
// calls per rotation exceed two per process (one per label), or, through
// the short-TTL agent, if any refreshNow was needed or the host made more
// than about two GetSecretValue calls per rotation.
func rotateHost(tb testing.TB, mode hostMode, procs, workers, rotations int) hostFigures {
	tb.Helper()
	const (
		// window is longer than the 1 s TTL, so that the short-TTL
		// agent's copies have expired when the next rotation needs them.
		window = 2 * time.Second
		pause  = 100 * time.Millisecond
	)
	e := newEnv(tb)
	role, pw := e.newRole(tb, "app")
	id := "prod/" + role
	e.logOnFailure(tb, id)
	e.sm.CreateSecret(id, e.secretJSON(tb, role, pw, nil))
	var agent *awssmtest.Agent
	if mode.ttl > 0 {
		agent = e.newAgent(tb, awssmtest.WithAgentTTL(mode.ttl))
	}
	ctx, cancel := context.WithTimeout(tb.Context(), 4*time.Minute)
	defer cancel()
	conns := make([]*rotating.Connector, procs)
	loads := make([]*load, procs)
	for p := range procs {
		var db *sql.DB
		if agent != nil {
			conns[p], db = e.newAgentApp(tb, agent, id, nil)
		} else {
			conns[p], db = e.newApp(tb, id)
		}
		db.SetMaxIdleConns(0)
		// A table per process, so that each load checks its own rows.
		loads[p] = startLoad(ctx, db, createTable(ctx, tb, db), workers, 100_000, pause)
	}
	for _, l := range loads {
		l.waitAcks(ctx, tb, int64(workers), "the first inserts")
	}
	r := e.rotator(rotation.SingleUser, holdAfter(rotation.StepSet, window))
	f := hostFigures{mode: mode, procs: procs, rotations: rotations}
	var before []rotating.Stats
	for _, c := range conns {
		before = append(before, c.Stats())
	}
	for i := 1; i <= rotations; i++ {
		var agentBefore awssmtest.AgentStats
		if agent != nil {
			agentBefore = agent.Stats()
		}
		e.resetCalls()
		version, err := r.Rotate(ctx, id)
		if err != nil {
			tb.Fatalf("rotation %d: %v", i, err)
		}
		for _, l := range loads {
			l.waitAcks(ctx, tb, int64(workers), fmt.Sprintf("inserts after rotation %d", i))
		}
		_ = testkit.Sleep(ctx, 200*time.Millisecond)
		calls := e.appCalls(awssmtest.StageCurrent) + e.appCalls(awssmtest.StagePending)
		var a awssmtest.AgentStats
		if agent != nil {
			a = agentDelta(agent.Stats(), agentBefore)
		}
		tb.Logf("rotation %d, %s, %d processes: Secrets Manager GetSecretValue %d, DescribeSecret %d; agent requests %d, refreshNow %d",
			i, mode.name, procs, calls, a.DescribeSecretCalls, a.Requests, a.RefreshNow)
		f.requests += a.Requests
		f.refreshNow += a.RefreshNow
		f.getSecretValue += calls
		f.describe += a.DescribeSecretCalls
		if i == 1 {
			f.firstRotation = calls + a.DescribeSecretCalls
		}
		// Directly, each process asks once per label: 2 per process.
		// Through the agent, at most once per label per process
		// (refreshNow), and far fewer when the processes share.
		if calls > int64(2*procs) {
			tb.Errorf("rotation %d: %d GetSecretValue calls for %d processes, want at most %d", i, calls, procs, 2*procs)
		}
		for p, c := range conns {
			if v := c.Stats().CredentialVersion; v != version {
				tb.Errorf("rotation %d: process %d uses version %s, want %s", i, p, v, version)
			}
		}
	}
	var giveUps uint64
	for p, c := range conns {
		st := c.Stats()
		f.fetches += st.Fetches - before[p].Fetches
		f.pendingFetches += st.PendingFetches - before[p].PendingFetches
		giveUps += st.RecoveryFailures
	}
	for _, l := range loads {
		l.finish()
	}
	if ctx.Err() != nil {
		tb.Fatalf("test ran out of time: %v", ctx.Err())
	}
	for _, l := range loads {
		f.failed += uint64(l.check(ctx, tb, e.pg).Failures)
	}
	if giveUps != 0 {
		tb.Errorf("%d give-ups", giveUps)
	}
	if agent != nil && mode.ttl < time.Minute && f.refreshNow != 0 {
		tb.Errorf("%d refreshNow requests with the agent's copies older than its TTL, want 0", f.refreshNow)
	}
	if agent != nil && mode.ttl < time.Minute && f.getSecretValue > int64(2*rotations+procs) {
		tb.Errorf("%d GetSecretValue calls in %d rotations for %d processes through a short-TTL agent; want about 2 per rotation for the host",
			f.getSecretValue, rotations, procs)
	}
	e.rememberAllVersions(ctx, tb, id)
	e.assertNoPassword(tb, "the application's logs", e.logs.String())
	return f
}

// hostTable lays figures out as a table, one row per host.
func hostTable(figures []hostFigures) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "host\tFetch+FetchPending calls\tagent requests\trefreshNow\tGetSecretValue to Secrets Manager\tDescribeSecret\tper rotation\tfirst rotation\n")
	for _, f := range figures {
		fmt.Fprintf(tw, "%s, %d processes, %d rotations\t%d\t%d\t%d\t%d\t%d\t%.1f\t%d\n", f.mode.name, f.procs, f.rotations,
			f.fetches+f.pendingFetches, f.requests, f.refreshNow, f.getSecretValue, f.describe,
			float64(f.getSecretValue+f.describe)/float64(f.rotations), f.firstRotation)
	}
	tw.Flush()
	return b.String()
}

// TestAgentSavesStoreCallsForManyProcesses checks what the agent saves for
// the processes of one host, at the smallest size that shows it: three
// processes, four workers each, two single-user rotations, in each of
// hostModes (see rotateHost for what is asserted). The modes run in
// parallel: each has its own endpoint, agent and role. Two rotations, so
// that the agent with the long TTL meets copies of the previous rotation.
// The figures for eight processes and three rotations (docs/smagent.md)
// come from BenchmarkAgentStoreCalls, which scripts/bench.sh runs.
func TestAgentSavesStoreCallsForManyProcesses(t *testing.T) {
	const (
		procs     = 3
		workers   = 4
		rotations = 2
	)
	var (
		mu      sync.Mutex
		figures = make([]hostFigures, len(hostModes))
	)
	t.Cleanup(func() {
		t.Logf("store calls for the processes of one host:\n%s", hostTable(figures))
	})
	for i, mode := range hostModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			f := rotateHost(t, mode, procs, workers, rotations)
			mu.Lock()
			defer mu.Unlock()
			figures[i] = f
		})
	}
}

// BenchmarkAgentStoreCalls measures what the agent saves for the processes
// of one host: each op is a host of eight processes (four workers each)
// going through three single-user rotations, read in the sub-benchmark's
// mode (hostModes; rotateHost asserts the same bounds as the test). Run
// with -benchtime 1x (scripts/bench.sh does). Reported per rotation, for
// the whole host: Secrets Manager's GetSecretValue and DescribeSecret calls
// by the application or its agent, the agent's requests and refreshNow
// requests, the connectors' Fetch and FetchPending calls; and the Secrets
// Manager calls of the first rotation, whose agent copies are the ones
// read at start.
func BenchmarkAgentStoreCalls(b *testing.B) {
	const (
		procs     = 8
		workers   = 4
		rotations = 3
	)
	for _, mode := range hostModes {
		b.Run("mode="+mode.key, func(b *testing.B) {
			var sum hostFigures
			var first int64
			for range b.N {
				f := rotateHost(b, mode, procs, workers, rotations)
				b.Logf("store calls for the processes of one host:\n%s", hostTable([]hostFigures{f}))
				sum.requests += f.requests
				sum.refreshNow += f.refreshNow
				sum.getSecretValue += f.getSecretValue
				sum.describe += f.describe
				sum.fetches += f.fetches
				sum.pendingFetches += f.pendingFetches
				sum.failed += f.failed
				first += f.firstRotation
			}
			n := float64(b.N * rotations)
			b.ReportMetric(float64(sum.getSecretValue)/n, "GetSecretValue/rotation")
			b.ReportMetric(float64(sum.describe)/n, "DescribeSecret/rotation")
			b.ReportMetric(float64(first)/float64(b.N), "first-rotation-calls")
			b.ReportMetric(float64(sum.requests)/n, "agent-requests/rotation")
			b.ReportMetric(float64(sum.refreshNow)/n, "refreshNow/rotation")
			b.ReportMetric(float64(sum.fetches+sum.pendingFetches)/n, "source-calls/rotation")
			b.ReportMetric(float64(sum.failed)/float64(b.N), "failed-statements")
			b.ReportMetric(0, "ns/op") // the time per op is the rotations' pacing, not a figure
		})
	}
}

// TestAgentFaults keeps the application running while the agent fails in
// four ways: it refuses the token (restarted with a new one), it is over
// its connection limit (another process holds its only connection), it is
// down, or it is slower than the fetch timeout. A background refresh every
// 100 ms meets the failure; the cached credential works, so no statement
// may fail. Then the role's password is changed in the database: every
// concurrent Connect must fail with a *rotating.AuthError that wraps the
// agent's error, names the secret and quotes no password or token.
func TestAgentFaults(t *testing.T) {
	cases := []struct {
		name string
		// opts configure the agent; breakIt makes it fail and returns a
		// function that undoes what must be undone at the end.
		opts    []awssmtest.AgentOption
		breakIt func(t *testing.T, e *env, a *awssmtest.Agent) (cleanup func())
		cause   func(error) bool
		want    string
	}{
		{
			name: "403 bad token",
			breakIt: func(t *testing.T, e *env, a *awssmtest.Agent) func() {
				e.remember("restarted-" + a.Token())
				a.SetToken("restarted-" + a.Token())
				return func() {}
			},
			cause: func(err error) bool {
				var ae *smagent.AgentError
				return errors.Is(err, smagent.ErrBadToken) && errors.As(err, &ae) && ae.StatusCode == http.StatusForbidden
			},
			want: "smagent.ErrBadToken (HTTP 403)",
		},
		{
			name: "429 over the connection limit",
			opts: []awssmtest.AgentOption{awssmtest.WithAgentMaxConnections(1)},
			breakIt: func(t *testing.T, e *env, a *awssmtest.Agent) func() {
				// Another process holds the agent's only connection: its
				// secret is not cached and Secrets Manager hangs for it.
				e.sm.CreateSecret("neighbour/"+t.Name(), `{"password":"neighbour-pw-1234"}`)
				e.remember("neighbour-pw-1234")
				e.sm.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{Hang: true})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() {
					defer close(done)
					req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.URL()+"/secretsmanager/get?secretId=neighbour/"+t.Name(), nil)
					req.Header.Set(smagent.TokenHeader, a.Token())
					if resp, err := http.DefaultClient.Do(req); err == nil {
						resp.Body.Close()
					}
				}()
				return func() { cancel(); <-done; e.sm.ClearFaults() }
			},
			cause: func(err error) bool { return errors.Is(err, smagent.ErrTooManyConnections) },
			want:  "smagent.ErrTooManyConnections (HTTP 429)",
		},
		{
			name:    "agent down",
			breakIt: func(t *testing.T, e *env, a *awssmtest.Agent) func() { a.Close(); return func() {} },
			cause: func(err error) bool {
				return errors.Is(err, smagent.ErrAgentUnreachable) && strings.Contains(err.Error(), "connection refused")
			},
			want: "smagent.ErrAgentUnreachable (connection refused)",
		},
		{
			name: "agent slower than the fetch timeout",
			breakIt: func(t *testing.T, e *env, a *awssmtest.Agent) func() {
				a.InjectFault(awssmtest.Fault{Latency: 3 * time.Second})
				return a.ClearFaults
			},
			cause: func(err error) bool {
				return errors.Is(err, smagent.ErrAgentUnreachable) && errors.Is(err, context.DeadlineExceeded)
			},
			want: "smagent.ErrAgentUnreachable with context.DeadlineExceeded",
		},
	}
	// Each case has its own endpoint, agent and role, and spends most of
	// its time waiting (for the refresh to meet the failure, for the
	// rotation wait): they run in parallel.
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testAgentFault(t, tc.opts, tc.breakIt, tc.cause, tc.want)
		})
	}
}

func testAgentFault(t *testing.T, agentOpts []awssmtest.AgentOption, breakIt func(*testing.T, *env, *awssmtest.Agent) func(), cause func(error) bool, wantCause string) {
	const (
		workers      = 16
		rotationWait = 2 * time.Second
		callers      = 16
	)
	e := newEnv(t)
	role, pw := e.newRole(t, "app")
	id := "prod/" + role
	e.logOnFailure(t, id)
	e.sm.CreateSecret(id, e.secretJSON(t, role, pw, nil))
	agent := e.newAgent(t, agentOpts...)
	c, db := e.newAgentApp(t, agent, id, nil,
		rotating.WithRefreshInterval(100*time.Millisecond),
		rotating.WithFetchTimeout(500*time.Millisecond),
		rotating.WithBackoff(50*time.Millisecond, 400*time.Millisecond),
		rotating.WithRotationWait(rotationWait))
	db.SetConnMaxLifetime(50 * time.Millisecond) // new logins all the time

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	table := createTable(ctx, t, db)
	load := startLoad(ctx, db, table, workers, 100_000, 10*time.Millisecond)
	load.waitAcks(ctx, t, workers, "the first inserts")

	before := c.Stats()
	cleanup := breakIt(t, e, agent)
	defer cleanup()
	began := time.Now()
	testkit.WaitFor(ctx, t, 20*time.Second, "the background refresh to meet the failing agent", func() bool {
		return c.Stats().FetchErrors >= before.FetchErrors+2 && time.Since(began) >= time.Second
	})
	_ = testkit.Sleep(ctx, 500*time.Millisecond)
	load.finish()
	res := load.check(ctx, t, e.pg)
	during := c.Stats()
	if during.CredentialVersion != before.CredentialVersion || during.AuthFailures != before.AuthFailures {
		t.Errorf("the failing agent disturbed the working credential: version %q -> %q, rejected logins %d -> %d",
			before.CredentialVersion, during.CredentialVersion, before.AuthFailures, during.AuthFailures)
	}

	// The cached password dies as well.
	newPW := pgtest.RandomPassword(t)
	e.remember(newPW)
	if err := e.pg.SetPassword(ctx, role, newPW); err != nil {
		t.Fatalf("ALTER ROLE: %v", err)
	}
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			conn, err := c.Connect(cctx)
			if conn != nil {
				_ = conn.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	problems := map[string]int{}
	var order []string
	for _, err := range errs {
		for _, p := range connectErrorProblems(e, err, id, cause, wantCause) {
			if problems[p]++; problems[p] == 1 {
				order = append(order, p)
			}
		}
		if err != nil {
			var se *smagent.Error
			if !errors.As(err, &se) || se.SecretID != id {
				problems["no *smagent.Error naming the secret in the error"]++
			}
		}
	}
	for _, p := range order {
		t.Errorf("%d of %d concurrent Connects: %s", problems[p], callers, p)
	}
	msg := "<nil>"
	if errs[0] != nil {
		msg = errs[0].Error()
	}
	t.Logf("%s: while the cached credential worked: %v, fetch errors %d; after ALTER ROLE: %d of %d concurrent Connects failed; the error: %s",
		t.Name(), res, during.FetchErrors-before.FetchErrors, countErrs(errs), callers, msg)
	e.assertNoPassword(t, "the application's logs", e.logs.String())
}
