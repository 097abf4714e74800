package rotating

import (
	"database/sql/driver"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/pgrotate/rotating/secrets"
)

// awkwardPasswords are passwords that break DSN string concatenation.
var awkwardPasswords = []string{
	`it's "quoted"`,
	`back\slash\`,
	`spaces  in it `,
	`@:/?#%&=`,
	`'\'`,
	`ünïcødé-пароль-密码`,
	`password=x host=evil`,
	strings.Repeat(`a'b\c d@e:f/g?h#i%j&k=l`, 44),
}

func TestDSNMerge(t *testing.T) {
	cred := secrets.Credential{Username: "secret_user", Password: "pw", Host: "secret.host", Port: 6543, Database: "secretdb"}
	for _, tc := range []struct {
		name, dsn       string
		secretWins      bool
		host            string
		port            uint16
		db              string
		sslmode         pq.SSLMode
		applicationName string
	}{
		{name: "key=value sets everything: DSN wins", dsn: "host=dsn.host port=5433 dbname=dsndb sslmode=require application_name=app",
			host: "dsn.host", port: 5433, db: "dsndb", sslmode: pq.SSLModeRequire, applicationName: "app"},
		{name: "key=value sets nothing: secret fills", dsn: "sslmode=disable",
			host: "secret.host", port: 6543, db: "secretdb", sslmode: pq.SSLModeDisable},
		{name: "key=value sets host only", dsn: "host=dsn.host",
			host: "dsn.host", port: 6543, db: "secretdb"},
		{name: "key=value with DSN credentials: replaced", dsn: "host=dsn.host user=dsnuser password='dsn pw' dbname=dsndb",
			host: "dsn.host", port: 6543, db: "dsndb"},
		{name: "empty DSN", dsn: "", host: "secret.host", port: 6543, db: "secretdb"},
		{name: "URL sets everything", dsn: "postgres://u:p@dsn.host:5433/dsndb?sslmode=verify-full",
			host: "dsn.host", port: 5433, db: "dsndb", sslmode: pq.SSLModeVerifyFull},
		{name: "URL sets host only", dsn: "postgresql://dsn.host",
			host: "dsn.host", port: 6543, db: "secretdb"},
		{name: "URL sets port in the query", dsn: "postgres:///dsndb?host=dsn.host&port=5433",
			host: "dsn.host", port: 5433, db: "dsndb"},
		{name: "secret wins", dsn: "host=dsn.host port=5433 dbname=dsndb", secretWins: true,
			host: "secret.host", port: 6543, db: "secretdb"},
		{name: "hostaddr counts as a host", dsn: "hostaddr=10.1.2.3",
			host: "localhost", port: 6543, db: "secretdb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := parseDSN(tc.dsn)
			if err != nil {
				t.Fatalf("parseDSN: %v", err)
			}
			cfg := b.withCredential(cred, tc.secretWins)
			if cfg.User != "secret_user" || cfg.Password != "pw" {
				t.Errorf("login = %q, want the credential's", cfg.User)
			}
			if cfg.Host != tc.host || cfg.Port != tc.port || cfg.Database != tc.db {
				t.Errorf("endpoint = %s:%d/%s, want %s:%d/%s", cfg.Host, cfg.Port, cfg.Database, tc.host, tc.port, tc.db)
			}
			if tc.sslmode != "" && cfg.SSLMode != tc.sslmode {
				t.Errorf("sslmode = %q, want %q", cfg.SSLMode, tc.sslmode)
			}
			if cfg.ApplicationName != tc.applicationName {
				t.Errorf("application_name = %q, want %q", cfg.ApplicationName, tc.applicationName)
			}
		})
	}
}

func TestDSNMergeLeavesBaseUntouched(t *testing.T) {
	b, err := parseDSN("host=h dbname=d search_path=app")
	if err != nil {
		t.Fatal(err)
	}
	cfg := b.withCredential(secrets.Credential{Username: "u", Password: "p"}, false)
	cfg.Runtime["search_path"] = "changed"
	if b.dc.cfg.Runtime["search_path"] != "app" || b.dc.cfg.Password != "" {
		t.Fatal("a merged configuration shares state with the base configuration")
	}
}

func TestCredentialWithoutUsernameKeepsDSNUser(t *testing.T) {
	b, err := parseDSN("host=h user=dsnuser")
	if err != nil {
		t.Fatal(err)
	}
	if cfg := b.withCredential(secrets.Credential{Password: "p"}, false); cfg.User != "dsnuser" {
		t.Fatalf("user = %q, want the DSN's user for a password-only secret", cfg.User)
	}
}

func TestEnvironmentNeverOverridesTheCredential(t *testing.T) {
	t.Setenv("PGUSER", "env_user")
	t.Setenv("PGPASSWORD", "env_password")
	t.Setenv("PGPASSFILE", "/nonexistent/pgpass")
	t.Setenv("PGHOST", "env.host")
	b, err := parseDSN("dbname=app")
	if err != nil {
		t.Fatal(err)
	}
	cfg := b.withCredential(secrets.Credential{Username: "u", Password: "p", Host: "secret.host"}, false)
	if cfg.User != "u" || cfg.Password != "p" || cfg.Passfile != "" {
		t.Fatalf("environment leaked into the login: user %q, passfile %q", cfg.User, cfg.Passfile)
	}
	if cfg.Host != "env.host" {
		t.Fatalf("host = %q: PGHOST is the application's setting and should win over the secret's host", cfg.Host)
	}
}

