package apptest_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/lib/pq"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/internal/testkit/apptest"
	"github.com/pgrotate/rotating/internal/testkit/drivers"
)

var errStore = errors.New("store unreachable")

// TestRejectedProblems runs the checks on errors built by hand: the error
// a Connect returns when the login is rejected and the store is down
// passes; each part taken away is reported, and only that part.
func TestRejectedProblems(t *testing.T) {
	var known testkit.Secrets
	known.Add("pw-secret")
	want := apptest.Rejected{
		Driver:      drivers.LibPQ,
		Secret:      "prod/db",
		Secrets:     &known,
		FetchFailed: true,
		Store: func(err error) []string {
			if !errors.Is(err, errStore) {
				return []string{"the store's error is missing"}
			}
			return nil
		},
	}
	authErr := func(mod func(*rotating.AuthError)) error {
		e := &rotating.AuthError{
			Source: "test source prod/db", Username: "app",
			Err:      &pq.Error{Code: "28P01", Message: "password authentication failed"},
			FetchErr: &rotating.FetchError{Source: "test source prod/db", Err: errStore},
		}
		if mod != nil {
			mod(e)
		}
		return e
	}
	cases := []struct {
		name string
		err  error
		want []string // the problems, each by a part of its text
	}{
		{"good", authErr(nil), nil},
		{"nil", nil, []string{"succeeded"}},
		{"not an AuthError", fmt.Errorf("prod/db: %w", &pq.Error{Code: "28P01"}), []string{"ErrCredentialRejected", "ErrFetchFailed", "not a *rotating.AuthError", "the store's error"}},
		{"store fine", authErr(func(e *rotating.AuthError) { e.FetchErr = nil }), []string{"ErrFetchFailed", "FetchErr is nil", "the store's error"}},
		{"other SQLSTATE", authErr(func(e *rotating.AuthError) { e.Err = &pq.Error{Code: "28000"} }), []string{`SQLSTATE 28P01 in the error (got "28000")`}},
		{"secret not named", authErr(func(e *rotating.AuthError) {
			e.Source, e.FetchErr = "test source", &rotating.FetchError{Source: "test source", Err: errStore}
		}), []string{"does not name the secret"}},
		{"password shown", authErr(func(e *rotating.AuthError) { e.Username = "pw-secret" }), []string{"contains a secret"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := want.Problems(tc.err)
			if len(got) != len(tc.want) {
				t.Fatalf("Problems = %q, want %d problems like %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to say %q", i, got[i], w)
				}
				if strings.Contains(got[i], "pw-secret") {
					t.Errorf("problem %d quotes the secret", i)
				}
			}
		})
	}

	// Without FetchFailed, a plain rejection passes.
	plain := apptest.Rejected{Driver: drivers.LibPQ, Secret: "prod/db", Secrets: &known}
	if got := plain.Problems(authErr(func(e *rotating.AuthError) { e.FetchErr = nil })); !slices.Equal(got, nil) {
		t.Errorf("a plain rejection without FetchFailed: %q", got)
	}
}
