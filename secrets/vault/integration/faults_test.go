package vaultintegration

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/internal/testkit/apptest"
	"github.com/pgrotate/rotating/internal/testkit/drivers"
	"github.com/pgrotate/rotating/secrets/vault"
	"github.com/pgrotate/rotating/secrets/vault/vaulttest"
)

// TestVaultFaults keeps an application on a static role running while
// Vault is sealed, down, answers 403 permission denied, or answers later
// than the connector's fetch timeout, each in a subtest of its own with a
// Vault server of its own. A background refresh every 100 ms makes the
// connector call Vault during the fault; the cached password still works
// (nothing expires: a static role's password lives until its rotation), so
// no statement may fail and the credential must not change. Then the
// password is changed in the database behind Vault's back while Vault is
// still out: concurrent Connects must each give up after the rotation
// wait with a *rotating.AuthError that holds the database's rejection and
// Vault's error (a *vault.Error naming the read, matching the fault's
// sentinel).
func TestVaultFaults(t *testing.T) {
	t.Parallel()
	faults := []struct {
		name        string
		start, stop func(*vaulttest.Server) error
		// cause says what is wrong with the error's Vault part ("" if
		// nothing).
		cause func(err error, ve *vault.Error) string
	}{
		{"sealed",
			func(s *vaulttest.Server) error { s.Seal(); return nil },
			func(s *vaulttest.Server) error { s.Unseal(); return nil },
			func(err error, ve *vault.Error) string {
				if !errors.Is(err, vault.ErrSealed) || ve.StatusCode != 503 {
					return "want Vault's 503, errors.Is(err, vault.ErrSealed)"
				}
				return ""
			}},
		{"down",
			func(s *vaulttest.Server) error { s.Down(); return nil },
			func(s *vaulttest.Server) error { return s.Up() },
			func(err error, ve *vault.Error) string {
				if !errors.Is(err, syscall.ECONNREFUSED) || ve.StatusCode != 0 {
					return "want no answer from Vault, errors.Is(err, syscall.ECONNREFUSED)"
				}
				return ""
			}},
		{"permission_denied",
			func(s *vaulttest.Server) error {
				s.InjectFault(vaulttest.OpStaticCreds, vaulttest.Fault{Status: 403})
				return nil
			},
			func(s *vaulttest.Server) error { s.ClearFaults(); return nil },
			func(err error, ve *vault.Error) string {
				if !errors.Is(err, vault.ErrPermissionDenied) || ve.StatusCode != 403 {
					return "want Vault's 403, errors.Is(err, vault.ErrPermissionDenied)"
				}
				return ""
			}},
		{"slow",
			func(s *vaulttest.Server) error {
				s.InjectFault(vaulttest.OpStaticCreds, vaulttest.Fault{Latency: 3 * faultFetchTimeout})
				return nil
			},
			func(s *vaulttest.Server) error { s.ClearFaults(); return nil },
			func(err error, ve *vault.Error) string {
				if !errors.Is(err, context.DeadlineExceeded) || ve.StatusCode != 0 {
					return "want the read cut off by the fetch timeout, errors.Is(err, context.DeadlineExceeded)"
				}
				return ""
			}},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			testVaultFault(t, f.start, f.stop, f.cause)
		})
	}
}

// The connector's settings of TestVaultFaults: a fetch timeout the slow
// fault exceeds, a background refresh that meets each fault many times,
// and a rotation wait for the Connects after the password died that is
// shorter than the default (10 s) but leaves a login on a loaded machine
// the seconds it may take: the rotation wait bounds every login.
const (
	faultFetchTimeout = 500 * time.Millisecond
	faultRefresh      = 100 * time.Millisecond
	faultRotationWait = 5 * time.Second
)

