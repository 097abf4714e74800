package rotating

import (
	"errors"
	"net/url"
	"regexp"
	"strings"

	"github.com/pgrotate/rotating/internal/dsnkeys"
	"github.com/pgrotate/rotating/secrets"
)

// endpoint records which parts of the endpoint the application gave, in
// its DSN or in PGHOST, PGHOSTADDR, PGPORT and PGDATABASE. A credential
// fills only the parts left unset, unless WithEndpointFromSecret says the
// secret wins. It is one rule for every driver: both lib/pq and pgx read
// libpq's DSN syntax.
type endpoint struct{ host, port, database bool }

// endpointOf reports which parts of the endpoint dsn (key=value or
// postgres:// URL) and the environment set, by the rule in
// internal/dsnkeys that pgrotate check shares.
func endpointOf(dsn string) endpoint {
	var ep endpoint
	ep.host, ep.port, ep.database = dsnkeys.Endpoint(dsn)
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
