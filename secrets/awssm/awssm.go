package awssm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/awssm/internal/secretvalue"
)

// Staging labels that Secrets Manager's rotation gives a meaning to.
const (
	// StageCurrent labels the version applications should use; Fetch reads
	// it unless WithVersionStage says otherwise.
	StageCurrent = "AWSCURRENT"
	// StagePending labels the version a rotation is creating; FetchPending
	// reads it.
	StagePending = "AWSPENDING"
)

// Values of [Error].Op.
const (
	OpFetch        = "Fetch"
	OpFetchPending = "FetchPending"
)

// API is the part of the Secrets Manager client that a [Source] uses.
// *secretsmanager.Client implements it; tests may substitute their own.
type API interface {
	GetSecretValue(ctx context.Context, params *secretsmanager.GetSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// Compile-time checks.
var (
	_ API                   = (*secretsmanager.Client)(nil)
	_ secrets.PendingSource = (*Source)(nil)
	_ secrets.Describer     = (*Source)(nil)
)

// Source reads a credential from one AWS Secrets Manager secret. It
// implements [secrets.PendingSource] and [secrets.Describer]. A Source is
// immutable and safe for concurrent use; it caches nothing (the connector
// does).
type Source struct {
	client   API
	secretID string
	stage    string
	keys     secrets.Keys
	log      *slog.Logger
}

// New returns a Source that reads the secret secretID (a name or an ARN;
// use the full ARN for a secret in another account) with client.
func New(client API, secretID string, opts ...Option) (*Source, error) {
	if c, ok := client.(*secretsmanager.Client); client == nil || ok && c == nil {
		return nil, errors.New("awssm: nil client")
	}
	if secretID == "" {
		return nil, errors.New("awssm: empty secret id")
	}
	cfg := defaultOptions()
	for _, opt := range opts {
		opt(&cfg)
	}
	if err := cfg.err(); err != nil {
		return nil, err
	}
	return &Source{
		client:   client,
		secretID: secretID,
		stage:    cfg.stage,
		keys:     cfg.keys,
		log:      cfg.logger.With(slog.String("secret_id", secretID)),
	}, nil
}

// NewFromConfig is [New] with a client built from the SDK's default
// configuration, loaded once with config.LoadDefaultConfig(ctx): region,
// shared config and credentials files, the AWS_PROFILE in use, and
// service endpoint overrides such as AWS_ENDPOINT_URL_SECRETS_MANAGER.
// ctx bounds the loading only. AWS credentials are resolved lazily, on the
// first Fetch, and refreshed by the SDK as they expire.
func NewFromConfig(ctx context.Context, secretID string, opts ...Option) (*Source, error) {
	if secretID == "" {
		return nil, errors.New("awssm: empty secret id")
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("awssm: loading AWS configuration: %w", err)
	}
	return New(secretsmanager.NewFromConfig(awsCfg), secretID, opts...)
}

// Describe returns "aws-secretsmanager <secret id>", or with " <stage>"
// appended when WithVersionStage chose a label other than AWSCURRENT.
func (s *Source) Describe() string {
	d := "aws-secretsmanager " + s.secretID
	if s.stage != StageCurrent {
		d += " " + s.stage
	}
	return d
}

// Fetch reads the version labelled AWSCURRENT (or the label given with
// WithVersionStage) with one GetSecretValue call and parses its value. The
// credential's Version is the VersionId.
func (s *Source) Fetch(ctx context.Context) (secrets.Credential, error) {
	out, err := s.get(ctx, s.stage)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelDebug, "awssm: GetSecretValue failed",
			slog.String("stage", s.stage), slog.Any("error", err))
		return secrets.Credential{}, &Error{SecretID: s.secretID, Op: OpFetch, Stage: s.stage, Err: err}
	}
	cred, err := s.parse(out)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelDebug, "awssm: secret value unusable",
			slog.String("stage", s.stage), slog.String("version", cred.Version), slog.Any("error", err))
		return secrets.Credential{}, &Error{SecretID: s.secretID, Op: OpFetch, Stage: s.stage, VersionID: cred.Version, Err: err}
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, "awssm: fetched secret",
		slog.String("stage", s.stage), slog.String("version", cred.Version))
	return cred, nil
}

