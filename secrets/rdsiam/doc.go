// Package rdsiam is a [secrets.Source] that logs in to Amazon RDS or Aurora
// PostgreSQL with IAM database authentication instead of a stored password,
// for use with the rotating connector:
//
//	src, err := rdsiam.NewFromConfig(ctx, rdsiam.DB{
//		Host: "mydb.abc123xyz.us-east-1.rds.amazonaws.com", Port: 5432, User: "app",
//	})
//	if err != nil { ... }
//	connector, err := rotating.NewConnector(
//		"dbname=app sslmode=verify-full sslrootcert=/etc/ssl/rds/global-bundle.pem", src)
//	if err != nil { ... }
//	db := sql.OpenDB(connector)
//
// The package is named after the authentication method, not the service:
// an RDS password kept in AWS Secrets Manager is read by secrets/awssm.
//
// # Tokens
//
// Each [Source.Fetch] builds a new authentication token with
// auth.BuildAuthToken (github.com/aws/aws-sdk-go-v2/feature/rds/auth): a
// SigV4-presigned "connect" request for the endpoint, the user and the
// region, signed locally with the process's AWS credentials. Only
// retrieving those credentials may use the network (STS, the instance or
// task metadata endpoint), and the SDK's credentials cache makes that rare.
// The token is the password of the [secrets.Credential] Fetch returns. RDS
// accepts it for 15 minutes ([TokenLifetime]), or until the AWS
// credentials it was signed with expire if that is sooner; Expires says
// which, and the connector's background refresh builds the next token
// ahead of it (rotating.WithRefreshBeforeExpiry, one minute by default),
// once for the whole process. RDS checks the token only at login:
// connections opened with it live on after it expires, so SessionsEnd is
// zero and the connector never retires them for the token's sake.
//
// A token RDS refuses (expired, signed by a key that was deactivated, for
// a user without the rds_iam role) is answered with SQLSTATE 28000
// ("PAM authentication failed for user ..."), which is in
// rotating.DefaultAuthErrorCodes: the connector then builds one new token
// for all the callers waiting, as it fetches once after any rejected
// login; only if no token it builds within the rotation wait is accepted
// does Connect return a *rotating.AuthError, with the driver's 28000 error
// inside.
//
// # The endpoint
//
// A token is bound to the host name and port it was signed for. They
// must be those the driver dials. Fetch puts them in the credential's Host
// and Port, which the connector uses where the DSN leaves host and port
// unset, so the simplest set-up is a DSN without them, as above. If the
// DSN names them (an RDS Proxy endpoint, say), [DB] must name the same;
// [DBFromDSN] reads them, and the user, from the DSN. Behind RDS Proxy
// with IAM authentication between the client and the proxy, sign for the
// proxy's endpoint.
//
// # AWS credentials
//
// [NewFromConfig] loads the SDK's default configuration (environment,
// shared files and AWS_PROFILE, a web identity on EKS, the ECS task role,
// the EC2 instance role) and [New] takes an aws.Config of the
// application's own; either way the credentials provider should be an
// aws.CredentialsCache (the SDK's configuration loader makes one), which
// refreshes temporary credentials as they expire. Fetch asks the cache to
// refresh the credentials the previous token was signed with before it
// signs the next one when they are the ones that cut that token short (so
// that every token lives as long as credentials allow), and when it is
// asked early, after a refused login (a revoked role session would
// otherwise be handed out by the cache until it expired; at most once a
// minute). The identity needs
// rds-db:connect on arn:aws:rds-db:REGION:ACCOUNT:dbuser:DBI-RESOURCE-ID/USER
// (the cluster's or the proxy's resource id); docs/rdsiam.md has the
// whole set-up.
//
// # Errors and logs
//
// Fetch's errors are an [*Error] naming the user, the endpoint, the
// region and the step (retrieving the credentials or signing) and wrapping
// the SDK's error, or [ErrNoAccessKey] or [ErrCredentialsExpired]. No
// error, log line or formatted value contains the token, the secret access
// key or the session token; the SDK's credential_process error, which
// quotes the process's output, is rewritten without it. A Source prints as
// its description with every fmt verb, never as its credentials provider.
// [WithLogger] logs each token's signing time, expiry and what bounded it,
// at Debug level.
package rdsiam
