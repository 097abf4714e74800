package rotation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/pgrotate/rotating/secrets"
)

// Defaults for fields a secret may leave out, as AWS's rotation functions
// apply them.
const (
	defaultPort     = 5432
	defaultDatabase = "postgres"
)

// cloneSuffix is what AlternatingUsers appends to, or strips from, the
// username on each rotation.
const cloneSuffix = "_clone"

// secretValue is one version of a secret in the RDS JSON format.
type secretValue struct {
	versionID string
	// fields is the whole JSON object, so that createSecret copies keys
	// this package does not know (engine, masterarn, dbClusterIdentifier,
	// ...) unchanged.
	fields map[string]json.RawMessage
	// cred is the login, with defaults applied to Port and Database.
	cred secrets.Credential
	// masterARN is the masterarn field, if any.
	masterARN string
}

// getSecret reads the version of secretID that carries stage (and, if
// versionID is set, is that version). what names the value in errors, such
// as "AWSPENDING".
func (r *Rotator) getSecret(ctx context.Context, secretID, stage, versionID string) (*secretValue, error) {
	in := &secretsmanager.GetSecretValueInput{SecretId: aws.String(secretID), VersionStage: aws.String(stage)}
	if versionID != "" {
		in.VersionId = aws.String(versionID)
	}
	out, err := r.client.GetSecretValue(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("GetSecretValue %s of secret %q: %w", stage, secretID, err)
	}
	var data []byte
	switch {
	case out.SecretString != nil:
		data = []byte(*out.SecretString)
	case out.SecretBinary != nil:
		data = out.SecretBinary
	}
	v, err := parseSecret(data)
	if err != nil {
		return nil, fmt.Errorf("%s of secret %q: %w", stage, secretID, err)
	}
	v.versionID = aws.ToString(out.VersionId)
	return v, nil
}

// parseSecret parses a secret in the RDS JSON format. Errors name fields,
// never values.
func parseSecret(data []byte) (*secretValue, error) {
	cred, err := secrets.ParseJSON(data, secrets.DefaultKeys)
	if err != nil {
		// ParseJSON's errors hold no values.
		return nil, fmt.Errorf("%w: %w", ErrMalformedSecret, err)
	}
	v := &secretValue{cred: cred}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if err := json.Unmarshal(data, &v.fields); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrMalformedSecret) // unreachable after ParseJSON
	}
	if cred.Username == "" {
		return nil, fmt.Errorf("%w: field %q is missing or empty", ErrMalformedSecret, secrets.DefaultKeys.Username)
	}
	if cred.Host == "" {
		return nil, fmt.Errorf("%w: field %q is missing or empty", ErrMalformedSecret, secrets.DefaultKeys.Host)
	}
	engine, err := optionalString(v.fields, "engine")
	if err != nil {
		return nil, err
	}
	switch engine {
	case "", "postgres", "aurora-postgresql":
	default:
		return nil, fmt.Errorf("%w: field \"engine\" names another engine than postgres", ErrMalformedSecret)
	}
	if v.masterARN, err = optionalString(v.fields, "masterarn"); err != nil {
		return nil, err
	}
	if v.cred.Port == 0 {
		v.cred.Port = defaultPort
	}
	if v.cred.Database == "" {
		v.cred.Database = defaultDatabase
	}
	return v, nil
}

// optionalString returns the string field key of fields, "" if it is
// missing or null.
func optionalString(fields map[string]json.RawMessage, key string) (string, error) {
	raw, ok := fields[key]
	if !ok || string(bytes.TrimSpace(raw)) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%w: field %q is not a string", ErrMalformedSecret, key)
	}
	return s, nil
}

// withLogin returns v's JSON with username and password replaced and every
// other field kept.
func (v *secretValue) withLogin(username, password string) (string, error) {
	fields := maps.Clone(v.fields)
	for key, value := range map[string]string{
		secrets.DefaultKeys.Username: username,
		secrets.DefaultKeys.Password: password,
	} {
		raw, err := marshalNoEscape(value)
		if err != nil {
			return "", fmt.Errorf("encoding field %q failed", key)
		}
		fields[key] = raw
	}
	raw, err := marshalNoEscape(fields)
	if err != nil {
		return "", errors.New("encoding the new secret value failed")
	}
	return string(raw), nil
}

// marshalNoEscape is json.Marshal without the escaping of <, > and &,
// which would make a stored password harder to read back by eye.
func marshalNoEscape(v any) (json.RawMessage, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// alternateUsername returns the other user of the alternating-users
// strategy: u_clone for u, u for u_clone.
func alternateUsername(u string) (string, error) {
	if base, ok := strings.CutSuffix(u, cloneSuffix); ok {
		if base == "" {
			return "", fmt.Errorf("%w: username is only %q", ErrMalformedSecret, cloneSuffix)
		}
		return base, nil
	}
	if len(u)+len(cloneSuffix) > maxIdentifierLength {
		return "", fmt.Errorf("%w: username %q with %q appended would be longer than %d bytes",
			ErrMalformedSecret, u, cloneSuffix, maxIdentifierLength)
	}
	return u + cloneSuffix, nil
}

// isNotFound reports whether err is Secrets Manager's
// ResourceNotFoundException, which GetSecretValue answers for a stage no
// version carries or a version without a value.
func isNotFound(err error) bool {
	var nf *types.ResourceNotFoundException
	return errors.As(err, &nf)
}
