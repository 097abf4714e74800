package smagent_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
	"github.com/pgrotate/rotating/secrets/awssm/smagent"
)

// These tests run rotating connectors over the smagent source, the
// awssmtest agent and its store, and a fake database, on synctest's fake
// clock: each connector stands for one process of the host, all of them
// reading through one agent.

const testDSN = "host=db.example port=5432 dbname=app sslmode=disable"

// host is one agent, its store, a fake database and the connectors of the
// host's processes.
type host struct {
	srv   *awssmtest.Server
	agent *awssmtest.Agent
	db    *testkit.FakeDB
	procs []*rotating.Connector
}

// newHost makes n processes reading secret id through one agent (made
// with opts), each with a connector of its own. Call it inside the
// synctest bubble; everything is closed when the test ends.
func newHost(t *testing.T, n int, id, user, password string, agentOpts []awssmtest.AgentOption, connOpts ...rotating.Option) *host {
	t.Helper()
	h := &host{srv: awssmtest.NewServer(), db: testkit.NewFakeDB(user, password)}
	t.Cleanup(h.srv.Close)
	h.srv.CreateSecret(id, fmt.Sprintf(`{"username":%q,"password":%q}`, user, password))
	h.agent = h.srv.NewAgent(agentOpts...)
	t.Cleanup(h.agent.Close)
	for range n {
		src, err := smagent.New(id, smagent.WithHTTPClient(h.agent.InProcessClient()), smagent.WithToken(h.agent.Token()))
		if err != nil {
			t.Fatal(err)
		}
		base := []rotating.Option{
			rotating.WithNewConnector(h.db.Connector),
			rotating.WithBackoff(10*time.Millisecond, 80*time.Millisecond),
			rotating.WithRotationWait(10 * time.Second),
		}
		c, err := rotating.NewConnector(testDSN, src, append(base, connOpts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		h.procs = append(h.procs, c)
	}
	return h
}

// connectAll makes callers Connects at once on each process in turn, and
// fails the test for any error.
func (h *host) connectAll(t *testing.T, callers int) {
	t.Helper()
	for i, c := range h.procs {
		var wg sync.WaitGroup
		errs := make(chan error, callers)
		for range callers {
			wg.Go(func() {
				conn, err := c.Connect(context.Background())
				if err != nil {
					errs <- err
					return
				}
				conn.Close()
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("process %d: Connect: %v", i, err)
		}
	}
}

// rotateSingleUser plays AWS's single-user rotation up to setSecret: a
// pending version with a new password, which the database now requires.
// finish is finishSecret.
func (h *host) rotateSingleUser(id, user string, k int) (version string, finish func()) {
	pw := fmt.Sprintf("pw-rotation-%d", k)
	version = h.srv.PutValue(id, fmt.Sprintf(`{"username":%q,"password":%q}`, user, pw), awssmtest.StagePending)
	h.db.SetPassword(user, pw)
	return version, func() { h.srv.MoveStage(id, awssmtest.StageCurrent, version) }
}

// TestSingleUserRotationThroughTheAgent runs AWS single-user rotations for
// four processes of one host, in the setSecret-finishSecret window, at two
// paces: an hour apart (longer than the agent's 300 s TTL, as rotations
// are) and a minute apart (within it, so that the agent's copies of both
// labels are the previous rotation's). No Connect fails or waits for the
// TTL; the agent's calls to Secrets Manager are counted per rotation for
// the whole host.
func TestSingleUserRotationThroughTheAgent(t *testing.T) {
	for _, pace := range []time.Duration{time.Hour, time.Minute} {
		t.Run(fmt.Sprintf("every %v", pace), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const procs, rotations = 4, 5
				h := newHost(t, procs, "s", "app", "pw-initial", nil)
				h.connectAll(t, 8)
				for k := 1; k <= rotations; k++ {
					time.Sleep(pace)
					h.agent.ResetStats()
					version, finish := h.rotateSingleUser("s", "app", k)
					start := time.Now()
					h.connectAll(t, 8)
					took := time.Since(start)
					st := h.agent.Stats()
					t.Logf("rotation %d (every %v): %d processes: agent requests %d, refreshNow %d, store GetSecretValue %d, DescribeSecret %d; recovery took %v (fake clock)",
						k, pace, procs, st.Requests, st.RefreshNow, st.GetSecretValueCalls, st.DescribeSecretCalls, took)
					// Each process: one Fetch and one FetchPending, each one
					// request, or two when the agent's copy was the rejected
					// credential.
					if st.Requests < 2*procs || st.Requests > 4*procs {
						t.Errorf("rotation %d: %d agent requests for %d processes, want 2 to 4 each", k, st.Requests, procs)
					}
					// Secrets Manager is called at most once per label for the
					// whole host; refreshNow only when a copy was stale, and
					// then by the first process only.
					if st.GetSecretValueCalls < 1 || st.GetSecretValueCalls > 2 || st.RefreshNow > 2 {
						t.Errorf("rotation %d: %d GetSecretValue calls and %d refreshNow requests for the host, want 1 or 2 and at most 2", k, st.GetSecretValueCalls, st.RefreshNow)
					}
					if pace > awssmtest.DefaultAgentTTL && st.RefreshNow != 0 {
						t.Errorf("rotation %d: %d refreshNow requests with the agent's copies older than its TTL, want 0", k, st.RefreshNow)
					}
					if took > time.Second {
						t.Errorf("rotation %d: the processes took %v to find the new credential", k, took)
					}
					for i, c := range h.procs {
						if v := c.Stats().CredentialVersion; v != version {
							t.Errorf("rotation %d: process %d uses version %s, want %s", k, i, v, version)
						}
					}
					finish()
				}
				if r := h.db.Rejections(); r > int64(procs*rotations*8) {
					t.Errorf("%d rejected logins", r)
				}
			})
		})
	}
}

// TestAlternatingUsersRotationThroughTheAgent: the username flips with
// every rotation and the credential a process holds dies one rotation
// later; each process follows without a failed Connect.
func TestAlternatingUsersRotationThroughTheAgent(t *testing.T) {
	for _, pace := range []time.Duration{time.Hour, time.Minute} {
		t.Run(fmt.Sprintf("every %v", pace), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const procs, rotations = 4, 6
				h := newHost(t, procs, "s", "app", "pw-initial", nil)
				h.connectAll(t, 8)
				users := []string{"app", "app_clone"}
				for k := 1; k <= rotations; k++ {
					time.Sleep(pace)
					h.agent.ResetStats()
					user, pw := users[k%2], fmt.Sprintf("pw-rotation-%d", k)
					// setSecret: CREATE ROLE or ALTER ROLE of the other user,
					// which kills the version two rotations old.
					v := h.srv.PutValue("s", fmt.Sprintf(`{"username":%q,"password":%q}`, user, pw), awssmtest.StagePending)
					h.db.SetPassword(user, pw)
					h.connectAll(t, 8)
					h.srv.MoveStage("s", awssmtest.StageCurrent, v)
					h.connectAll(t, 8)
					st := h.agent.Stats()
					t.Logf("rotation %d (every %v): agent requests %d, refreshNow %d, store GetSecretValue %d, DescribeSecret %d",
						k, pace, st.Requests, st.RefreshNow, st.GetSecretValueCalls, st.DescribeSecretCalls)
					if st.Requests > 4*procs || st.GetSecretValueCalls > 2 || st.RefreshNow > 2 {
						t.Errorf("rotation %d: %+v, want at most 4 requests per process and 2 store calls", k, st)
					}
				}
			})
		})
	}
}

