package rotating

import (
	"errors"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strings"

	"github.com/lib/pq"

	"github.com/pgrotate/rotating/secrets"
)

// baseConfig is the application's DSN, parsed once by NewConnector. Every
// dial is built from a clone of cfg with a credential applied to it, never by
// concatenating DSN strings, so any password works whatever it contains.
type baseConfig struct {
	cfg pq.Config

	// Which parts of the endpoint the application gave (in the DSN or in
	// PGHOST/PGHOSTADDR/PGPORT/PGDATABASE). A credential fills only the parts
	// left unset, unless WithEndpointFromSecret says the secret wins.
	hasHost, hasPort, hasDatabase bool
}

// parseDSN parses dsn (key=value or postgres:// URL form) with lib/pq's own
// parser. Errors never quote the DSN: it may hold a password.
func parseDSN(dsn string) (baseConfig, error) {
	cfg, err := pq.NewConfig(dsn)
	if err != nil {
		return baseConfig{}, newDSNError(err)
	}
	b := baseConfig{cfg: cfg}
	if isURL(dsn) {
		b.hasHost, b.hasPort, b.hasDatabase = urlSets(dsn)
	} else {
		b.hasHost, b.hasPort, b.hasDatabase = keyValueSets(dsn)
	}
	b.hasHost = b.hasHost || cfg.Hostaddr.IsValid() || envSet("PGHOST") || envSet("PGHOSTADDR")
	b.hasPort = b.hasPort || envSet("PGPORT")
	b.hasDatabase = b.hasDatabase || envSet("PGDATABASE")
	return b, nil
}

func envSet(name string) bool { return os.Getenv(name) != "" }

func isURL(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// keyValueSets reports which of host, port and dbname a key=value DSN sets.
// pq.Config does not say which fields were given and which are defaults, so
// the DSN is parsed twice more behind two different leading values: a field
// the DSN sets overrides both, so it comes out equal in the two parses.
func keyValueSets(dsn string) (host, port, dbname bool) {
	a, errA := pq.NewConfig("host=rotating.probe.a port=1 dbname=rotating_probe_a " + dsn)
	b, errB := pq.NewConfig("host=rotating.probe.b port=2 dbname=rotating_probe_b " + dsn)
	if errA != nil || errB != nil {
		// Cannot tell (the probe itself confused pq): the DSN stays
		// authoritative for everything.
		return true, true, true
	}
	return a.Host == b.Host, a.Port == b.Port, a.Database == b.Database
}

// urlSets reports which of host, port and dbname a postgres:// URL sets,
// either in its authority and path or as query parameters.
func urlSets(dsn string) (host, port, dbname bool) {
	u, err := url.Parse(dsn)
	if err != nil {
		return true, true, true
	}
	q := u.Query()
	host = u.Hostname() != "" || q.Get("host") != "" || q.Get("hostaddr") != ""
	port = u.Port() != "" || q.Get("port") != ""
	dbname = strings.TrimPrefix(u.Path, "/") != "" || q.Get("dbname") != ""
	return host, port, dbname
}

// withCredential returns the configuration for one credential: a clone of
// the base configuration with the credential's login, and its endpoint
// where the DSN leaves one unset (or always, if secretWins).
func (b *baseConfig) withCredential(cred secrets.Credential, secretWins bool) pq.Config {
	cfg := b.cfg.Clone()
	if cred.Username != "" {
		cfg.User = cred.Username
	}
	cfg.Password = cred.Password
	// The password is never empty here (Credential.Validate), so pq never
	// reads a pgpass file; clearing Passfile makes that explicit.
	cfg.Passfile = ""

	if cred.Host != "" && (secretWins || !b.hasHost) {
		cfg.Host = cred.Host
		cfg.Hostaddr = netip.Addr{}
		cfg.Multi = nil
	}
	if cred.Port != 0 && (secretWins || !b.hasPort) {
		cfg.Port = uint16(cred.Port)
	}
	if cred.Database != "" && (secretWins || !b.hasDatabase) {
		cfg.Database = cred.Database
	}
	return cfg
}

// quoted matches a Go-quoted string inside an error message. pq's DSN errors
// quote pieces of the DSN (for example the word after a space in an
// unquoted password), so they are replaced before the message is shown.
var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

func newDSNError(err error) *DSNError {
	// A *url.Error repeats the whole URL, password included: keep only its
	// reason.
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	msg := quoted.ReplaceAllString(err.Error(), `"…"`)
	msg = strings.TrimPrefix(msg, "pq: ")
	return &DSNError{Reason: msg}
}
