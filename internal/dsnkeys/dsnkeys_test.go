package dsnkeys

import (
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

// clearEnv unsets the environment variables that set the endpoint or a
// key's default, for the rest of the test. (Set but empty is not unset to
// lib/pq: PGPORT="" is a bad port.)
func clearEnv(t *testing.T) {
	for _, name := range []string{"PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGSSLMODE", "PGSERVICE"} {
		t.Setenv(name, "") // restored at the end of the test
		os.Unsetenv(name)
	}
}

var cases = []struct {
	dsn  string
	want Keys
}{
	{"", Keys{}},
	{"host=db port=5433 dbname=app sslmode=require", Keys{Host: true, Port: true, DBName: true, SSLMode: true}},
	{"user=app password=x", Keys{User: true, Password: true}},
	{"host=h password='a b' application_name=x", Keys{Host: true, Password: true}},
	{"hostaddr=10.1.2.3", Keys{Host: true}},
	{"host=/tmp dbname=x", Keys{Host: true, DBName: true, SSLMode: true}}, // lib/pq turns TLS off on a socket
	{"sslrootcert=system", Keys{SSLMode: true}},                           // the probe cannot tell: the DSN's
	{"host='unterminated", Keys{true, true, true, true, true, true}},
	{"postgres://db/app?sslmode=require", Keys{Host: true, DBName: true, SSLMode: true}},
	{"postgres://u:p@db:5433", Keys{Host: true, Port: true, User: true, Password: true}},
	{"postgresql:///app?host=db&port=5433", Keys{Host: true, Port: true, DBName: true}},
	{"postgres://?hostaddr=10.1.2.3&user=u", Keys{Host: true, User: true}},
	{"postgres://u@h/d%zz", Keys{true, true, true, true, true, true}}, // not a URL Go parses
}

func TestOf(t *testing.T) {
	clearEnv(t)
	for _, tc := range cases {
		if got := Of(tc.dsn); got != tc.want {
			t.Errorf("Of(%q) = %+v, want %+v", tc.dsn, got, tc.want)
		}
	}
}

func TestEndpoint(t *testing.T) {
	clearEnv(t)
	for _, tc := range cases {
		host, port, dbname := Endpoint(tc.dsn)
		if host != tc.want.Host || port != tc.want.Port || dbname != tc.want.DBName {
			t.Errorf("Endpoint(%q) = %v, %v, %v, want %v, %v, %v", tc.dsn, host, port, dbname, tc.want.Host, tc.want.Port, tc.want.DBName)
		}
	}
	// The environment sets what the DSN leaves unset.
	for _, tc := range []struct {
		env, key string
		dsn      string
	}{
		{"PGHOST", "host", "dbname=x"},
		{"PGHOSTADDR", "host", "postgres:///x"},
		{"PGPORT", "port", "host=h"},
		{"PGDATABASE", "dbname", "host=h"},
	} {
		t.Run(tc.env, func(t *testing.T) {
			clearEnv(t)
			t.Setenv(tc.env, "1")
			host, port, dbname := Endpoint(tc.dsn)
			set := map[string]bool{"host": host, "port": port, "dbname": dbname}
			if !set[tc.key] {
				t.Errorf("%s set, Endpoint(%q) says %s is unset", tc.env, tc.dsn, tc.key)
			}
			if got := EnvSetting(tc.key); got != tc.env {
				t.Errorf("EnvSetting(%q) = %q, want %q", tc.key, got, tc.env)
			}
			k := Of(tc.dsn)
			if set := map[string]bool{"host": k.Host, "port": k.Port, "dbname": k.DBName}; set[tc.key] {
				t.Errorf("Of(%q) counts %s", tc.dsn, tc.env)
			}
		})
	}
}

// FuzzOf checks, for any DSN, that Endpoint agrees with Of when the
// environment is empty, and that the rule holds for pgx as well as for
// lib/pq: a key=value DSN's endpoint key that Of reports unset is the one a
// leading value sets when pgx parses it.
func FuzzOf(f *testing.F) {
	for _, tc := range cases {
		f.Add(tc.dsn)
	}
	f.Fuzz(func(t *testing.T, dsn string) {
		clearEnv(t)
		k := Of(dsn)
		host, port, dbname := Endpoint(dsn)
		if host != k.Host || port != k.Port || dbname != k.DBName {
			t.Fatalf("Endpoint(%q) = %v, %v, %v; Of = %+v", dsn, host, port, dbname, k)
		}
		if IsURL(dsn) {
			return
		}
		cfg, err := pgx.ParseConfig("host=pgx.probe port=7 dbname=pgx_probe " + dsn)
		if err != nil {
			return
		}
		if !k.Host && cfg.Host != "pgx.probe" || !k.Port && cfg.Port != 7 || !k.DBName && cfg.Database != "pgx_probe" {
			t.Fatalf("%q: Of says %+v, but pgx reads host %q, port %d, dbname %q", dsn, k, cfg.Host, cfg.Port, cfg.Database)
		}
	})
}
