package gcpsm

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"time"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pgrotate/rotating/secrets"
)

// Compile-time checks.
var (
	_ secrets.Source    = (*Source)(nil)
	_ secrets.Describer = (*Source)(nil)
)

// Source reads a credential from one Google Cloud Secret Manager secret
// version. It implements [secrets.Source] and [secrets.Describer]. A Source
// is safe for concurrent use and caches nothing (the connector does).
type Source struct {
	client *secretmanager.Client
	owned  bool   // the client was built by Open; Close closes it
	name   string // the version resource name that Fetch accesses
	keys   secrets.Keys
	log    *slog.Logger
}

// New returns a Source that reads the secret name with client. name is a
// secret, "projects/PROJECT/secrets/SECRET", whose latest version Fetch
// reads, or one version of it, "projects/PROJECT/secrets/SECRET/versions/N"
// (a number, "latest" or a version alias); a regional secret,
// "projects/PROJECT/locations/LOCATION/secrets/SECRET[/versions/N]", needs a
// client for that region's endpoint. The client stays the caller's: Close
// does not close it.
//
// The client's own debug logging (the environment variable
// GOOGLE_SDK_GO_LOGGING_LEVEL=debug) logs every response, secret payloads
// included; build the client with option.WithLogger to keep that off, as
// [Open] does.
func New(client *secretmanager.Client, name string, opts ...Option) (*Source, error) {
	if client == nil {
		return nil, errors.New("gcpsm: nil client")
	}
	vname, cfg, err := prepare(name, opts)
	if err != nil {
		return nil, err
	}
	if len(cfg.clientOpts) > 0 {
		return nil, fmt.Errorf("%w: WithClientOptions is for Open; New is given a client", ErrInvalidOption)
	}
	return newSource(client, false, vname, cfg), nil
}

// Open is [New] with a client of its own, built with
// secretmanager.NewClient(ctx, ...) over gRPC from Application Default
// Credentials: the attached service account on GKE (Workload Identity),
// Cloud Run, Cloud Functions and Compute Engine, or the file named by
// GOOGLE_APPLICATION_CREDENTIALS, or gcloud's user credentials. Options
// given with [WithClientOptions] are passed on. The client's own logging is
// off (its debug level would log secret payloads), unless an
// option.WithLogger among them turns it back on. ctx bounds building the
// client only; credentials are obtained on the first Fetch and refreshed by
// the client. Call [Source.Close] to close the client.
func Open(ctx context.Context, name string, opts ...Option) (*Source, error) {
	vname, cfg, err := prepare(name, opts)
	if err != nil {
		return nil, err
	}
	clientOpts := append([]option.ClientOption{option.WithLogger(slog.New(slog.DiscardHandler))}, cfg.clientOpts...)
	client, err := secretmanager.NewClient(ctx, clientOpts...)
	if err != nil {
		return nil, fmt.Errorf("gcpsm: creating the Secret Manager client: %w", err)
	}
	return newSource(client, true, vname, cfg), nil
}

// prepare checks name and applies opts.
func prepare(name string, opts []Option) (string, options, error) {
	vname, err := versionName(name)
	if err != nil {
		return "", options{}, err
	}
	cfg := defaultOptions()
	for _, opt := range opts {
		opt(&cfg)
	}
	if err := cfg.err(); err != nil {
		return "", options{}, err
	}
	return vname, cfg, nil
}

func newSource(client *secretmanager.Client, owned bool, vname string, cfg options) *Source {
	return &Source{
		client: client,
		owned:  owned,
		name:   vname,
		keys:   cfg.keys,
		log:    cfg.logger.With(slog.String("secret", vname)),
	}
}

// Name returns the secret version resource name that Fetch accesses, such
// as "projects/my-project/secrets/db/versions/latest".
func (s *Source) Name() string { return s.name }

// Describe returns "gcp-secretmanager " followed by [Source.Name].
func (s *Source) Describe() string { return "gcp-secretmanager " + s.name }

// Close closes the client if [Open] built it, and does nothing for a
// client given to [New].
func (s *Source) Close() error {
	if !s.owned {
		return nil
	}
	return s.client.Close()
}

