package pgxv5

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgrotate/rotating"
)

func TestRejectedLogin(t *testing.T) {
	rejected := &pgconn.PgError{Severity: "FATAL", Code: "28P01"}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"28P01", fmt.Errorf("failed to connect: %w", rejected), true},
		{"28000 on the second host", errors.Join(errors.New("dial: refused"), &pgconn.PgError{Code: "28000"}), true},
		{"too many connections", &pgconn.PgError{Code: "53300"}, false},
		{"a network error", errors.New("dial tcp: connection refused"), false},
		{"the caller's deadline", context.DeadlineExceeded, false},
		{"the Connector gave up", &rotating.AuthError{Err: rejected}, false},
		{"the store failed", &rotating.FetchError{Err: errors.New("denied")}, false},
		{"the Connector is closed", rotating.ErrClosed, false},
		{"nil", nil, false},
	} {
		if got := rejectedLogin(tc.err); got != tc.want {
			t.Errorf("%s: rejectedLogin(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}
