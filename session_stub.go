package rotating

import (
	"database/sql/driver"
	"time"
)

// Temporary stand-in until session.go lands.
type sessionEnd struct{ retireAt time.Time }

func newSessionEnd(retireAt time.Time) *sessionEnd   { return &sessionEnd{retireAt: retireAt} }
func (s *sessionEnd) wrap(conn driver.Conn) driver.Conn { return conn }
func (s *sessionEnd) stop()                              {}
func (s *sessionEnd) open() int                          { return 0 }
