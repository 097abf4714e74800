package rotating

import (
	"errors"
	"net/url"
	"os"
	"regexp"
	"strings"

	"github.com/lib/pq"

	"github.com/pgrotate/rotating/secrets"
)

// endpoint records which parts of the endpoint the application gave, in
// its DSN or in PGHOST, PGHOSTADDR, PGPORT and PGDATABASE. A credential
// fills only the parts left unset, unless WithEndpointFromSecret says the
// secret wins. It is one rule for every driver: both lib/pq and pgx read
// libpq's DSN syntax.
type endpoint struct{ host, port, database bool }

// endpointOf reports which parts of the endpoint dsn (key=value or
// postgres:// URL) and the environment set.
func endpointOf(dsn string) endpoint {
	var ep endpoint
	if isURL(dsn) {
		ep.host, ep.port, ep.database = urlSets(dsn)
	} else {
		ep.host, ep.port, ep.database = keyValueSets(dsn)
	}
	ep.host = ep.host || envSet("PGHOST") || envSet("PGHOSTADDR")
	ep.port = ep.port || envSet("PGPORT")
	ep.database = ep.database || envSet("PGDATABASE")
	return ep
}

// applies returns cred with only the endpoint parts that apply to the
// login: those the application left unset, or all of them if secretWins.
func (ep endpoint) applies(cred secrets.Credential, secretWins bool) secrets.Credential {
	if secretWins {
		return cred
	}
	if ep.host {
		cred.Host = ""
	}
	if ep.port {
		cred.Port = 0
	}
	if ep.database {
		cred.Database = ""
	}
	return cred
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
	return a.Host == b.Host || a.Hostaddr.IsValid(), a.Port == b.Port, a.Database == b.Database
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
