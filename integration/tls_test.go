package integration

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit/drivers"
	"github.com/pgrotate/rotating/secrets"
)

// The tests in this file run against pgtest.SharedTLS: a server that takes
// TCP logins over TLS only, as production does, reached with
// sslmode=verify-full and the test CA.

// tlsDSN returns a key=value DSN for srv with the endpoint and the
// verify-full parameters only; user and password come from the source.
func tlsDSN(srv *pgserver.Server) string {
	return fmt.Sprintf("host=%s port=%d dbname=postgres %s", srv.Host, srv.Port, srv.SSLParams())
}

// sessionTLS reports whether the session that runs the query is encrypted,
// as the server sees it, and with which protocol version.
func sessionTLS(ctx context.Context, db *sql.DB) (ssl bool, version string, err error) {
	var v sql.NullString
	err = db.QueryRowContext(ctx, "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl, &v)
	return ssl, v.String, err
}

// createTLSLoadTable is createLoadTable with one more column, filled by the
// server on every insert with whether the inserting session is encrypted,
// so that the table itself proves each acknowledged statement ran over
// TLS. The function and the table belong to the test's role.
func createTLSLoadTable(ctx context.Context, t testing.TB, db *sql.DB) string {
	t.Helper()
	table := pgtest.UniqueName(t, "t")
	mustExec(ctx, t, db, "CREATE FUNCTION "+table+"_tls() RETURNS boolean LANGUAGE sql STABLE "+
		"AS 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'")
	mustExec(ctx, t, db, "CREATE TABLE "+table+" (id bigserial PRIMARY KEY, worker int NOT NULL, seq int NOT NULL, "+
		"tls boolean DEFAULT "+table+"_tls())")
	return table
}

// TestTLSLogin logs in to the TLS server with the right CA under both names
// its certificate holds, with a CA that did not sign it, and without TLS. A
// certificate that does not verify is a configuration error, not a rotated
// password: Connect must fail at once with the TLS error, without calling
// the store again. It runs through each driver.
func TestTLSLogin(t *testing.T) {
	srv := pgtest.SharedTLS(t)
	role, pw := pgtest.NewRole(t, srv)
	for _, d := range drivers.All {
		t.Run(d.Name, func(t *testing.T) { testTLSLogin(t, d, srv, role, pw) })
	}
}

func testTLSLogin(t *testing.T, d drivers.Driver, srv *pgserver.Server, role, pw string) {

	otherCA, err := pgserver.NewCA("a CA that did not sign the server's certificate")
	if err != nil {
		t.Fatal(err)
	}
	otherRoot := filepath.Join(t.TempDir(), "other-root.crt")
	if err := otherCA.WriteCert(otherRoot); err != nil {
		t.Fatal(err)
	}
	// swap returns tlsDSN(srv) with one piece of text replaced.
	swap := func(old, new string) string {
		dsn := tlsDSN(srv)
		if !strings.Contains(dsn, old) {
			t.Fatalf("the TLS DSN lacks %q", old)
		}
		return strings.Replace(dsn, old, new, 1)
	}

	cases := []struct {
		name string
		dsn  string
		// rotationWait is the connector's (default
		// rotating.DefaultRotationWait): how long a Connect whose login was
		// rejected looks for a working credential.
		rotationWait time.Duration
		// wantErr, if set, says what is wrong with the login's error (""
		// if nothing); if nil the login must succeed over TLS.
		wantErr func(err error) string
		// notRejected: the error must not count as a rejected credential,
		// so the store is called once and Connect does not wait for a
		// rotation.
		notRejected bool
	}{
		{name: "verify-full/127.0.0.1", dsn: tlsDSN(srv)},
		{name: "verify-full/localhost", dsn: swap("host=127.0.0.1", "host=localhost")},
		{name: "wrong-CA", dsn: swap(srv.RootCertPath(), otherRoot), notRejected: true, wantErr: func(err error) string {
			var verr *tls.CertificateVerificationError
			var unknown x509.UnknownAuthorityError
			if !errors.As(err, &verr) || !errors.As(err, &unknown) {
				return "want a *tls.CertificateVerificationError for an unknown authority"
			}
			if code := d.SQLState(err); code != "" {
				return "holds a server error (" + code + "): the login got past the TLS handshake"
			}
			return ""
		}},
		// pg_hba.conf's refusal is SQLSTATE 28000, which by default counts as
		// a rejected credential (rotating.DefaultAuthErrorCodes), so this
		// Connect re-checks the store until the rotation wait ends. That is
		// the connector's policy for pg_hba rejects, not checked here; a
		// short wait keeps the case fast.
		{name: "sslmode=disable", dsn: swap(srv.SSLParams(), "sslmode=disable"), rotationWait: time.Second, wantErr: func(err error) string {
			if d.SQLState(err) != "28000" || !strings.Contains(err.Error(), "no encryption") {
				return "want the server's 28000 pg_hba.conf rejection of an unencrypted login, as a " + d.ErrorType
			}
			return ""
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			src := newCountingSource(tc.name, secrets.Credential{Username: role, Password: pw})
			rotationWait := cmp.Or(tc.rotationWait, rotating.DefaultRotationWait)
			c := newConnector(t, tc.dsn, src, d.With(rotating.WithRotationWait(rotationWait))...)
			db := openDB(t, c)

			start := time.Now()
			ssl, version, err := sessionTLS(ctx, db)
			elapsed := time.Since(start)
			st := c.Stats()
			t.Logf("%s: after %v: ssl %v %s, error %v; %d fetches, %d dials, %d rejected",
				tc.name, elapsed.Round(time.Millisecond), ssl, version, err, src.count(), st.Dials, st.AuthFailures)
			if err != nil {
				assertNoSecret(t, "the login's error", fmt.Sprintf("%v %+v", err, err), pw)
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("login: %v", err)
				}
				if !ssl {
					t.Error("pg_stat_ssl.ssl = false: the session is not encrypted")
				}
				if n := src.count(); n != 1 || st.Dials != 1 || st.AuthFailures != 0 {
					t.Errorf("%d fetches, %d dials, %d rejected; want 1, 1, 0", n, st.Dials, st.AuthFailures)
				}
				return
			}
			if err == nil {
				t.Fatalf("login succeeded (ssl = %v); want it refused", ssl)
			}
			if problem := tc.wantErr(err); problem != "" {
				t.Errorf("login error %v: %s", err, problem)
			}
			if !tc.notRejected {
				return
			}
			if errors.Is(err, rotating.ErrCredentialRejected) {
				t.Errorf("login error %v matches rotating.ErrCredentialRejected", err)
			}
			if n := src.count(); n != 1 {
				t.Errorf("%d fetches from the store, want 1: a TLS error must not send Connect looking for a new credential", n)
			}
			if st.AuthFailures != 0 || st.Dials != 1 || st.DialErrors != 1 {
				t.Errorf("Stats(): %d dials, %d failed, %d rejected; want 1, 1, 0", st.Dials, st.DialErrors, st.AuthFailures)
			}
			if elapsed >= rotationWait/2 {
				t.Errorf("login failed after %v: it waited for a rotation (rotation wait %v)", elapsed, rotationWait)
			}
		})
	}
}