// TestRunbookRotationThroughTheAgent: the DBA changes the password, and
// updates the secret 3 s later. The agent's copy of the old one is younger
// than its TTL; the processes find the new credential as soon as Secrets
// Manager has it, not when the TTL runs out, with one refreshNow request
// per store step of each process meanwhile.
func TestRunbookRotationThroughTheAgent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const procs = 3
		h := newHost(t, procs, "s", "app", "pw-initial", nil)
		h.connectAll(t, 4)
		time.Sleep(10 * time.Second)
		h.agent.ResetStats()
		h.db.SetPassword("app", "pw-runbook")
		time.AfterFunc(3*time.Second, func() { h.srv.PutValue("s", `{"username":"app","password":"pw-runbook"}`) })
		start := time.Now()
		h.connectAll(t, 4) // in turn: the first process waits for the update
		took := time.Since(start)
		st := h.agent.Stats()
		var steps uint64
		for _, c := range h.procs {
			s := c.Stats()
			steps += s.Fetches + s.PendingFetches
		}
		t.Logf("runbook rotation: recovered after %v (fake clock), agent requests %d, refreshNow %d, store GetSecretValue %d; the connectors' store steps %d",
			took, st.Requests, st.RefreshNow, st.GetSecretValueCalls, steps)
		if took < 3*time.Second || took > 3*time.Second+500*time.Millisecond {
			t.Errorf("recovered after %v, want just after the 3 s update (far from the 300 s TTL)", took)
		}
		if st.RefreshNow < 10 || st.RefreshNow > int64(steps) {
			t.Errorf("%d refreshNow requests for %d store calls of the connectors, want about one each", st.RefreshNow, steps)
		}
	})
}

