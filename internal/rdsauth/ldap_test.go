package rdsauth_test

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/rdsauth"
	"github.com/pgrotate/rotating/internal/testkit/drivers"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestPostgreSQLAsksTheLDAPServer routes a role's logins on a real
// PostgreSQL server through the LDAP server and its Verifier: a valid
// token logs in, through either driver; an expired one, or one of a
// revoked key, is refused by PostgreSQL with 28000, as RDS refuses it.
func TestPostgreSQLAsksTheLDAPServer(t *testing.T) {
	pg := pgtest.Server(t)
	role, password := pgtest.NewRole(t, pg)
	ep := net.JoinHostPort(pg.Host, strconv.Itoa(pg.Port))
	v := rdsauth.NewVerifier(ep, region)
	v.Allow(keys)
	ldap, err := rdsauth.StartLDAP(v.Check)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ldap.Close)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := ldap.Route(ctx, pg, role); err != nil {
		t.Fatal(err)
	}

	good := token(t, ep, region, role, keys)
	if len(good) < 1000 {
		t.Fatalf("the token is %d bytes; the test wants a long one (a session token)", len(good))
	}
	login := func(d drivers.Driver, pw string) error {
		db, err := sql.Open(d.SQLName, pg.DSN(role, pw, "postgres"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var who string
		return db.QueryRowContext(ctx, "SELECT current_user").Scan(&who)
	}
	for _, d := range drivers.All {
		t.Run(d.Name, func(t *testing.T) {
			binds := ldap.Binds()
			if err := login(d, good); err != nil {
				t.Fatalf("a valid %d-byte token: %v", len(good), err)
			}
			if ldap.Binds() != binds+1 {
				t.Errorf("the login made %d binds, want 1", ldap.Binds()-binds)
			}
			expired := tokenAt(t, ep, role, keys, time.Now().Add(-16*time.Minute))
			for name, tc := range map[string]struct {
				pw   string
				want error
			}{
				"expired":             {expired, rdsauth.ErrExpired},
				"the role's password": {password, rdsauth.ErrMalformed},
			} {
				err := login(d, tc.pw)
				if code := d.SQLState(err); code != "28000" || !strings.Contains(err.Error(), "LDAP authentication failed") {
					t.Errorf("%s: %v (SQLSTATE %q), want 28000 LDAP authentication failed", name, err, code)
				}
				if !errors.Is(ldap.LastRefusal(), tc.want) {
					t.Errorf("%s: refused because %v, want %v", name, ldap.LastRefusal(), tc.want)
				}
			}
		})
	}
	v.Revoke(keys.AccessKeyID)
	if err := login(drivers.LibPQ, good); drivers.LibPQ.SQLState(err) != "28000" || !errors.Is(ldap.LastRefusal(), rdsauth.ErrUnknownKey) {
		t.Errorf("a token of a revoked key: %v (%v), want 28000 for an unknown key", err, ldap.LastRefusal())
	}
}