// Fetch accesses the secret version with one AccessSecretVersion call (the
// client's own retries aside), checks the payload against its CRC32C
// checksum when the service sent one, and parses it with
// [secrets.ParseSecret]. The credential's Version is the number of the
// version that answered (for "latest", the newest one).
//
// ctx bounds the whole call, the client's retries and its waits between
// them included: the client retries Unavailable and ResourceExhausted with
// a backoff that starts at up to 2 s, and the connector's fetch timeout
// ends that backoff early. Failures are an [*Error].
func (s *Source) Fetch(ctx context.Context) (secrets.Credential, error) {
	attempts := &attemptCounter{next: s.clientRetryer()}
	resp, err := s.client.AccessSecretVersion(ctx,
		&secretmanagerpb.AccessSecretVersionRequest{Name: s.name},
		gax.WithRetry(func() gax.Retryer { return attempts }))
	n := attempts.failed + 1
	if err != nil {
		ferr := s.failure(ctx, err, attempts)
		s.log.LogAttrs(ctx, slog.LevelDebug, "gcpsm: AccessSecretVersion failed",
			slog.String("code", status.Code(ferr).String()), slog.Int("attempts", ferr.Attempts), slog.Any("error", ferr))
		return secrets.Credential{}, ferr
	}
	cred, perr := s.credential(resp, n)
	if perr != nil {
		s.log.LogAttrs(ctx, slog.LevelDebug, "gcpsm: secret version unusable",
			slog.String("version", perr.Version), slog.Any("error", perr))
		return secrets.Credential{}, perr
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, "gcpsm: accessed secret version",
		slog.String("version", cred.Version), slog.Int("attempts", n))
	return cred, nil
}

// credential turns an AccessSecretVersion answer, which took attempts
// attempts, into a credential.
func (s *Source) credential(resp *secretmanagerpb.AccessSecretVersionResponse, attempts int) (secrets.Credential, *Error) {
	version := versionNumber(resp.GetName())
	cred, err := s.parse(resp.GetPayload())
	if err != nil {
		return secrets.Credential{}, &Error{Op: OpAccess, Name: s.name, Version: version, Attempts: attempts, Err: err}
	}
	cred.Version = version
	return cred, nil
}

// clientRetryer returns the retry policy the client is configured with for
// AccessSecretVersion (the library's default retries Unavailable and
// ResourceExhausted), so that Fetch can count attempts without changing it.
func (s *Source) clientRetryer() gax.Retryer {
	if s.client.CallOptions == nil {
		return nil
	}
	var settings gax.CallSettings
	for _, o := range s.client.CallOptions.AccessSecretVersion {
		o.Resolve(&settings)
	}
	if settings.Retry == nil {
		return nil
	}
	return settings.Retry()
}

// failure builds the *Error for a failed AccessSecretVersion call.
func (s *Source) failure(ctx context.Context, err error, attempts *attemptCounter) *Error {
	// gax calls Retry after every failed attempt; a call that failed
	// before its first attempt (a bad TLS certificate) counts as one.
	e := &Error{Op: OpAccess, Name: s.name, Attempts: max(attempts.failed, 1), Err: err}
	ctxErr := ctx.Err()
	if d, ok := ctx.Deadline(); ctxErr == nil && ok && status.Code(err) == codes.DeadlineExceeded && !time.Now().Before(d) {
		// gRPC enforces ctx's deadline with a timer of its own, which can
		// fire a moment before ctx reports it: the call still ended
		// because ctx's deadline passed.
		ctxErr = context.DeadlineExceeded
	}
	switch {
	case ctxErr != nil && errors.Is(err, ctxErr) && attempts.last != nil:
		// gax returns the bare context error when ctx ends during its
		// backoff: keep what the service last said, which is the news.
		e.Err = fmt.Errorf("%w while waiting to retry; the last attempt failed: %w", err, attempts.last)
	case ctxErr != nil && !errors.Is(err, ctxErr):
		// gRPC reports a deadline as a status of its own.
		e.ctxErr = ctxErr
	}
	return e
}

// parse turns a payload into a credential.
func (s *Source) parse(p *secretmanagerpb.SecretPayload) (secrets.Credential, error) {
	if p == nil {
		return secrets.Credential{}, fmt.Errorf("%w: the answer has no payload", secrets.ErrEmptyPassword)
	}
	data := p.GetData()
	if p.DataCrc32C != nil && int64(crc32.Checksum(data, castagnoli)) != p.GetDataCrc32C() {
		return secrets.Credential{}, fmt.Errorf("%w: the %d bytes received do not match the checksum sent with them", ErrChecksum, len(data))
	}
	return secrets.ParseSecret(data, s.keys)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// attemptCounter wraps the client's retry policy for one Fetch: gax calls
// Retry after every failed attempt, in turn, so it needs no lock.
type attemptCounter struct {
	next   gax.Retryer // nil: the client retries nothing
	failed int
	last   error
}

func (a *attemptCounter) Retry(err error) (time.Duration, bool) {
	a.failed++
	a.last = err
	if a.next == nil {
		return 0, false
	}
	return a.next.Retry(err)
}
