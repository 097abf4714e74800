package rdsiam_test

import (
	"context"
	"database/sql/driver"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/pgxv5"
	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/rdsiam"
)

// login is what a driver's configuration holds for one login.
type login struct {
	user, password, host string
	port                 int
}

// errCaptured ends a Connect once the driver's configuration is captured.
var errCaptured = errors.New("configuration captured")

// capturedLogin returns the login a Connector for dsn and src hands to the
// driver: lib/pq's pq.Config through WithNewConnector, or the
// *pgx.ConnConfig pgx's stdlib connector would log in with, through
// OptionBeforeConnect (which sees the configuration the login uses).
func capturedLogin(t *testing.T, pgx bool, dsn string, src secrets.Source) (login, error) {
	t.Helper()
	var (
		got login
		opt rotating.Option
	)
	if pgx {
		opt = rotating.WithDriver(pgxv5.Driver(stdlib.OptionBeforeConnect(func(_ context.Context, cfg *pgxConnConfig) error {
			got = login{cfg.User, cfg.Password, cfg.Host, int(cfg.Port)}
			return errCaptured
		})))
	} else {
		opt = rotating.WithNewConnector(func(cfg pq.Config) (driver.Connector, error) {
			got = login{cfg.User, cfg.Password, cfg.Host, int(cfg.Port)}
			return rotating.ConnectorFunc(func(context.Context) (driver.Conn, error) { return nil, errCaptured }), nil
		})
	}
	c, err := rotating.NewConnector(dsn, src, opt)
	if err != nil {
		return login{}, err
	}
	defer c.Close()
	if _, err := c.Connect(context.Background()); !errors.Is(err, errCaptured) {
		return login{}, err
	}
	return got, nil
}

type pgxConnConfig = pgx.ConnConfig

// The application's DSNs: both syntaxes, with the endpoint left to the
// credential (the token's own host and port) or set by the DSN.
var tokenDSNs = []struct {
	name, dsn   string
	dsnEndpoint bool
}{
	{"key=value", "dbname=app sslmode=disable", false},
	{"URL", "postgres:///app?sslmode=disable", false},
	{"key=value with host", "host=dsn.example port=6543 dbname=app sslmode=require", true},
	{"URL with host", "postgres://dsn.example:6543/app?sslmode=require", true},
}

