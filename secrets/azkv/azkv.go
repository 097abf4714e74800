package azkv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/pgrotate/rotating/secrets"
)

// API is the part of the azsecrets client that a [Source] uses.
// *azsecrets.Client implements it; tests may substitute their own.
type API interface {
	GetSecret(ctx context.Context, name, version string, options *azsecrets.GetSecretOptions) (azsecrets.GetSecretResponse, error)
}

// Compile-time checks.
var (
	_ API               = (*azsecrets.Client)(nil)
	_ secrets.Source    = (*Source)(nil)
	_ secrets.Describer = (*Source)(nil)
)

// Source reads a credential from one Azure Key Vault secret. It implements
// [secrets.Source] and [secrets.Describer]; Key Vault has no pending
// stage, so it does not implement secrets.PendingSource. A Source is
// immutable and safe for concurrent use; it caches nothing (the connector
// does).
type Source struct {
	client  API
	vault   string // as given to New, without a trailing slash; "" for NewFromClient
	name    string
	version string // "" for the latest
	keys    secrets.Keys
	retry   policy.RetryOptions
	log     *slog.Logger
}

// New returns a Source that reads the secret name from the vault at
// vaultURL, such as "https://myvault.vault.azure.net/", with an azsecrets
// client of its own. The client authenticates with azidentity's
// DefaultAzureCredential (environment variables, workload identity, a
// managed identity, the Azure CLI, in that order), built here once, or
// with the credential given with [WithCredential]; [WithClientOptions]
// configures it further. No request is made until the first Fetch.
//
// vaultURL must be an https URL without user information, query or
// fragment; name must be a Key Vault secret name (1 to 127 letters, digits
// and dashes).
func New(vaultURL, name string, opts ...Option) (*Source, error) {
	cfg := defaultOptions()
	for _, opt := range opts {
		opt(&cfg)
	}
	vault, err := checkVaultURL(vaultURL)
	if err != nil {
		cfg.errs = append(cfg.errs, err)
	}
	if !validName(name) {
		cfg.invalid("secret name %q: a Key Vault secret name is 1 to 127 letters, digits and dashes", name)
	}
	if err := cfg.err(); err != nil {
		return nil, err
	}
	cred := cfg.credential
	if cred == nil {
		dac, err := azidentity.NewDefaultAzureCredential(nil)
		if err != nil {
			return nil, fmt.Errorf("azkv: DefaultAzureCredential: %w", err)
		}
		cred = dac
	}
	client, err := azsecrets.NewClient(vault, cred, cfg.clientOptions)
	if err != nil {
		return nil, fmt.Errorf("azkv: azsecrets.NewClient: %w", err)
	}
	return newSource(client, vault, name, cfg), nil
}

// NewFromClient returns a Source that reads the secret name with client,
// an *azsecrets.Client built by the caller (with its own credential and
// options). [WithCredential] and [WithClientOptions] are refused here.
func NewFromClient(client API, name string, opts ...Option) (*Source, error) {
	cfg := defaultOptions()
	for _, opt := range opts {
		opt(&cfg)
	}
	if c, ok := client.(*azsecrets.Client); client == nil || ok && c == nil {
		cfg.invalid("nil client")
	}
	if !validName(name) {
		cfg.invalid("secret name %q: a Key Vault secret name is 1 to 127 letters, digits and dashes", name)
	}
	if cfg.credential != nil {
		cfg.invalid("WithCredential: NewFromClient uses the client's own credential")
	}
	if cfg.clientOptions != nil {
		cfg.invalid("WithClientOptions: NewFromClient uses the client's own options")
	}
	if err := cfg.err(); err != nil {
		return nil, err
	}
	return newSource(client, "", name, cfg), nil
}

func newSource(client API, vault, name string, cfg options) *Source {
	log := cfg.logger.With(slog.String("secret", name))
	if vault != "" {
		log = log.With(slog.String("vault", vault))
	}
	return &Source{
		client:  client,
		vault:   vault,
		name:    name,
		version: cfg.version,
		keys:    cfg.keys,
		retry:   cfg.retry,
		log:     log,
	}
}

// checkVaultURL returns vaultURL without a trailing slash, or an error
// wrapping ErrInvalidOption that does not quote a user information part.
func checkVaultURL(vaultURL string) (string, error) {
	u, err := url.Parse(vaultURL)
	switch {
	case err != nil:
		return "", fmt.Errorf("%w: the vault URL does not parse", ErrInvalidOption)
	case u.User != nil:
		return "", fmt.Errorf("%w: the vault URL must not hold user information", ErrInvalidOption)
	case u.Scheme != "https":
		return "", fmt.Errorf("%w: the vault URL must be https (the client sends tokens over TLS only), got scheme %q", ErrInvalidOption, u.Scheme)
	case u.Host == "":
		return "", fmt.Errorf("%w: the vault URL %q has no host", ErrInvalidOption, vaultURL)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
		return "", fmt.Errorf("%w: the vault URL %q must be only scheme and host, such as https://myvault.vault.azure.net/", ErrInvalidOption, vaultURL)
	}
	return "https://" + u.Host, nil
}

