package pgxv5_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/pgxv5"
	"github.com/pgrotate/rotating/secrets"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func openDB(t *testing.T, dsn string, src secrets.Source, opts ...rotating.Option) (*rotating.Connector, *sql.DB) {
	t.Helper()
	c, err := pgxv5.NewConnector(dsn, src, opts...)
	if err != nil {
		t.Fatalf("NewConnector: %v", err)
	}
	db := sql.OpenDB(c)
	t.Cleanup(func() { _ = db.Close() })
	return c, db
}

func TestLoginThroughPgx(t *testing.T) {
	srv := pgtest.Shared(t)
	role, pw := pgtest.NewRole(t, srv)
	for name, dsn := range map[string]string{
		"key=value": endpointDSN(srv),
		"URL":       fmt.Sprintf("postgres://%s:%d/postgres?sslmode=disable", srv.Host, srv.Port),
	} {
		t.Run(name, func(t *testing.T) {
			_, db := openDB(t, dsn, secrets.Static(secrets.Credential{Username: role, Password: pw}))
			var user string
			if err := db.QueryRowContext(t.Context(), "SELECT current_user").Scan(&user); err != nil || user != role {
				t.Fatalf("current_user = %q, %v; want %q", user, err, role)
			}
			conn, err := db.Conn(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if err := conn.Raw(func(dc any) error {
				if _, ok := dc.(*stdlib.Conn); !ok {
					return fmt.Errorf("Raw gives %T, want *stdlib.Conn", dc)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// PGPASSWORD and a passfile are read by pgx.ParseConfig; neither may supply
// the login.
func TestPgxEnvironmentNeverSuppliesTheLogin(t *testing.T) {
	srv := pgtest.Shared(t)
	role, pw := pgtest.NewRole(t, srv)
	sabotageEnvironment(t, pw)
	dsn := endpointDSN(srv)
	c, db := openDB(t, dsn, secrets.Static(secrets.Credential{Username: role, Password: "wrong-" + pw}),
		rotating.WithRotationWait(300*time.Millisecond))
	err := db.PingContext(t.Context())
	var pgErr *pgconn.PgError
	if !errors.Is(err, rotating.ErrCredentialRejected) || !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("Ping with a wrong credential and the right PGPASSWORD = %v, want the 28P01 rejection", err)
	}
	if strings.Contains(fmt.Sprintf("%v %+v", err, err), pw) {
		t.Fatal("the error contains a password")
	}
	var connErr *pgconn.ConnectError
	if !errors.As(err, &connErr) || connErr.Config == nil || connErr.Config.Password != "" {
		t.Fatal("the rejection's *pgconn.ConnectError is missing, or its Config still holds the password")
	}
	if st := c.Stats(); st.AuthFailures == 0 {
		t.Fatalf("Stats = %+v", st)
	}
	// An empty password is refused before any login.
	c2, db2 := openDB(t, dsn, secrets.Static(secrets.Credential{Username: role}))
	if err := db2.PingContext(t.Context()); !errors.Is(err, secrets.ErrEmptyPassword) || c2.Stats().Dials != 0 {
		t.Fatalf("Ping with an empty password = %v (dials %d), want ErrEmptyPassword and no login", err, c2.Stats().Dials)
	}
}

func TestPgxMultiHostErrorsReachThePgError(t *testing.T) {
	srv := pgtest.Shared(t)
	role, pw := pgtest.NewRole(t, srv)
	stalled := testkit.StartStalledServer(t)
	stalled.Stop() // a port that refuses connections
	dsn := fmt.Sprintf("host=127.0.0.1,%s port=%d,%d dbname=postgres sslmode=disable connect_timeout=2",
		srv.Host, stalled.Port(), srv.Port)
	_, db := openDB(t, dsn, secrets.Static(secrets.Credential{Username: role, Password: "wrong-" + pw}),
		rotating.WithRotationWait(300*time.Millisecond))
	err := db.PingContext(t.Context())
	var pgErr *pgconn.PgError
	var connErr *pgconn.ConnectError
	if !errors.Is(err, rotating.ErrCredentialRejected) || !errors.As(err, &pgErr) || pgErr.Code != "28P01" || !errors.As(err, &connErr) {
		t.Fatalf("multi-host Ping = %v, want the 28P01 *pgconn.PgError inside a *pgconn.ConnectError", err)
	}
	if connErr.Config == nil || connErr.Config.Password != "" {
		t.Fatal("the *pgconn.ConnectError's Config still holds the password")
	}
}

func TestPgxLoginToAStalledServerIsBoundedByTheRotationWait(t *testing.T) {
	stalled := testkit.StartStalledServer(t)
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d dbname=postgres sslmode=disable", stalled.Port())
	_, db := openDB(t, dsn, secrets.Static(secrets.Credential{Username: "app", Password: "p1"}),
		rotating.WithRotationWait(300*time.Millisecond))
	start := time.Now()
	err := db.PingContext(context.Background())
	if waited := time.Since(start); err == nil || waited < 250*time.Millisecond || waited > 5*time.Second {
		t.Fatalf("Ping against a stalled server = %v after %v, want an error after about 300ms", err, waited)
	}
}

func TestPgxSessionsRetireAndRawStillReachesPgx(t *testing.T) {
	srv := pgtest.Shared(t)
	role, pw := pgtest.NewRole(t, srv)
	dsn := endpointDSN(srv)
	end := time.Now().Add(time.Hour)
	_, db := openDB(t, dsn, secrets.Static(secrets.Credential{Username: role, Password: pw, SessionsEnd: end}))
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Raw(func(dc any) error {
		if _, ok := dc.(*stdlib.Conn); ok {
			return errors.New("a connection of a credential whose sessions end is not wrapped")
		}
		pc, ok := rotating.DriverConn(dc).(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("DriverConn gives %T, want *stdlib.Conn", rotating.DriverConn(dc))
		}
		return pc.Conn().Ping(t.Context()) // *pgx.Conn, for CopyFrom and the like
	}); err != nil {
		t.Fatal(err)
	}
}

// sabotageEnvironment puts a password that works into PGPASSWORD and a
// passfile, both of which pgx.ParseConfig reads: neither may supply a login.
func sabotageEnvironment(t *testing.T, pw string) {
	t.Helper()
	passfile := filepath.Join(t.TempDir(), "pgpass")
	if err := os.WriteFile(passfile, []byte("*:*:*:*:"+pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGPASSWORD", pw)
	t.Setenv("PGPASSFILE", passfile)
}
