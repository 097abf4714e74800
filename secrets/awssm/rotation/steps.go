package rotation

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// The steps below follow AWS's rotation functions for PostgreSQL
// (SecretsManagerRDSPostgreSQLRotationSingleUser and ...MultiUser) step by
// step; Rotator.step has already checked that token is AWSPENDING and not
// AWSCURRENT. Comments mark where they deliberately differ.

func (r *Rotator) createSecret(ctx context.Context, secretID, token string) error {
	current, err := r.getSecret(ctx, secretID, StageCurrent, "")
	if err != nil {
		return err
	}
	_, err = r.client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{
		SecretId:     aws.String(secretID),
		VersionId:    aws.String(token),
		VersionStage: aws.String(StagePending),
	})
	if err == nil {
		r.log.LogAttrs(ctx, slog.LevelDebug, "rotation: AWSPENDING already has a value; createSecret has nothing to do",
			slog.String("secret_id", secretID), slog.String("version", token))
		return nil
	}
	if !isNotFound(err) {
		return fmt.Errorf("GetSecretValue AWSPENDING: %w", err)
	}
	username := current.cred.Username
	if r.opts.Strategy == AlternatingUsers {
		if username, err = alternateUsername(username); err != nil {
			return err
		}
	}
	password, err := r.newPassword(ctx)
	if err != nil {
		return err
	}
	value, err := current.withLogin(username, password)
	if err != nil {
		return err
	}
	if _, err := r.client.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId:           aws.String(secretID),
		ClientRequestToken: aws.String(token),
		SecretString:       aws.String(value),
		VersionStages:      []string{StagePending},
	}); err != nil {
		return fmt.Errorf("PutSecretValue AWSPENDING: %w", redact(err, password))
	}
	r.log.LogAttrs(ctx, slog.LevelDebug, "rotation: stored AWSPENDING",
		slog.String("secret_id", secretID), slog.String("version", token), slog.String("username", username))
	return nil
}

// newPassword asks GetRandomPassword for a password and checks it against
// the policy, so that a misbehaving endpoint cannot store a password that a
// DSN or a shell would mangle.
func (r *Rotator) newPassword(ctx context.Context) (string, error) {
	out, err := r.client.GetRandomPassword(ctx, &secretsmanager.GetRandomPasswordInput{
		ExcludeCharacters: aws.String(r.opts.PasswordExclude),
		PasswordLength:    aws.Int64(int64(r.opts.PasswordLength)),
	})
	if err != nil {
		return "", fmt.Errorf("GetRandomPassword: %w", err)
	}
	pw := aws.ToString(out.RandomPassword)
	switch {
	case utf8.RuneCountInString(pw) != r.opts.PasswordLength:
		return "", fmt.Errorf("%w: %d characters, want %d", ErrPasswordPolicy, utf8.RuneCountInString(pw), r.opts.PasswordLength)
	case strings.ContainsAny(pw, r.opts.PasswordExclude):
		return "", fmt.Errorf("%w: it contains an excluded character", ErrPasswordPolicy)
	case strings.IndexByte(pw, 0) >= 0 || !utf8.ValidString(pw):
		return "", fmt.Errorf("%w: it contains a NUL byte or invalid UTF-8", ErrPasswordPolicy)
	}
	return pw, nil
}

func (r *Rotator) setSecret(ctx context.Context, secretID, token string) error {
	current, err := r.getSecret(ctx, secretID, StageCurrent, "")
	if err != nil {
		return err
	}
	pending, err := r.getSecret(ctx, secretID, StagePending, token)
	if err != nil {
		return err
	}
	// Whatever the strategy, a pending credential that already logs in
	// means an earlier attempt of this step got as far as the database.
	if ok, err := r.canLogin(ctx, pending.cred, StagePending); err != nil {
		return err
	} else if ok {
		r.log.LogAttrs(ctx, slog.LevelInfo, "rotation: AWSPENDING already logs in; setSecret has nothing to do",
			slog.String("secret_id", secretID), slog.String("version", token))
		return nil
	}
	// AWS compares the host only; the port is compared too, since a
	// different port is a different server.
	if !sameServer(current.cred, pending.cred) {
		return fmt.Errorf("%w: AWSPENDING names another server than AWSCURRENT", ErrSecretMismatch)
	}
	if r.opts.Strategy == AlternatingUsers {
		return r.setAlternatingUser(ctx, secretID, token, current, pending)
	}
	return r.setSingleUser(ctx, secretID, token, current, pending)
}

