package main

import (
	"bytes"
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/lib/pq"

	"github.com/pgrotate/rotating/internal/pgserver"
)

// refusalLog counts, in the server log of a server the demo can read, the
// lines PostgreSQL writes when it refuses a password login of given roles.
// PostgreSQL logs every refused login at FATAL whatever log_connections
// says, and writes the line before it answers the client: a refusal the
// connector has counted is already in the log. Positions are byte offsets,
// so that a rotation's lines are those between its start's offset and the
// next one's, with no clock or time zone to parse.
type refusalLog struct {
	path  string
	lines [][]byte // `password authentication failed for user "<role>"`, one per role
}

// newRefusalLog returns the refusal log of pg's server for roles, or nil
// if the demo cannot read that server's log (a server it did not start:
// pgserver.Server.Dir is empty then).
func newRefusalLog(pg *pgserver.Server, roles ...string) *refusalLog {
	if pg.Dir == "" {
		return nil
	}
	l := &refusalLog{path: filepath.Join(pg.Dir, "log")} // the layout pgserver.Server.Dir documents
	for _, r := range roles {
		// The server quotes the name as given at login, without escaping;
		// the demo's role names are plain identifiers.
		l.lines = append(l.lines, fmt.Appendf(nil, "password authentication failed for user %q", r))
	}
	return l
}

// newRefusalLogPrefix is newRefusalLog for the roles whose names begin
// with prefix (a Vault dynamic role's users), nil if the demo cannot read
// the log.
func newRefusalLogPrefix(pg *pgserver.Server, prefix string) *refusalLog {
	if pg.Dir == "" {
		return nil
	}
	return &refusalLog{path: filepath.Join(pg.Dir, "log"), lines: [][]byte{
		fmt.Appendf(nil, "password authentication failed for user \"%s", prefix),
	}}
}

// offset returns where the log ends now.
func (l *refusalLog) offset() (int64, error) {
	st, err := os.Stat(l.path)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// count returns the number of refusals of the roles logged between the
// offsets from and to.
func (l *refusalLog) count(from, to int64) (int64, error) {
	if to < from {
		return 0, fmt.Errorf("server log offsets %d > %d", from, to)
	}
	f, err := os.Open(l.path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, from, to-from))
	if err != nil {
		return 0, err
	}
	var n int64
	for line := range bytes.Lines(b) {
		for _, want := range l.lines {
			if bytes.Contains(line, want) {
				n++
				break
			}
		}
	}
	return n, nil
}

// refusalCounter is lib/pq's connector for the rotation function's logins,
// counting those the database refuses. AWS's setSecret first tries
// AWSPENDING (has an earlier attempt already changed the password?): in
// a normal rotation the server refuses it and logs it under the
// application's role, and the report tells those lines from the
// application's.
func refusalCounter(refused *atomic.Int64) func(cfg pq.Config) (driver.Connector, error) {
	return func(cfg pq.Config) (driver.Connector, error) {
		c, err := pq.NewConnectorConfig(cfg)
		if err != nil {
			return nil, err
		}
		return countingConnector{c, refused}, nil
	}
}

type countingConnector struct {
	*pq.Connector
	refused *atomic.Int64
}

func (c countingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		// 28P01 only: the code whose refusals the log lines counted are.
		var st interface{ SQLState() string }
		if errors.As(err, &st) && st.SQLState() == "28P01" {
			c.refused.Add(1)
		}
		return nil, err // lib/pq returns a typed nil *conn with its errors
	}
	return conn, nil
}
