package rotation

import (
	"context"
	"crypto/rand"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/lib/pq"
)

// Staging labels that Secrets Manager gives a meaning to.
const (
	StageCurrent  = "AWSCURRENT"
	StagePrevious = "AWSPREVIOUS"
	StagePending  = "AWSPENDING"
)

// API is the part of the Secrets Manager client that a Rotator uses.
// *secretsmanager.Client satisfies it.
type API interface {
	// RotateSecret starts a rotation: the service attaches AWSPENDING to a
	// new, empty version whose id is the ClientRequestToken.
	RotateSecret(ctx context.Context, in *secretsmanager.RotateSecretInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.RotateSecretOutput, error)
	DescribeSecret(ctx context.Context, in *secretsmanager.DescribeSecretInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.DescribeSecretOutput, error)
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
	PutSecretValue(ctx context.Context, in *secretsmanager.PutSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error)
	UpdateSecretVersionStage(ctx context.Context, in *secretsmanager.UpdateSecretVersionStageInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.UpdateSecretVersionStageOutput, error)
	GetRandomPassword(ctx context.Context, in *secretsmanager.GetRandomPasswordInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.GetRandomPasswordOutput, error)
}

var _ API = (*secretsmanager.Client)(nil)

// Strategy is how a rotation changes the database login.
type Strategy int

const (
	// SingleUser changes the password of the secret's user, logging in as
	// that user (AWS's SecretsManagerRDSPostgreSQLRotationSingleUser). Between
	// setSecret and finishSecret the AWSCURRENT password no longer works.
	SingleUser Strategy = iota

	// AlternatingUsers switches the secret between two users, u and
	// u_clone, and sets a new password on the one not in use, logging in
	// with a master secret (AWS's SecretsManagerRDSPostgreSQLRotationMultiUser).
	// The first rotation creates u_clone as a member of u. AWSCURRENT and
	// AWSPREVIOUS both keep working after each rotation.
	AlternatingUsers
)

// String returns "single-user" or "alternating-users".
func (s Strategy) String() string {
	switch s {
	case SingleUser:
		return "single-user"
	case AlternatingUsers:
		return "alternating-users"
	}
	return fmt.Sprintf("Strategy(%d)", int(s))
}

// Step is one of the four steps of a rotation, in the order they run.
type Step int

const (
	// StepCreate (createSecret) stores a new version with a new password
	// under AWSPENDING. The database is untouched.
	StepCreate Step = iota + 1
	// StepSet (setSecret) changes the database to accept the AWSPENDING
	// credential. In a single-user rotation the AWSCURRENT password stops
	// working here.
	StepSet
	// StepTest (testSecret) logs in with AWSPENDING.
	StepTest
	// StepFinish (finishSecret) moves AWSCURRENT to the new version; the
	// service moves AWSPREVIOUS to the version that had it.
	StepFinish
)

// Steps lists the steps in the order a rotation runs them.
var Steps = []Step{StepCreate, StepSet, StepTest, StepFinish}

var stepNames = [...]string{"", "createSecret", "setSecret", "testSecret", "finishSecret"}

// String returns the step's name as AWS passes it to a rotation function:
// "createSecret", "setSecret", "testSecret" or "finishSecret".
func (s Step) String() string {
	if s.valid() {
		return stepNames[s]
	}
	return fmt.Sprintf("Step(%d)", int(s))
}

func (s Step) valid() bool { return s >= StepCreate && s <= StepFinish }

// ParseStep returns the Step named name, as in the "Step" field of the event
// Secrets Manager sends a rotation function.
func ParseStep(name string) (Step, error) {
	if i := slices.Index(stepNames[:], name); i > 0 {
		return Step(i), nil
	}
	return 0, fmt.Errorf("rotation: unknown step %q", name)
}