// TestScheduledRefreshUsesTheAgentsCache: with a background refresh every
// 30 s, four processes make 80 requests in 10 minutes, all served by the
// agent's cache, which calls Secrets Manager once and then DescribeSecret
// once per TTL.
func TestScheduledRefreshUsesTheAgentsCache(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const procs = 4
		h := newHost(t, procs, "s", "app", "pw-initial", nil, rotating.WithRefreshInterval(30*time.Second))
		h.connectAll(t, 1)
		time.Sleep(10*time.Minute + time.Second)
		synctest.Wait()
		st := h.agent.Stats()
		t.Logf("10 minutes, %d processes refreshing every 30 s: agent requests %d, refreshNow %d, store GetSecretValue %d, DescribeSecret %d",
			procs, st.Requests, st.RefreshNow, st.GetSecretValueCalls, st.DescribeSecretCalls)
		// 20 refreshes per process (±10 % jitter), plus the first Fetch.
		if st.Requests < procs*18 || st.Requests > procs*24 {
			t.Errorf("%d agent requests, want about %d", st.Requests, procs*21)
		}
		if st.RefreshNow != 0 || st.GetSecretValueCalls != 1 || st.DescribeSecretCalls < 1 || st.DescribeSecretCalls > 2 {
			t.Errorf("%+v, want no refreshNow, one GetSecretValue and one DescribeSecret per 300 s", st)
		}
	})
}

// When the agent is down, the cached credential keeps working; when it
// dies too, Connect fails with an *AuthError that wraps the agent's error.
func TestAgentDownThroughTheConnector(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHost(t, 1, "s", "app", "pw-initial", nil, rotating.WithRefreshInterval(time.Second), rotating.WithRotationWait(2*time.Second))
		h.connectAll(t, 1)
		h.agent.InjectFault(awssmtest.Fault{Status: 503, Error: "ServiceUnavailable", Message: "agent restarting"})
		time.Sleep(5 * time.Second)
		h.connectAll(t, 8)
		c := h.procs[0]
		if st := c.Stats(); st.FetchErrors < 3 {
			t.Errorf("%d fetch errors, want the background refreshes to have failed", st.FetchErrors)
		}
		h.db.SetPassword("app", "pw-changed")
		_, err := c.Connect(context.Background())
		var ae *rotating.AuthError
		if !errors.As(err, &ae) {
			t.Fatalf("Connect after the credential died: %v, want *rotating.AuthError", err)
		}
		agentErr := wantAs[*smagent.AgentError](t, err)
		if agentErr.StatusCode != 503 || agentErr.Code != "ServiceUnavailable" {
			t.Errorf("the agent's error: %+v", agentErr)
		}
		wantAs[*smagent.Error](t, err)
		wantErrorSecretFree(t, err, h.agent.Token(), "pw-initial", "pw-changed")
	})
}
