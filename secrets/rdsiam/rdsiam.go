package rdsiam

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/rds/auth"

	"github.com/pgrotate/rotating/secrets"
)

// TokenLifetime is how long RDS accepts a token after it was signed
// (BuildAuthToken signs for 900 seconds). Sessions opened with it live on
// after that: the token is checked only at login.
const TokenLifetime = 15 * time.Minute

// Compile-time checks.
var (
	_ secrets.Source    = (*Source)(nil)
	_ secrets.Describer = (*Source)(nil)
	_ fmt.Formatter     = (*Source)(nil)
)

// DB names the login a token is for. A token is bound to all four: RDS
// refuses it for another endpoint, port, user or region.
type DB struct {
	// Host is the endpoint the application connects to, as in its DSN:
	// the DB instance's or cluster's endpoint, or an RDS Proxy's, for
	// example "mydb.abc123xyz.us-east-1.rds.amazonaws.com".
	Host string
	// Port is the endpoint's port; 0 means 5432.
	Port int
	// User is the database user, one granted the rds_iam role.
	User string
	// Region is the AWS Region of the DB instance, for example
	// "us-east-1". [NewFromConfig] and [New] take the AWS configuration's
	// region when it is empty.
	Region string
}

// Source builds an RDS IAM authentication token for each Fetch: a
// [secrets.Source] for the rotating connector. It implements
// [secrets.Describer]. A Source is safe for concurrent use; it caches no
// token (the connector caches the credential), and formatting it with any
// verb prints its description only, never the credentials provider.
type Source struct {
	db       DB
	endpoint string // host:port, as signed into the token
	creds    aws.CredentialsProvider
	log      *slog.Logger

	// mu guards last and invalidated; it is never held while the
	// provider is called.
	mu          sync.Mutex
	last        previousToken
	invalidated time.Time // when Fetch last had the provider refresh
}

// previousToken is what Fetch remembers of the last token it built: the
// AWS credentials it was signed with, by their access key id and expiry
// (not secrets), and its own life.
type previousToken struct {
	accessKeyID   string
	credsExpire   time.Time
	signed        time.Time
	expires       time.Time
	cappedByCreds bool // the credentials' expiry cut the token short
}

// refreshAfterRejectionEvery bounds how often Fetch has the credentials
// provider refresh because it was asked for a token early (see Fetch).
const refreshAfterRejectionEvery = time.Minute

// New returns a Source that signs tokens for db with awsCfg.Credentials
// (an aws.CredentialsCache, say, or any aws.CredentialsProvider; wrap a
// provider that calls the network in aws.NewCredentialsCache). db.Region
// defaults to awsCfg.Region. Nothing is signed or retrieved until Fetch.
func New(awsCfg aws.Config, db DB, opts ...Option) (*Source, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.err(); err != nil {
		return nil, err
	}
	return newSource(awsCfg, db, o)
}

// NewFromConfig is [New] with the SDK's default configuration, loaded once
// with config.LoadDefaultConfig(ctx) (plus [WithLoadOptions]): the region
// (AWS_REGION, the profile's), credentials from the environment, the
// shared files and AWS_PROFILE, a web identity (EKS), the ECS task role or
// the EC2 instance role, cached and refreshed by the SDK as they expire.
// ctx bounds the loading only; credentials are first retrieved by the
// first Fetch.
func NewFromConfig(ctx context.Context, db DB, opts ...Option) (*Source, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.err(); err != nil {
		return nil, err
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, o.loadOptions...)
	if err != nil {
		return nil, fmt.Errorf("rdsiam: loading AWS configuration: %w", redactProviderError(err))
	}
	return newSource(awsCfg, db, o)
}

func newSource(awsCfg aws.Config, db DB, o options) (*Source, error) {
	if db.Region == "" {
		db.Region = awsCfg.Region
	}
	if db.Port == 0 {
		db.Port = 5432
	}
	if h := db.Host; len(h) > 2 && h[0] == '[' && h[len(h)-1] == ']' {
		db.Host = h[1 : len(h)-1] // an IPv6 literal as written in a URL
	}
	if err := db.validate(); err != nil {
		return nil, err
	}
	if awsCfg.Credentials == nil {
		return nil, errors.New("rdsiam: the AWS configuration has no credentials provider")
	}
	endpoint := net.JoinHostPort(db.Host, strconv.Itoa(db.Port))
	return &Source{
		db:       db,
		endpoint: endpoint,
		creds:    awsCfg.Credentials,
		log: o.logger.With(slog.String("user", db.User), slog.String("endpoint", endpoint),
			slog.String("region", db.Region)),
	}, nil
}