// FuzzTokenReachesTheDriver builds real tokens (auth.BuildAuthToken, with
// a session token, so they hold % escapes, ?, & and =) for fuzzed users,
// hosts and ports, adds a fuzzed tail (slashes, spaces, quotes, anything
// but NUL), and checks that the exact password, user, host and port reach
// lib/pq's and pgx's configurations through the connector, for a URL and
// a key=value DSN.
func FuzzTokenReachesTheDriver(f *testing.F) {
	for _, host := range []string{testHost, "127.0.0.1", "::1", "db-proxy.proxy-abc.eu-west-1.rds.amazonaws.com"} {
		for _, tail := range []string{"", " / ? & = % ", `'\"`, "%zz&a=b c", "password=x host=evil"} {
			f.Add(host, uint16(5432), testUser, tail)
		}
	}
	f.Add(testHost, uint16(1), "user with spaces", "/")
	f.Add(testHost, uint16(65535), "ünïcødé", "?")
	provider := credentials.NewStaticCredentialsProvider(testAccessKeyID, testSecretKey, testSession)
	f.Fuzz(func(t *testing.T, host string, port uint16, user, tail string) {
		src, err := rdsiam.New(aws.Config{Credentials: provider, Region: testRegion},
			rdsiam.DB{Host: host, Port: int(port), User: user})
		if err != nil {
			assertNoSecret(t, "New's error", err.Error(), testSecretKey, testSession)
			return
		}
		cred, err := src.Fetch(context.Background())
		if err != nil {
			t.Fatalf("Fetch for a DB New accepted: %v", err)
		}
		token := cred.Password
		want := login{user, token + tail, src.DB().Host, src.DB().Port}
		if !strings.HasPrefix(token, net.JoinHostPort(want.host, strconv.Itoa(want.port))+"?") {
			t.Fatal("the token is not for the DB's host:port")
		}
		// The credential exactly as Fetch built it, the tail added.
		cred.Password += tail
		same := secrets.Func(func(context.Context) (secrets.Credential, error) { return cred, nil })
		for _, d := range tokenDSNs {
			for _, viaPGX := range []bool{false, true} {
				got, err := capturedLogin(t, viaPGX, d.dsn, same)
				if strings.IndexByte(tail, 0) >= 0 {
					if !errors.Is(err, secrets.ErrMalformed) {
						t.Fatalf("%s, pgx %v: a NUL in the password: %v, want ErrMalformed", d.name, viaPGX, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s, pgx %v: %v", d.name, viaPGX, err)
				}
				w := want
				if d.dsnEndpoint {
					w.host, w.port = "dsn.example", 6543
				}
				if got != w {
					t.Fatalf("%s, pgx %v: the driver got user %q host %q port %d and a password of %d bytes (equal: %v); want %q %q %d and %d bytes",
						d.name, viaPGX, got.user, got.host, got.port, len(got.password), got.password == w.password,
						w.user, w.host, w.port, len(w.password))
				}
			}
		}
	})
}

func TestDBFromDSN(t *testing.T) {
	for _, k := range []string{"PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGDATABASE", "PGSERVICE", "PGSERVICEFILE"} {
		t.Setenv(k, "") // restored when the test ends
		os.Unsetenv(k)  // lib/pq refuses an empty PGPORT
	}
	for _, tc := range []struct {
		name, dsn string
		env       map[string]string
		want      rdsiam.DB
		err       string
	}{
		{"key=value", "host=" + testHost + " port=5433 user=app dbname=d sslmode=verify-full", nil, rdsiam.DB{Host: testHost, Port: 5433, User: "app"}, ""},
		{"URL", "postgres://app@" + testHost + "/d?sslmode=verify-full", nil, rdsiam.DB{Host: testHost, Port: 5432, User: "app"}, ""},
		{"URL with a password", "postgres://app:s3cret-in-dsn@" + testHost + ":6000/d", nil, rdsiam.DB{Host: testHost, Port: 6000, User: "app"}, ""},
		{"environment", "dbname=d", map[string]string{"PGHOST": testHost, "PGUSER": "envuser", "PGPORT": "7000"}, rdsiam.DB{Host: testHost, Port: 7000, User: "envuser"}, ""},
		{"no host", "user=app dbname=d", nil, rdsiam.DB{}, "names no host"},
		{"no user", "host=h dbname=d", nil, rdsiam.DB{}, "names no user"},
		{"several hosts", "host=a,b user=app", nil, rdsiam.DB{}, "several hosts"},
		{"hostaddr only", "hostaddr=10.0.0.1 user=app", nil, rdsiam.DB{}, "hostaddr without host"},
		{"malformed", "host='unterminated s3cret-in-dsn", nil, rdsiam.DB{}, "does not parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			got, err := rdsiam.DBFromDSN(tc.dsn)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("DBFromDSN = %+v, %v; want an error saying %q", got, err, tc.err)
				}
				assertNoSecret(t, "the error", err.Error(), "s3cret-in-dsn")
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("DBFromDSN = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// FuzzDBFromDSN checks that the endpoint and user DBFromDSN reads from a
// DSN are those the connector's logins through lib/pq and pgx use, so that
// a token built for them is for the endpoint the driver dials.
func FuzzDBFromDSN(f *testing.F) {
	for _, dsn := range []string{"host=h port=1 user=u", "postgres://u@h:2/d", "host=h user=u hostaddr=127.0.0.1",
		"postgres://u@[::1]:5/d", "host=h,i user=u", "user=u", "host=h user='a b' port=65535", "postgres://u@h/d?host=other"} {
		f.Add(dsn)
	}
	provider := credentials.NewStaticCredentialsProvider(testAccessKeyID, testSecretKey, "")
	f.Fuzz(func(t *testing.T, dsn string) {
		db, err := rdsiam.DBFromDSN(dsn)
		if err != nil {
			return
		}
		db.Region = testRegion
		src, err := rdsiam.New(aws.Config{Credentials: provider}, db)
		if err != nil {
			return // a host or user New refuses, with its own error
		}
		for _, viaPGX := range []bool{false, true} {
			got, err := capturedLogin(t, viaPGX, dsn, src)
			if err != nil {
				continue // a DSN this driver refuses
			}
			want := login{db.User, got.password, src.DB().Host, src.DB().Port}
			// lib/pq keeps a URL's IPv6 brackets in its Host; the token's
			// host:port has them either way.
			if h := got.host; len(h) > 2 && h[0] == '[' && h[len(h)-1] == ']' {
				got.host = h[1 : len(h)-1]
			}
			if got != want {
				t.Fatalf("pgx %v: the driver logs in as %q at %s:%d, the token is for %q at %s:%d",
					viaPGX, got.user, got.host, got.port, want.user, want.host, want.port)
			}
		}
	})
}
