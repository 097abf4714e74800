package awssmtest_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"

	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
)

// start returns a started server that the test closes, and an SDK client
// for it whose retries do not wait.
func start(t *testing.T, opts ...awssmtest.Option) (*awssmtest.Server, *secretsmanager.Client) {
	t.Helper()
	srv := awssmtest.NewServer(opts...).Start()
	t.Cleanup(srv.Close)
	return srv, srv.Client(t.Context(), noBackoff)
}

// noBackoff keeps the SDK's standard retryer (3 attempts, the standard
// retryable errors) but retries at once and without a retry quota, so fault
// tests stay fast and independent.
func noBackoff(o *secretsmanager.Options) {
	o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
		so.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
		so.RateLimiter = ratelimit.None
	})
}

// errorCode returns the AWS error code of err, or "" if it is not an API
// error.
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// wantCode fails the test unless err is an API error with code.
func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", code)
	}
	if got := errorCode(err); got != code {
		t.Fatalf("got error %v (code %q), want code %s", err, got, code)
	}
}

// wantAs fails the test unless errors.As finds an error of type E in err.
func wantAs[E error](t *testing.T, err error) E {
	t.Helper()
	var target E
	if !errors.As(err, &target) {
		t.Fatalf("errors.As(%v, %T) = false", err, target)
	}
	return target
}

// stagesOf returns the sorted labels of version id according to
// DescribeSecret's VersionIdsToStages.
func stagesOf(d *secretsmanager.DescribeSecretOutput, id string) []string {
	s := slices.Clone(d.VersionIdsToStages[id])
	slices.Sort(s)
	return s
}

var s = aws.String