// Defaults applied by New to zero fields of Options.
const (
	// DefaultPasswordExclude is the set of characters AWS's rotation
	// functions exclude from generated passwords: they have a meaning in
	// URLs, DSNs and shells.
	DefaultPasswordExclude = `:/@"'\`
	// DefaultPasswordLength is GetRandomPassword's default length.
	DefaultPasswordLength = 32
	// DefaultSSLMode requires TLS (without verifying the certificate),
	// which RDS supports and can enforce.
	DefaultSSLMode = pq.SSLModeRequire
	// DefaultConnectTimeout bounds each login.
	DefaultConnectTimeout = 10 * time.Second
)

// maxPasswordLength is GetRandomPassword's largest length.
const maxPasswordLength = 4096

// maxIdentifierLength is PostgreSQL's NAMEDATALEN-1: longer role names are
// silently truncated, which would make u_clone collide.
const maxIdentifierLength = 63

// Hook is called after each step that succeeded, with the step, the secret
// as the caller named it and the rotation's token. An error from the hook
// stops the rotation and is returned, wrapped in a *StepError. A hook may
// block, for example to hold the window between setSecret and finishSecret
// open in a test, but should return when ctx is done.
type Hook func(ctx context.Context, step Step, secretID, token string) error

// NewConnectorFunc opens connections for one login. cfg is a complete
// lib/pq configuration built from a secret (host, port, dbname, user,
// password, sslmode, connect_timeout); it is a copy the function may keep.
type NewConnectorFunc func(cfg pq.Config) (driver.Connector, error)

// Options configures a Rotator. The zero value rotates a single user over
// TLS with AWS's default password policy.
type Options struct {
	// Strategy is SingleUser (the default) or AlternatingUsers.
	Strategy Strategy

	// MasterSecretID names the secret (a name or an ARN) whose AWSCURRENT
	// credential creates and alters users in an AlternatingUsers rotation.
	// If empty, the masterarn field of the secret being rotated is used, as
	// AWS's rotation function does. The master secret's dbname is ignored:
	// the master logs in to the rotated secret's database.
	MasterSecretID string

	// Hook, if set, is called after each step.
	Hook Hook

	// Logger receives a line per step and the decisions within steps, with
	// secret ids, version ids and usernames, never a password. Nil logs
	// nothing.
	Logger *slog.Logger

	// PasswordExclude is the set of characters a new password must not
	// contain, passed to GetRandomPassword as ExcludeCharacters. Empty means
	// DefaultPasswordExclude.
	PasswordExclude string

	// PasswordLength is the length of a new password, in 1..4096. Zero
	// means DefaultPasswordLength.
	PasswordLength int

	// SSLMode is lib/pq's sslmode for every login. Empty means
	// DefaultSSLMode ("require"); tests against a local server without TLS
	// use pq.SSLModeDisable.
	SSLMode pq.SSLMode

	// ConnectTimeout bounds each login (lib/pq's connect_timeout), and is
	// shortened to the context's deadline if that comes first. Zero means
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration

	// NewConnector replaces how logins are made, for other drivers or for
	// tests. Nil means pq.NewConnectorConfig.
	NewConnector NewConnectorFunc
}

// Rotator runs AWS's four-step rotation of a PostgreSQL secret. Its
// methods are safe for concurrent use, but two rotations of the same secret
// at once fail as they would on AWS: Secrets Manager allows one AWSPENDING
// version at a time.
type Rotator struct {
	client API
	opts   Options // defaults applied; read-only after New
	log    *slog.Logger
	err    error // from New's validation; returned by every method
}

// New returns a Rotator that calls the Secrets Manager API through client.
// Invalid options (or a nil client) are not reported here but by every
// method, as an error wrapping ErrInvalidOptions.
func New(client API, opts Options) *Rotator {
	r := &Rotator{client: client, opts: opts, log: opts.Logger}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.opts.PasswordExclude == "" {
		r.opts.PasswordExclude = DefaultPasswordExclude
	}
	if r.opts.PasswordLength == 0 {
		r.opts.PasswordLength = DefaultPasswordLength
	}
	if r.opts.SSLMode == "" {
		r.opts.SSLMode = DefaultSSLMode
	}
	if r.opts.ConnectTimeout == 0 {
		r.opts.ConnectTimeout = DefaultConnectTimeout
	}
	if r.opts.NewConnector == nil {
		r.opts.NewConnector = func(cfg pq.Config) (driver.Connector, error) { return pq.NewConnectorConfig(cfg) }
	}
	r.err = r.validate()
	return r
}

func (r *Rotator) validate() error {
	o := &r.opts
	switch {
	case r.client == nil:
		return fmt.Errorf("%w: nil client", ErrInvalidOptions)
	case o.Strategy != SingleUser && o.Strategy != AlternatingUsers:
		return fmt.Errorf("%w: unknown strategy %d", ErrInvalidOptions, int(o.Strategy))
	case o.PasswordLength < 1 || o.PasswordLength > maxPasswordLength:
		return fmt.Errorf("%w: PasswordLength %d is not in 1..%d", ErrInvalidOptions, o.PasswordLength, maxPasswordLength)
	case o.ConnectTimeout < 0:
		return fmt.Errorf("%w: negative ConnectTimeout", ErrInvalidOptions)
	}
	switch o.SSLMode {
	case pq.SSLModeDisable, pq.SSLModeAllow, pq.SSLModePrefer, pq.SSLModeRequire, pq.SSLModeVerifyCA, pq.SSLModeVerifyFull:
	default:
		return fmt.Errorf("%w: unknown SSLMode %q", ErrInvalidOptions, o.SSLMode)
	}
	return nil
}

// Rotate rotates the secret now, playing the part of both Secrets Manager
// and its rotation function: Start, then the four steps with the token
// Start returned. It returns the new version's id, which is also returned
// with an error once the rotation has started, so that the caller can
// inspect or finish it (RunSteps with the same token).
//
// If an earlier rotation of the secret did not finish (a version carries
// AWSPENDING but not AWSCURRENT), Rotate completes that one instead of
// starting another, as Secrets Manager reattempts an unfinished rotation.
//
// Against AWS itself, RotateSecret also invokes the rotation function
// configured on the secret, which would race with this one: use Rotate with
// a Secrets Manager-compatible endpoint that runs no function (such as
// awssmtest), and call the steps from a function's handler (RunStep) on AWS.
func (r *Rotator) Rotate(ctx context.Context, secretID string) (newVersionID string, err error) {
	token, err := r.Start(ctx, secretID)
	if err != nil {
		return "", err
	}
	return token, r.RunSteps(ctx, secretID, token)
}

// Start begins a rotation of the secret and returns its token: the id of
// the new version, which carries AWSPENDING and has no value until
// createSecret. It calls RotateSecret with a new random ClientRequestToken,
// unless a version already carries AWSPENDING without AWSCURRENT (an
// unfinished rotation), whose id it returns without calling RotateSecret.
func (r *Rotator) Start(ctx context.Context, secretID string) (token string, err error) {
	if r.err != nil {
		return "", r.err
	}
	fail := func(err error) (string, error) {
		return "", &StepError{SecretID: secretID, Token: token, Err: err}
	}
	desc, err := r.client.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(secretID)})
	if err != nil {
		return fail(fmt.Errorf("DescribeSecret: %w", err))
	}
	for id, stages := range desc.VersionIdsToStages {
		if slices.Contains(stages, StagePending) && !slices.Contains(stages, StageCurrent) {
			r.log.LogAttrs(ctx, slog.LevelInfo, "rotation: resuming unfinished rotation",
				slog.String("secret_id", secretID), slog.String("version", id))
			return id, nil
		}
	}
	if token, err = newToken(); err != nil {
		return fail(err)
	}
	if _, err := r.client.RotateSecret(ctx, &secretsmanager.RotateSecretInput{
		SecretId:           aws.String(secretID),
		ClientRequestToken: aws.String(token),
	}); err != nil {
		return fail(fmt.Errorf("RotateSecret: %w", err))
	}
	r.log.LogAttrs(ctx, slog.LevelInfo, "rotation: started",
		slog.String("secret_id", secretID), slog.String("version", token),
		slog.String("strategy", r.opts.Strategy.String()))
	return token, nil
}

// RunSteps runs the four steps in order for the rotation identified by
// token, stopping at the first error. It suits a hook that Secrets
// Manager-compatible test servers call after RotateSecret, such as
// awssmtest.WithOnRotate.
func (r *Rotator) RunSteps(ctx context.Context, secretID, token string) error {
	for _, step := range Steps {
		if err := r.RunStep(ctx, step, secretID, token); err != nil {
			return err
		}
	}
	r.log.LogAttrs(ctx, slog.LevelInfo, "rotation: finished",
		slog.String("secret_id", secretID), slog.String("version", token))
	return nil
}

// RunStep runs one step, as a rotation function's handler does for the event
// {"Step": step, "SecretId": secretID, "ClientRequestToken": token}.
func (r *Rotator) RunStep(ctx context.Context, step Step, secretID, token string) error {
	switch step {
	case StepCreate:
		return r.CreateSecret(ctx, secretID, token)
	case StepSet:
		return r.SetSecret(ctx, secretID, token)
	case StepTest:
		return r.TestSecret(ctx, secretID, token)
	case StepFinish:
		return r.FinishSecret(ctx, secretID, token)
	}
	return &StepError{Step: step, SecretID: secretID, Token: token, Err: fmt.Errorf("%w: unknown step %d", ErrInvalidOptions, int(step))}
}

// CreateSecret is the createSecret step: it stores a copy of the AWSCURRENT
// value with a new password from GetRandomPassword (and, for
// AlternatingUsers, the other username) as the token's version, labelled
// AWSPENDING. It does nothing if that version already has a value.
func (r *Rotator) CreateSecret(ctx context.Context, secretID, token string) error {
	return r.step(ctx, StepCreate, secretID, token, r.createSecret)
}

// SetSecret is the setSecret step: it makes the database accept the
// AWSPENDING credential. It does nothing if the AWSPENDING credential can
// already log in.
//
// SingleUser logs in with AWSCURRENT (or else AWSPREVIOUS) and runs ALTER
// USER ... WITH PASSWORD. AlternatingUsers checks that AWSCURRENT can log
// in, then logs in with the master secret and either creates the pending
// user (CREATE ROLE ... WITH LOGIN PASSWORD ...; GRANT <current user> TO
// <pending user>) or changes its password.
func (r *Rotator) SetSecret(ctx context.Context, secretID, token string) error {
	return r.step(ctx, StepSet, secretID, token, r.setSecret)
}

// TestSecret is the testSecret step: it logs in with the AWSPENDING
// credential and runs SELECT NOW().
func (r *Rotator) TestSecret(ctx context.Context, secretID, token string) error {
	return r.step(ctx, StepTest, secretID, token, r.testSecret)
}

// FinishSecret is the finishSecret step: UpdateSecretVersionStage moves
// AWSCURRENT to the token's version (and Secrets Manager moves AWSPREVIOUS
// to the version that had it). The AWSPENDING label is left where it is,
// as AWS's rotation functions leave it.
func (r *Rotator) FinishSecret(ctx context.Context, secretID, token string) error {
	return r.step(ctx, StepFinish, secretID, token, r.finishSecret)
}

// step runs the checks every handler of AWS's rotation functions makes
// before any step, then the step, then the hook. The checks: rotation is
// enabled, the token names a version, and that version carries AWSPENDING;
// if it carries AWSCURRENT the rotation is over and the step does nothing.
func (r *Rotator) step(ctx context.Context, step Step, secretID, token string, run func(ctx context.Context, secretID, token string) error) error {
	if r.err != nil {
		return r.err
	}
	fail := func(err error) error {
		return &StepError{Step: step, SecretID: secretID, Token: token, Err: err}
	}
	begin := time.Now()
	desc, err := r.client.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(secretID)})
	if err != nil {
		return fail(fmt.Errorf("DescribeSecret: %w", err))
	}
	if !aws.ToBool(desc.RotationEnabled) {
		return fail(ErrRotationNotEnabled)
	}
	stages, ok := desc.VersionIdsToStages[token]
	switch {
	case !ok:
		return fail(fmt.Errorf("%w: the secret has no version %s", ErrNotPending, token))
	case slices.Contains(stages, StageCurrent):
		r.log.LogAttrs(ctx, slog.LevelInfo, "rotation: version already AWSCURRENT; step skipped",
			slog.String("secret_id", secretID), slog.String("version", token), slog.String("step", step.String()))
	case !slices.Contains(stages, StagePending):
		return fail(fmt.Errorf("%w: version %s has labels %v", ErrNotPending, token, stages))
	default:
		if err := run(ctx, secretID, token); err != nil {
			return fail(err)
		}
		r.log.LogAttrs(ctx, slog.LevelInfo, "rotation: step done",
			slog.String("secret_id", secretID), slog.String("version", token), slog.String("step", step.String()),
			slog.Duration("elapsed", time.Since(begin)))
	}
	if r.opts.Hook != nil {
		if err := r.opts.Hook(ctx, step, secretID, token); err != nil {
			return fail(fmt.Errorf("hook: %w", err))
		}
	}
	return nil
}

// newToken returns a random version 4 UUID, the form of the tokens AWS
// makes, 36 characters long (ClientRequestToken takes 32 to 64).
func newToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", errors.New("rotation: no randomness for a ClientRequestToken")
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