// Describe returns "azure-keyvault <vault>/secrets/<name>", with
// "/<version>" for a pinned version; without the vault for a source from
// NewFromClient.
func (s *Source) Describe() string {
	d := "azure-keyvault " + s.vault + "/secrets/" + s.name
	if s.vault == "" {
		d = "azure-keyvault secret " + s.name
	}
	if s.version != "" {
		d += "/" + s.version
	}
	return d
}

// Fetch reads the latest version of the secret (or the version given with
// WithVersion) with one GetSecret call, the client's retries aside, and
// parses its value with [secrets.ParseSecret]. The credential's Version is
// Key Vault's version id; its Expires is the version's expiry attribute
// ("exp"), when set. A disabled version is an error matching
// [ErrDisabled]; every failure is an [*Error].
func (s *Source) Fetch(ctx context.Context) (secrets.Credential, error) {
	var last *http.Response // Key Vault's last answer, even when the call fails
	callCtx := policy.WithCaptureResponse(ctx, &last)
	callCtx = policy.WithRetryOptions(callCtx, s.retry)
	resp, err := s.client.GetSecret(callCtx, s.name, s.version, nil)
	if err != nil {
		e := s.newError(s.version)
		e.describeAnswer(last)
		var re *azcore.ResponseError
		switch {
		case errors.As(err, &re):
			if last == nil {
				e.describeAnswer(re.RawResponse)
			}
			if e.StatusCode == 0 {
				e.StatusCode = re.StatusCode
			}
			e.Err = err
		case last != nil && last.StatusCode < 300:
			// An answer that came but could not be parsed. The parser's
			// message may quote the body, which holds the value.
			e.Err = errUnparsedAnswer
		default:
			e.Err = err
		}
		s.log.LogAttrs(ctx, slog.LevelDebug, "azkv: GetSecret failed",
			slog.String("version", s.version), slog.Int("status", e.StatusCode), slog.Any("error", e))
		return secrets.Credential{}, e
	}
	cred, err := s.parse(resp.Secret)
	if err != nil {
		e := s.newError(cred.Version)
		e.Err = err
		s.log.LogAttrs(ctx, slog.LevelDebug, "azkv: secret value unusable",
			slog.String("version", cred.Version), slog.Any("error", e))
		return secrets.Credential{}, e
	}
	attrs := []slog.Attr{slog.String("version", cred.Version)}
	if !cred.Expires.IsZero() {
		attrs = append(attrs, slog.Time("expires", cred.Expires))
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, "azkv: fetched secret", attrs...)
	return cred, nil
}

func (s *Source) newError(version string) *Error {
	return &Error{Vault: s.vault, Name: s.name, Version: version}
}

// errUnparsedAnswer replaces the cause of an answer the client could not
// parse.
var errUnparsedAnswer = errors.New("the answer could not be parsed (details withheld: they may quote the secret value)")

// Content types that mark the secret behind a Key Vault certificate, whose
// value is a key and a certificate, not a password.
var certificateContentTypes = []string{"application/x-pkcs12", "application/x-pem-file"}

// parse turns Key Vault's secret into a credential. On error the returned
// credential carries only the Version, for the error.
func (s *Source) parse(sec azsecrets.Secret) (secrets.Credential, error) {
	var version string
	if sec.ID != nil {
		version = sec.ID.Version()
	}
	fail := func(err error) (secrets.Credential, error) {
		return secrets.Credential{Version: version}, err
	}
	if a := sec.Attributes; a != nil && a.Enabled != nil && !*a.Enabled {
		return fail(fmt.Errorf("%w: the answer marks the version disabled", ErrDisabled))
	}
	if sec.ContentType != nil {
		mt, _, _ := mime.ParseMediaType(*sec.ContentType)
		for _, ct := range certificateContentTypes {
			if strings.EqualFold(mt, ct) {
				return fail(fmt.Errorf("%w: the secret has content type %s: it backs a Key Vault certificate, not a password", secrets.ErrMalformed, ct))
			}
		}
	}
	if sec.Value == nil {
		return fail(fmt.Errorf("%w: the answer holds no value", secrets.ErrEmptyPassword))
	}
	cred, err := secrets.ParseSecret([]byte(*sec.Value), s.keys)
	if err != nil {
		return fail(err)
	}
	cred.Version = version
	if a := sec.Attributes; a != nil && a.Expires != nil {
		cred.Expires = *a.Expires
	}
	return cred, nil
}