// validate refuses what cannot make a usable token, naming the field.
func (db DB) validate() error {
	var errs []error
	switch {
	case db.Host == "":
		errs = append(errs, errors.New("rdsiam: empty host"))
	case strings.HasPrefix(db.Host, "/") || strings.HasPrefix(db.Host, "@"):
		errs = append(errs, fmt.Errorf("rdsiam: host %q is a unix socket; IAM authentication is over TCP", db.Host))
	case !isHostName(db.Host):
		errs = append(errs, fmt.Errorf("rdsiam: host %q is not one host name or IP address", db.Host))
	}
	if db.Port < 1 || db.Port > 65535 {
		errs = append(errs, fmt.Errorf("rdsiam: port %d is out of range 1..65535", db.Port))
	}
	switch {
	case db.User == "":
		errs = append(errs, errors.New("rdsiam: empty database user"))
	case strings.ContainsFunc(db.User, func(r rune) bool { return r < ' ' || r == 0x7f }):
		errs = append(errs, errors.New("rdsiam: the database user contains a control character"))
	}
	switch {
	case db.Region == "":
		errs = append(errs, errors.New("rdsiam: no AWS region: set DB.Region, AWS_REGION or a region in the AWS profile"))
	case strings.Trim(db.Region, "abcdefghijklmnopqrstuvwxyz0123456789-") != "":
		errs = append(errs, fmt.Errorf("rdsiam: region %q is not an AWS region name", db.Region))
	}
	return errors.Join(errs...)
}

// isHostName reports whether h is an IP address (without a zone) or an
// ASCII host name: what an RDS endpoint is, and what the token's URL can
// hold as it is.
func isHostName(h string) bool {
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Zone() == ""
	}
	return len(h) <= 253 && !strings.ContainsFunc(h, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '.' || r == '_')
	})
}

// Describe returns "rds-iam USER@HOST:PORT REGION".
func (s *Source) Describe() string {
	return "rds-iam " + s.db.User + "@" + s.endpoint + " " + s.db.Region
}

// String returns Describe().
func (s *Source) String() string { return s.Describe() }

// Format implements fmt.Formatter: every verb prints Describe(), so that
// %+v of a Source never prints its credentials provider, which may hold a
// secret access key (credentials.StaticCredentialsProvider does).
func (s *Source) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprint(f, strconv.Quote(s.Describe()))
		return
	}
	fmt.Fprint(f, s.Describe())
}

// DB returns what the tokens are for, with the defaults filled in.
func (s *Source) DB() DB { return s.db }

// Fetch builds a new token: it retrieves the AWS credentials from the
// provider (cached by an aws.CredentialsCache, so usually no network
// call) and signs the token with them, locally. The credential is
//
//   - Username: DB.User; Password: the token;
//   - Host and Port: DB.Host and DB.Port, the endpoint the token is bound
//     to (the connector uses them only where the DSN leaves them unset,
//     unless rotating.WithEndpointFromSecret);
//   - Version: the token's signing time, in RFC 3339 (not a secret);
//   - Expires: the signing time plus [TokenLifetime], or the AWS
//     credentials' own expiry if that comes first, since RDS refuses a
//     token whose credentials have expired;
//   - SessionsEnd: zero, since sessions outlive their token.
//
// Before signing, Fetch has the credentials provider refresh the AWS
// credentials (aws.CredentialsCache.Invalidate, then one more Retrieve)
// when they are the very ones the previous token was signed with and
//
//   - their expiry cut that token short: a token signed with them would
//     be no better; or
//   - that token is not half-way through its life yet: the connector asks
//     that early only after the database refused a login, and a refusal
//     may be the credentials' fault (a revoked role session, a deactivated
//     key) while the cache would keep handing them out until they expire.
//     This refresh is made at most once a minute.
func (s *Source) Fetch(ctx context.Context) (secrets.Credential, error) {
	creds, refreshed, err := s.retrieve(ctx)
	if err != nil {
		return secrets.Credential{}, s.fail(ctx, OpRetrieveCredentials, err)
	}
	token, err := auth.BuildAuthToken(ctx, s.endpoint, s.db.Region, s.db.User,
		aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return creds, nil }))
	if err != nil {
		return secrets.Credential{}, s.fail(ctx, OpBuildToken, err)
	}
	signed, life, err := signingTime(token)
	if err != nil {
		return secrets.Credential{}, s.fail(ctx, OpBuildToken, err)
	}
	expires, capped := signed.Add(life), false
	if creds.CanExpire && creds.Expires.Before(expires) {
		expires, capped = creds.Expires, true
	}
	s.mu.Lock()
	s.last = previousToken{accessKeyID: creds.AccessKeyID, credsExpire: creds.Expires,
		signed: signed, expires: expires, cappedByCreds: capped}
	s.mu.Unlock()

	cred := secrets.Credential{
		Username: s.db.User,
		Password: token,
		Host:     s.db.Host,
		Port:     s.db.Port,
		Version:  signed.UTC().Format(time.RFC3339),
		Expires:  expires,
	}
	bound := "token lifetime"
	if capped {
		bound = "AWS credentials' expiry"
	}
	attrs := []slog.Attr{slog.String("version", cred.Version), slog.Time("expires", expires),
		slog.String("expiry_bound_by", bound), slog.String("credentials_source", creds.Source)}
	if refreshed != "" {
		attrs = append(attrs, slog.String("credentials_refreshed", refreshed))
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, "rdsiam: built auth token", attrs...)
	return cred, nil
}