func TestAwkwardPasswordsSurviveTheMerge(t *testing.T) {
	for _, dsn := range []string{"host=h dbname=d", "postgres://h/d"} {
		b, err := parseDSN(dsn)
		if err != nil {
			t.Fatal(err)
		}
		for _, pw := range awkwardPasswords {
			cfg := b.withCredential(secrets.Credential{Username: "u " + pw, Password: pw}, false)
			if cfg.Password != pw || cfg.User != "u "+pw || cfg.Host != "h" || cfg.Database != "d" {
				t.Errorf("%s: password or user changed by the merge, or the endpoint moved", dsn)
			}
		}
	}
}

func TestDSNErrorsDoNotQuoteTheDSN(t *testing.T) {
	for _, dsn := range []string{
		"host=h password=abc s3cretword",           // unquoted space in a password
		"host=h password='unterminated s3cretword", // unterminated quote
		"postgres://u:s3cretword@h:notaport/d",     // bad URL port
		"postgres://u:s3cret word@h/d",             // space in a URL
		"mysql://u:s3cretword@h/d",                 // wrong scheme
		"host=h sslmode=s3cretword",
	} {
		_, err := NewConnector(dsn, secrets.Static(secrets.Credential{Password: "x"}))
		if err == nil {
			t.Errorf("NewConnector accepted a malformed DSN")
			continue
		}
		var dsnErr *DSNError
		if !errors.Is(err, ErrInvalidDSN) || !errors.As(err, &dsnErr) {
			t.Errorf("error %q is not a *DSNError", err)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("DSN error quotes part of the DSN: %q", err)
		}
	}
}

// FuzzDSNMerge checks, for any DSN lib/pq accepts and any credential, that
// the merged configuration logs in with exactly the credential's username
// and password, keeps every endpoint field the DSN set, and that the merge
// round-trips: merging the same credential into the merged configuration's
// own base gives the same login. A DSN lib/pq rejects must give a *DSNError
// that does not quote the DSN.
func FuzzDSNMerge(f *testing.F) {
	for _, dsn := range []string{"", "host=h port=1 dbname=d", "postgres://u:p@h:5432/d?sslmode=disable",
		"host=h password='a b'", "postgres://h/d?host=other", "host=/tmp dbname=x", "hostaddr=127.0.0.1 port=7"} {
		for _, pw := range awkwardPasswords[:4] {
			f.Add(dsn, "user", pw, "secret.host", 99)
		}
	}
	f.Fuzz(func(t *testing.T, dsn, user, password, host string, port int) {
		b, err := parseDSN(dsn)
		if err != nil {
			var dsnErr *DSNError
			if !errors.As(err, &dsnErr) {
				t.Fatalf("parse error %v is not a *DSNError", err)
			}
			return
		}
		cred := secrets.Credential{Username: user, Password: password, Host: host, Port: port & 0xffff}
		cfg := b.withCredential(cred, false)
		if cfg.Password != password || (user != "" && cfg.User != user) || (user == "" && cfg.User != b.dc.cfg.User) {
			t.Fatal("merged login differs from the credential")
		}
		if cfg.Passfile != "" {
			t.Fatal("merged configuration still names a passfile")
		}
		if b.ep.host && cfg.Host != b.dc.cfg.Host {
			t.Fatalf("DSN host %q replaced by %q", b.dc.cfg.Host, cfg.Host)
		}
		if b.ep.database && cfg.Database != b.dc.cfg.Database {
			t.Fatal("DSN dbname replaced")
		}
		again := pqBase{libpqConfig{cfg: cfg}, endpoint{true, true, true}}.withCredential(cred, false)
		if again.User != cfg.User || again.Password != cfg.Password || again.Host != cfg.Host ||
			again.Port != cfg.Port || again.Database != cfg.Database {
			t.Fatal("merging twice is not stable")
		}
	})
}

// pqBase is the lib/pq driver's parse of a DSN with the endpoint rule, as
// NewConnector uses them.
type pqBase struct {
	dc libpqConfig
	ep endpoint
}

func parseDSN(dsn string) (pqBase, error) {
	d, err := libpq{}.ParseDSN(dsn)
	if err != nil {
		return pqBase{}, newDSNError(err)
	}
	return pqBase{d.(libpqConfig), endpointOf(dsn)}, nil
}

// withCredential returns the pq.Config a login with cred would use.
func (b pqBase) withCredential(cred secrets.Credential, secretWins bool) pq.Config {
	var got pq.Config
	dc := b.dc
	dc.newConnector = func(cfg pq.Config) (driver.Connector, error) { got = cfg; return nil, nil }
	_, _, _ = dc.Connector(b.ep.applies(cred, secretWins), time.Second)
	return got
}