func testVaultFault(t *testing.T, start, stop func(*vaulttest.Server) error, cause func(error, *vault.Error) string) {
	const workers, faultFor, connects = 16, 1500 * time.Millisecond, 8
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	e := newStaticEnv(t, time.Hour)
	c, db := e.open(t, e.src,
		rotating.WithFetchTimeout(faultFetchTimeout),
		rotating.WithRefreshInterval(faultRefresh),
		rotating.WithBackoff(50*time.Millisecond, 400*time.Millisecond),
		rotating.WithRotationWait(faultRotationWait))
	db.SetMaxIdleConns(workers)
	db.SetConnMaxLifetime(300 * time.Millisecond) // new logins all the time

	load := testkit.StartInserts(ctx, db, e.table, workers, 1<<30, 10*time.Millisecond)
	load.WaitAcks(ctx, t, workers, "the first inserts")
	before, okBefore := c.Stats(), load.OK.Load()
	readsBefore := e.srv.Calls(vaulttest.OpStaticCreds)
	load.TakeSlowest()
	if err := start(e.srv); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	testkit.WaitFor(ctx, t, 30*time.Second, "fetch errors during the fault", func() bool {
		return c.Stats().FetchErrors >= before.FetchErrors+3 && time.Since(began) >= faultFor
	})
	during, readsDuring := c.Stats(), e.srv.Calls(vaulttest.OpStaticCreds)-readsBefore
	faultLasted := time.Since(began)
	load.Finish()
	slowest := load.TakeSlowest()
	res := e.check(ctx, t, load)
	if during.CredentialGeneration != before.CredentialGeneration || during.CredentialChanges != before.CredentialChanges {
		t.Errorf("the credential changed during the fault: generation %d → %d", before.CredentialGeneration, during.CredentialGeneration)
	}

	// The password dies while Vault is still out.
	pw := pgtest.RandomPassword(t)
	e.known.Add(pw)
	if err := e.pg.SetPassword(ctx, e.role, pw); err != nil {
		t.Fatal(err)
	}
	errs, slowestConnect := testkit.ConnectAll(ctx, c, connects, 30*time.Second)
	fastestConnect := slowestConnect
	for _, err := range errs {
		e.noteError(err)
		var ae *rotating.AuthError
		if errors.As(err, &ae) {
			fastestConnect = min(fastestConnect, ae.Waited)
		}
	}
	want := apptest.Rejected{Driver: drivers.LibPQ, Secret: "database/static-creds/app", Secrets: e.known, FetchFailed: true,
		Store: func(err error) []string { return vaultPart(err, cause) }}
	testkit.ReportProblems(t, "concurrent Connects after the password died", errs, want.Problems)
	// Within the rotation wait: a Connect gives up when it ends, not
	// before (the store may yet answer: AuthError.Waited), and not long
	// after.
	if slowestConnect > faultRotationWait+3*time.Second {
		t.Errorf("the slowest Connect returned after %v, want the rotation wait %v (+3 s for a loaded machine)", slowestConnect.Round(time.Millisecond), faultRotationWait)
	}
	after := c.Stats()
	if err := stop(e.srv); err != nil {
		t.Fatal(err)
	}
	t.Logf("fault for %v: %d statements, %d failed, slowest %v; %d fetches, %d fetch errors, %d static-creds requests; credential generation %d → %d\n"+
		"password changed with Vault still out: %d concurrent Connects failed, the shortest wait %v, the slowest return %v (rotation wait %v); %d rejected logins; error: %s",
		faultLasted.Round(time.Millisecond), load.OK.Load()-okBefore+res.Failures, res.Failures, slowest.Round(time.Millisecond),
		during.Fetches-before.Fetches, during.FetchErrors-before.FetchErrors, readsDuring,
		before.CredentialGeneration, during.CredentialGeneration,
		connects, fastestConnect.Round(time.Millisecond), slowestConnect.Round(time.Millisecond), faultRotationWait,
		after.AuthFailures-during.AuthFailures, e.known.Scrub(errText(errs[0])))
}

// vaultPart lists what is missing from Vault's part of err, the error of a
// Connect whose password died while Vault was out (apptest.Rejected checks
// the rest): a *vault.Error naming the read, with the fault's cause, and a
// wait of the whole rotation wait.
func vaultPart(err error, cause func(error, *vault.Error) string) []string {
	var problems []string
	var ae *rotating.AuthError
	if errors.As(err, &ae) && ae.Waited < faultRotationWait {
		problems = append(problems, fmt.Sprintf("gave up after %v, before the rotation wait (%v) ended", ae.Waited.Round(time.Millisecond), faultRotationWait))
	}
	var ve *vault.Error
	switch {
	case !errors.As(err, &ve):
		return append(problems, "no *vault.Error in the error")
	case ve.Op != vault.OpRead || ve.Path != "database/static-creds/app":
		problems = append(problems, "the *vault.Error does not name the read of database/static-creds/app")
	}
	if p := cause(err, ve); p != "" {
		problems = append(problems, p)
	}
	return problems
}

// errText is err's text, "<nil>" for none.
func errText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
