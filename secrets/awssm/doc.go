// Package awssm is a [secrets.Source] that reads a PostgreSQL credential
// from AWS Secrets Manager, for use with the rotating connector:
//
//	src, err := awssm.NewFromConfig(ctx, "prod/app/db")
//	if err != nil { ... }
//	connector, err := rotating.NewConnector("host=db.internal dbname=app sslmode=require", src)
//	if err != nil { ... }
//	db := sql.OpenDB(connector)
//
// [NewFromConfig] loads the SDK's default configuration (the region, shared
// config profiles, credentials from the environment, a web identity, ECS or
// EC2 instance metadata, and AWS_ENDPOINT_URL_SECRETS_MANAGER) once and
// builds one client. To configure the client differently, build a
// *secretsmanager.Client yourself and pass it to [New].
//
// # The secret
//
// The secret's value is parsed with [secrets.ParseSecret]: either the JSON
// object that RDS and Aurora rotation uses,
//
//	{"engine":"postgres","host":"...","port":5432,"username":"app","password":"...","dbname":"app"}
//
// (port a number or a string; other keys, such as masterarn, are ignored;
// [WithKeys] names different keys), or a plain string that is only the
// password, in which case the connector takes the username from the DSN.
// SecretBinary values are parsed the same way as SecretString ones. The
// version's VersionId becomes [secrets.Credential].Version, which the
// connector logs and reports in its stats.
//
// # Rotation
//
// [Source.Fetch] reads the version labelled AWSCURRENT. During a
// single-user rotation, the rotation function changes the password in the
// database (setSecret) before it moves AWSCURRENT to the new version
// (finishSecret); for that window AWSCURRENT holds a password the database
// no longer accepts. The connector then calls [Source.FetchPending], which
// reads the version labelled AWSPENDING, and uses it once a login with it
// has succeeded. FetchPending returns an error wrapping
// [secrets.ErrNoPending] when no version carries AWSPENDING, when the
// pending version has no value yet (the rotation has not reached its
// createSecret step) and when the pending version is the very version or
// holds the very login the database rejected. AWS leaves AWSPENDING on the
// new AWSCURRENT version for a while after finishSecret: if that version is
// not the rejected one, finishSecret ran after the connector's Fetch, and
// FetchPending returns it, the new current credential.
//
// With alternating-users rotation the username changes with every version;
// username and password are always returned together from one version, so
// nothing more is needed.
//
// Each Fetch and each FetchPending is exactly one GetSecretValue call (the
// SDK's retries of a throttled or failed request aside). The
// connector calls the source only on first use, after a rejected login and
// for refreshes it was asked to make, so a process makes a handful of calls
// per rotation, not one per connection. Throttling and 5xx answers are
// retried by the client's retryer (the SDK's standard one, 3 attempts,
// unless configured otherwise); the connector bounds each call with its
// fetch timeout through ctx.
//
// # IAM permissions
//
// The source calls only GetSecretValue (never DescribeSecret or
// ListSecretVersionIds), so this policy is all it needs:
//
//	{
//	  "Version": "2012-10-17",
//	  "Statement": [{
//	    "Effect": "Allow",
//	    "Action": "secretsmanager:GetSecretValue",
//	    "Resource": "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/app/db-??????"
//	  }]
//	}
//
// ("-??????" matches the six random characters AWS appends to the name in
// the ARN.) If the secret is encrypted with a customer managed KMS key, add
// kms:Decrypt on that key. A policy that restricts the
// secretsmanager:VersionStage condition key must allow AWSPENDING as well as
// AWSCURRENT, for example with
//
//	"Condition": {"ForAnyValue:StringEquals": {"secretsmanager:VersionStage": ["AWSCURRENT", "AWSPENDING"]}}
//
// otherwise FetchPending fails with AccessDeniedException, and during the
// window described above the connector can only wait for finishSecret.
//
// # Errors and logs
//
// Errors are an [*Error] that names the secret id, the staging label and,
// once known, the version id, and wraps the cause: the SDK's error (so that
// errors.As finds *types.ResourceNotFoundException or smithy.APIError and
// errors.Is finds context.DeadlineExceeded), or an error wrapping
// [secrets.ErrMalformed] or [secrets.ErrEmptyPassword] that names the field
// that is wrong. No error or log line contains a secret value; the logger
// set with [WithLogger] sees secret ids, labels and version ids only.
//
// The awssmtest subpackage runs a local Secrets Manager endpoint that the
// real SDK client talks to, for testing an application through a rotation.
package awssm