func (r *Rotator) setSingleUser(ctx context.Context, secretID, token string, current, pending *secretValue) error {
	if current.cred.Username != pending.cred.Username {
		return fmt.Errorf("%w: AWSPENDING user %q is not AWSCURRENT user %q", ErrSecretMismatch, pending.cred.Username, current.cred.Username)
	}
	s, err := r.login(ctx, current.cred, StageCurrent)
	if err != nil && isAuthFailure(err) {
		// A rotation that failed after its setSecret left AWSCURRENT
		// stale; AWSPREVIOUS may still log in. Unlike AWS, only if it is
		// the same user on the same server: ALTER USER must not reach
		// another one.
		previous, perr := r.getSecret(ctx, secretID, StagePrevious, "")
		switch {
		case perr != nil && isNotFound(perr):
		case perr != nil:
			return perr
		case previous.cred.Username == pending.cred.Username && sameServer(previous.cred, pending.cred):
			previous.cred.Database = current.cred.Database
			s, err = r.login(ctx, previous.cred, StagePrevious)
		}
	}
	if err != nil {
		return err
	}
	defer s.Close()
	if err := setPassword(ctx, s, pending.cred.Username, pending.cred.Password); err != nil {
		return err
	}
	r.log.LogAttrs(ctx, slog.LevelInfo, "rotation: database password changed",
		slog.String("secret_id", secretID), slog.String("version", token), slog.String("username", pending.cred.Username))
	return nil
}

func (r *Rotator) setAlternatingUser(ctx context.Context, secretID, token string, current, pending *secretValue) error {
	if want, err := alternateUsername(current.cred.Username); err != nil {
		return err
	} else if pending.cred.Username != want {
		// Not checked by AWS: altering AWSCURRENT's own user here would
		// break every client before finishSecret.
		return fmt.Errorf("%w: AWSPENDING user %q is not the alternate %q of AWSCURRENT user %q",
			ErrSecretMismatch, pending.cred.Username, want, current.cred.Username)
	}
	if ok, err := r.canLogin(ctx, current.cred, StageCurrent); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("%w: AWSCURRENT (user %q) is refused; the rotation stops before changing anything",
			ErrLoginFailed, current.cred.Username)
	}
	masterID := r.opts.MasterSecretID
	if masterID == "" {
		masterID = current.masterARN
	}
	if masterID == "" {
		return ErrNoMasterSecret
	}
	master, err := r.getSecret(ctx, masterID, StageCurrent, "")
	if err != nil {
		return fmt.Errorf("master secret: %w", err)
	}
	// The master logs in to the user's database, as AWS does.
	master.cred.Database = current.cred.Database
	if !strings.EqualFold(master.cred.Host, current.cred.Host) {
		return fmt.Errorf("%w: master secret %q names host %q, the secret names %q",
			ErrSecretMismatch, masterID, master.cred.Host, current.cred.Host)
	}
	s, err := r.login(ctx, master.cred, fmt.Sprintf("master secret %q", masterID))
	if err != nil {
		return err
	}
	defer s.Close()
	created, err := createOrAlterUser(ctx, s, current.cred.Username, pending.cred.Username, pending.cred.Password)
	if err != nil {
		return err
	}
	msg := "rotation: database password changed"
	if created {
		msg = "rotation: user created as a member of the current user"
	}
	r.log.LogAttrs(ctx, slog.LevelInfo, msg,
		slog.String("secret_id", secretID), slog.String("version", token),
		slog.String("username", pending.cred.Username), slog.String("master_secret_id", masterID))
	return nil
}

func (r *Rotator) testSecret(ctx context.Context, secretID, token string) error {
	pending, err := r.getSecret(ctx, secretID, StagePending, token)
	if err != nil {
		return err
	}
	s, err := r.login(ctx, pending.cred, StagePending)
	if err != nil {
		return err
	}
	defer s.Close()
	var now time.Time
	if err := s.conn.QueryRowContext(ctx, "SELECT NOW()").Scan(&now); err != nil {
		return fmt.Errorf("SELECT NOW() as %q: %w", pending.cred.Username, err)
	}
	return nil
}

func (r *Rotator) finishSecret(ctx context.Context, secretID, token string) error {
	desc, err := r.client.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(secretID)})
	if err != nil {
		return fmt.Errorf("DescribeSecret: %w", err)
	}
	var currentVersion string
	for id, stages := range desc.VersionIdsToStages {
		if slices.Contains(stages, StageCurrent) {
			currentVersion = id
			break
		}
	}
	if currentVersion == token {
		return nil
	}
	in := &secretsmanager.UpdateSecretVersionStageInput{
		SecretId:        aws.String(secretID),
		VersionStage:    aws.String(StageCurrent),
		MoveToVersionId: aws.String(token),
	}
	if currentVersion != "" {
		in.RemoveFromVersionId = aws.String(currentVersion)
	}
	if _, err := r.client.UpdateSecretVersionStage(ctx, in); err != nil {
		return fmt.Errorf("UpdateSecretVersionStage AWSCURRENT: %w", err)
	}
	r.log.LogAttrs(ctx, slog.LevelInfo, "rotation: AWSCURRENT moved",
		slog.String("secret_id", secretID), slog.String("version", token), slog.String("from_version", currentVersion))
	return nil
}
