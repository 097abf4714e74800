package rdsiam

import (
	"errors"
	"os"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lib/pq"

	"github.com/pgrotate/rotating/internal/dsnkeys"
)

// DBFromDSN returns the host, port and user that the application's DSN
// (key=value or postgres:// URL, read as lib/pq and pgx read it, PGHOST,
// PGPORT and PGUSER included) logs in to, so that the tokens are signed
// for exactly the endpoint the driver dials. Region is left empty: New
// and NewFromConfig take the AWS configuration's.
//
// The DSN must name one host by name or address (not a unix socket, not a
// list of hosts: a token is bound to one endpoint; build one Source per
// endpoint) and a user, in the DSN or in PGHOST and PGUSER. Its errors
// never quote the DSN, which may hold a password.
func DBFromDSN(dsn string) (DB, error) {
	cfg, err := pq.NewConfig(dsn)
	if err != nil {
		// lib/pq's reasons may quote the DSN; rotating.NewConnector's
		// *DSNError gives them with every quoted fragment removed.
		return DB{}, errors.New("rdsiam: DBFromDSN: the DSN does not parse (rotating.NewConnector says why)")
	}
	keys := dsnkeys.Of(dsn)
	host, _, _ := dsnkeys.Endpoint(dsn)
	var errs []error
	switch {
	case !host:
		errs = append(errs, errors.New("rdsiam: DBFromDSN: the DSN names no host (nor does PGHOST): the token is for one endpoint, name it"))
	case len(cfg.Multi) > 0:
		errs = append(errs, errors.New("rdsiam: DBFromDSN: the DSN names several hosts; a token is bound to one endpoint: build a Source per host"))
	case cfg.Hostaddr.IsValid() && cfg.Host == "localhost":
		errs = append(errs, errors.New("rdsiam: DBFromDSN: the DSN gives hostaddr without host; the token needs the endpoint's host name: add host="))
	}
	if cfg.Port == 0 {
		errs = append(errs, errors.New("rdsiam: DBFromDSN: the DSN's port is 0"))
	}
	if !keys.User && os.Getenv("PGUSER") == "" {
		errs = append(errs, errors.New("rdsiam: DBFromDSN: the DSN names no user (nor does PGUSER); the token is for one database user, name it"))
	}
	if err := errors.Join(errs...); err != nil {
		return DB{}, err
	}
	db := DB{Host: cfg.Host, Port: int(cfg.Port), User: cfg.User}
	// pgx reads libpq's syntax too, but not every corner of it the same
	// way (an empty host= beside a URL's host, say): a DSN the two drivers
	// read differently could sign for an endpoint one of them does not
	// dial.
	if pc, err := pgconn.ParseConfig(dsn); err == nil &&
		(pc.Host != db.Host || int(pc.Port) != db.Port || pc.User != db.User) {
		return DB{}, errors.New("rdsiam: DBFromDSN: lib/pq and pgx read this DSN's host, port or user differently; spell them out as host=, port= and user=")
	}
	return db, nil
}