// retrieve returns the AWS credentials to sign with, and why it made the
// provider refresh them ("" if it did not; see Fetch).
func (s *Source) retrieve(ctx context.Context) (aws.Credentials, string, error) {
	creds, err := s.creds.Retrieve(ctx)
	if err != nil {
		return aws.Credentials{}, "", redactProviderError(err)
	}
	refreshed := ""
	if inv, ok := s.creds.(interface{ Invalidate() }); ok {
		if refreshed = s.needsRefresh(creds, time.Now()); refreshed != "" {
			inv.Invalidate()
			if creds, err = s.creds.Retrieve(ctx); err != nil {
				return aws.Credentials{}, refreshed, redactProviderError(err)
			}
		}
	}
	if !creds.HasKeys() {
		return aws.Credentials{}, refreshed, ErrNoAccessKey
	}
	if creds.CanExpire && !time.Now().Before(creds.Expires) {
		return aws.Credentials{}, refreshed, fmt.Errorf("%w at %s (provider %s)", ErrCredentialsExpired,
			creds.Expires.UTC().Format(time.RFC3339), creds.Source)
	}
	return creds, refreshed, nil
}

// needsRefresh says why the provider should refresh creds before they
// sign a token, or "" (see Fetch). It records the refresh it asks for.
func (s *Source) needsRefresh(creds aws.Credentials, now time.Time) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := s.last
	if last.accessKeyID == "" || creds.AccessKeyID != last.accessKeyID || !creds.Expires.Equal(last.credsExpire) {
		return ""
	}
	why := ""
	switch {
	case last.cappedByCreds && creds.CanExpire:
		why = "they expire with the previous token"
	case now.Before(last.signed.Add(last.expires.Sub(last.signed)/2)) && now.Sub(s.invalidated) >= refreshAfterRejectionEvery:
		why = "asked early, after a refused login"
	default:
		return ""
	}
	s.invalidated = now
	return why
}

func (s *Source) fail(ctx context.Context, op string, err error) error {
	e := &Error{Op: op, User: s.db.User, Endpoint: s.endpoint, Region: s.db.Region, Err: err}
	s.log.LogAttrs(ctx, slog.LevelDebug, "rdsiam: building auth token failed",
		slog.String("op", op), slog.Any("error", e))
	return e
}

// errUnexpectedToken means BuildAuthToken returned something that is not a
// presigned URL with a signing time and a lifetime: an SDK change.
var errUnexpectedToken = errors.New("the SDK's token has no X-Amz-Date or X-Amz-Expires (contents withheld)")

// signingTime reads when the token was signed and for how long from its
// X-Amz-Date and X-Amz-Expires parameters: RDS's own clock for the token,
// to the second.
func signingTime(token string) (time.Time, time.Duration, error) {
	_, query, ok := strings.Cut(token, "?")
	if !ok {
		return time.Time{}, 0, errUnexpectedToken
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return time.Time{}, 0, errUnexpectedToken
	}
	signed, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	if err != nil {
		return time.Time{}, 0, errUnexpectedToken
	}
	secs, err := strconv.Atoi(q.Get("X-Amz-Expires"))
	if err != nil || secs <= 0 {
		return time.Time{}, 0, errUnexpectedToken
	}
	return signed, time.Duration(secs) * time.Second, nil
}