// FetchPending reads the version labelled AWSPENDING with one
// GetSecretValue call. It returns an *Error wrapping [secrets.ErrNoPending]
// if no version carries the label or the pending version has no value yet
// (both answered by Secrets Manager with ResourceNotFoundException, which
// stays reachable with errors.As), or if the pending version is the version
// or holds the login of rejected. Any other failure is an *Error as for
// Fetch.
//
// A pending version that also carries the label Fetch reads (AWSCURRENT by
// default) is returned like any other when it is neither rejected's version
// nor its login: finishSecret moved AWSCURRENT onto it after the Fetch that
// returned rejected (AWSPENDING stays on the new version for a while), so
// it is the new current credential. When it is rejected's version or login,
// the rotation finished before that Fetch and nothing is pending.
func (s *Source) FetchPending(ctx context.Context, rejected secrets.Credential) (secrets.Credential, error) {
	fail := func(version string, err error) (secrets.Credential, error) {
		return secrets.Credential{}, &Error{SecretID: s.secretID, Op: OpFetchPending, Stage: StagePending, VersionID: version, Err: err}
	}
	noPending := func(version, why string) (secrets.Credential, error) {
		s.log.LogAttrs(ctx, slog.LevelDebug, "awssm: no pending credential",
			slog.String("version", version), slog.String("reason", why))
		return fail(version, fmt.Errorf("%w: %s", secrets.ErrNoPending, why))
	}

	out, err := s.get(ctx, StagePending)
	if err != nil {
		var notFound *types.ResourceNotFoundException
		if errors.As(err, &notFound) {
			s.log.LogAttrs(ctx, slog.LevelDebug, "awssm: no pending credential",
				slog.String("reason", "no version with a value carries "+StagePending))
			return fail("", fmt.Errorf("%w: %w", secrets.ErrNoPending, err))
		}
		s.log.LogAttrs(ctx, slog.LevelDebug, "awssm: GetSecretValue failed",
			slog.String("stage", StagePending), slog.Any("error", err))
		return fail("", err)
	}
	version := aws.ToString(out.VersionId)
	cred, finished, whyNone, err := valueOf(out).Pending(s.stage, rejected, s.keys)
	switch {
	case whyNone != "":
		return noPending(version, whyNone)
	case err != nil:
		s.log.LogAttrs(ctx, slog.LevelDebug, "awssm: secret value unusable",
			slog.String("stage", StagePending), slog.String("version", version), slog.Any("error", err))
		return fail(version, err)
	}
	msg := "awssm: fetched secret"
	if finished {
		msg = "awssm: fetched secret; the rotation finished since the rejected credential was fetched"
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, msg,
		slog.String("stage", StagePending), slog.String("version", version))
	return cred, nil
}

// get makes the one GetSecretValue call of a Fetch or FetchPending.
func (s *Source) get(ctx context.Context, stage string) (*secretsmanager.GetSecretValueOutput, error) {
	out, err := s.client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{
		SecretId:     aws.String(s.secretID),
		VersionStage: aws.String(stage),
	})
	if err != nil {
		return nil, redactDeserializationError(err)
	}
	return out, nil
}

// errUnparsedAnswer replaces the cause of an SDK deserialization error.
var errUnparsedAnswer = errors.New("the answer could not be parsed (details withheld: they may quote the secret value)")

// redactDeserializationError replaces an SDK error that reports an answer
// the SDK could not parse with one that keeps its types (so that errors.As
// still finds *smithy.OperationError, *awshttp.ResponseError and
// *smithy.DeserializationError) but not its detail. A GetSecretValue answer
// holds the secret value, and the parser's messages may quote the token it
// choked on ("cannot unquote ...") or keep a snapshot of the body.
func redactDeserializationError(err error) error {
	var de *smithy.DeserializationError
	if !errors.As(err, &de) {
		return err
	}
	var redacted error = &smithy.DeserializationError{Err: errUnparsedAnswer}
	if re := (*awshttp.ResponseError)(nil); errors.As(err, &re) && re.ResponseError != nil && re.Response != nil {
		redacted = &awshttp.ResponseError{
			ResponseError: &smithyhttp.ResponseError{Response: re.Response, Err: redacted},
			RequestID:     re.RequestID,
		}
	}
	if oe := (*smithy.OperationError)(nil); errors.As(err, &oe) {
		redacted = &smithy.OperationError{ServiceID: oe.ServiceID, OperationName: oe.OperationName, Err: redacted}
	}
	return redacted
}

// parse turns a GetSecretValue answer into a credential. On error the
// returned credential carries only the Version, for the error.
func (s *Source) parse(out *secretsmanager.GetSecretValueOutput) (secrets.Credential, error) {
	return valueOf(out).Credential(s.keys)
}

// valueOf is the part of an answer that the rules of package secretvalue,
// shared with the Secrets Manager Agent's source, read.
func valueOf(out *secretsmanager.GetSecretValueOutput) secretvalue.Value {
	return secretvalue.Value{
		VersionID:     aws.ToString(out.VersionId),
		SecretString:  out.SecretString,
		SecretBinary:  out.SecretBinary,
		VersionStages: out.VersionStages,
	}
}
