// Package dsnkeys is the one rule for which connection keys a PostgreSQL
// DSN (key=value or postgres:// URL) sets itself, as opposed to leaving
// them to the environment or to the driver's defaults. The rotating
// connector uses it to decide which endpoint parts a credential may fill;
// pgrotate check uses it to say where each login field comes from. Both
// lib/pq and pgx read libpq's DSN syntax, so it is one rule for every
// driver.
package dsnkeys

import (
	"net/url"
	"os"
	"strings"

	"github.com/lib/pq"
)

// Keys reports which connection keys a DSN sets itself.
type Keys struct {
	Host, Port, DBName      bool // the endpoint; hostaddr counts as a host
	User, Password, SSLMode bool
}

// Of reports which keys dsn sets. The environment does not count: see
// Endpoint and EnvSetting for it. A DSN whose keys cannot be told apart
// (one lib/pq does not parse) sets every key: the DSN stays authoritative.
func Of(dsn string) Keys {
	if IsURL(dsn) {
		return urlKeys(dsn)
	}
	return keyValueKeys(dsn)
}

// Endpoint reports which parts of the endpoint the application gave, in
// dsn or in PGHOST, PGHOSTADDR, PGPORT and PGDATABASE: those a
// credential's host, port and dbname must not replace (unless the
// application lets the secret win). It probes only the endpoint keys.
func Endpoint(dsn string) (host, port, dbname bool) {
	if IsURL(dsn) {
		k := urlKeys(dsn)
		host, port, dbname = k.Host, k.Port, k.DBName
	} else {
		host, port, dbname = keyValueEndpoint(dsn)
	}
	return host || EnvSetting("host") != "",
		port || EnvSetting("port") != "",
		dbname || EnvSetting("dbname") != ""
}

// endpointEnv are the environment variables that set each endpoint part
// when the DSN does not, in the order libpq reads them.
var endpointEnv = map[string][]string{
	"host":   {"PGHOST", "PGHOSTADDR"},
	"port":   {"PGPORT"},
	"dbname": {"PGDATABASE"},
}

// EnvSetting returns the first environment variable that sets the endpoint
// part key ("host", "port" or "dbname"), or "" if none does.
func EnvSetting(key string) string {
	for _, name := range endpointEnv[key] {
		if os.Getenv(name) != "" {
			return name
		}
	}
	return ""
}

// IsURL reports whether dsn is a postgres:// or postgresql:// URL rather
// than key=value pairs.
func IsURL(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// keyValueKeys reports which keys a key=value DSN sets. pq.Config does not
// say which fields were given and which are defaults, so the DSN is parsed
// twice more behind two different leading values: a field the DSN sets
// overrides both, so it comes out equal in the two parses. The endpoint,
// the login and sslmode are probed apart, so that a probe value lib/pq
// refuses in combination with the DSN (sslmode=require beside
// sslrootcert=system, say) blinds only its own keys.
func keyValueKeys(dsn string) Keys {
	var k Keys
	k.Host, k.Port, k.DBName = keyValueEndpoint(dsn)
	if a, b, ok := parseTwice(dsn,
		"user=rotating_probe_a password=rotating_probe_a",
		"user=rotating_probe_b password=rotating_probe_b"); ok {
		k.User, k.Password = a.User == b.User, a.Password == b.Password
	} else {
		k.User, k.Password = true, true
	}
	if a, b, ok := parseTwice(dsn, "sslmode=require", "sslmode=verify-full"); ok {
		k.SSLMode = a.SSLMode == b.SSLMode
	} else {
		k.SSLMode = true
	}
	return k
}

// keyValueEndpoint reports which of host, port and dbname a key=value DSN
// sets (see keyValueKeys). If the probe cannot tell, the DSN stays
// authoritative for all three.
func keyValueEndpoint(dsn string) (host, port, dbname bool) {
	a, b, ok := parseTwice(dsn,
		"host=rotating.probe.a port=1 dbname=rotating_probe_a",
		"host=rotating.probe.b port=2 dbname=rotating_probe_b")
	if !ok {
		return true, true, true
	}
	return a.Host == b.Host || a.Hostaddr.IsValid(), a.Port == b.Port, a.Database == b.Database
}

// parseTwice parses dsn behind probeA and behind probeB; ok is false if
// either parse fails (the probe itself confused lib/pq).
func parseTwice(dsn, probeA, probeB string) (a, b pq.Config, ok bool) {
	a, errA := pq.NewConfig(probeA + " " + dsn)
	b, errB := pq.NewConfig(probeB + " " + dsn)
	return a, b, errA == nil && errB == nil
}

// urlKeys reports which keys a postgres:// URL sets, either in its
// authority and path or as query parameters.
func urlKeys(dsn string) Keys {
	u, err := url.Parse(dsn)
	if err != nil {
		return Keys{true, true, true, true, true, true}
	}
	q := u.Query()
	_, password := u.User.Password()
	return Keys{
		Host:     u.Hostname() != "" || q.Get("host") != "" || q.Get("hostaddr") != "",
		Port:     u.Port() != "" || q.Get("port") != "",
		DBName:   strings.TrimPrefix(u.Path, "/") != "" || q.Get("dbname") != "",
		User:     u.User.Username() != "" || q.Get("user") != "",
		Password: password || q.Get("password") != "",
		SSLMode:  q.Get("sslmode") != "",
	}
}
