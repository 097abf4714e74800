// Package smagent is a [secrets.Source] that reads a PostgreSQL credential
// from AWS Secrets Manager through the AWS Secrets Manager Agent, or the
// AWS Parameters and Secrets Lambda extension, running on the same host:
//
//	src, err := smagent.New("prod/app/db")
//	if err != nil { ... }
//	connector, err := rotating.NewConnector("host=db.internal dbname=app sslmode=require", src)
//	if err != nil { ... }
//	db := sql.OpenDB(connector)
//
// The agent keeps each secret in memory for a TTL (300 s by default) and
// serves every process of the host from that copy, so that N processes
// cost Secrets Manager one call instead of N. The package uses net/http
// only: an application that reads its secret through the agent does not
// link the AWS SDK, and needs no AWS credentials of its own (the agent has
// them).
//
// # The agent's API
//
// Each read is one request:
//
//	GET http://localhost:2773/secretsmanager/get?secretId=ID[&versionStage=S][&refreshNow=true]
//	X-Aws-Parameters-Secrets-Token: <the agent's token>
//
// answered with GetSecretValue's JSON (VersionId, SecretString or
// SecretBinary, VersionStages, ...). The endpoint is http://localhost:2773,
// or http://localhost:$PARAMETERS_SECRETS_EXTENSION_HTTP_PORT when that
// variable (the Lambda extension's) is set, or what [WithEndpoint] says;
// only plain http to localhost or a loopback address is accepted, since
// the agent listens on loopback only and the token and the secret travel
// in the clear. Redirects are not followed.
//
// # The token
//
// Unless [WithToken] or [WithTokenFile] says otherwise, the token is
// looked for on every request (a restarted agent has a new one), in this
// order:
//
//  1. AWS_TOKEN, which may be "file://PATH" for a file that holds it;
//  2. the file /var/run/awssmatoken, which the agent's install script on
//     EC2 writes (an error if it exists but cannot be read: add the
//     application's user to the awssmatokenreader group);
//  3. AWS_SESSION_TOKEN, which Lambda sets, and which the Lambda extension
//     and the agent packaged as a Lambda extension take as their token;
//  4. AWS_CONTAINER_AUTHORIZATION_TOKEN (Lambda functions with SnapStart).
//
// The agent itself reads AWS_TOKEN, AWS_SESSION_TOKEN and
// AWS_CONTAINER_AUTHORIZATION_TOKEN in that order; the file comes before
// the session token here because on EC2 the agent runs with
// AWS_TOKEN=file:///var/run/awssmatoken while the application may have an
// AWS_SESSION_TOKEN of its own credentials. A token file's contents are
// trimmed of whitespace, as the agent does. A token is never logged or put
// in an error; errors name where it came from ([AgentError].TokenSource).
//
// # The agent's cache and rotation
//
// The agent has no cache invalidation: after a rotation it serves the old
// version until its TTL has passed (then DescribeSecret tells it that the
// version moved), unless a request asks for refreshNow=true. Asking for
// refreshNow on every Fetch would make every process call Secrets Manager
// again, which is what the agent is for avoiding. The source asks for it
// only when it knows the agent's copy is stale, which the connector tells
// it without knowing it does: it calls [Source.FetchPending] only after the
// database rejected a credential and a Fetch returned that same
// credential. So:
//
//   - Fetch reads the agent's cache. If the answer is the credential that
//     FetchPending was last given as rejected, the copy is stale (or
//     Secrets Manager is behind the database), and Fetch asks once more
//     with refreshNow=true. Scheduled refreshes and the first Fetch use
//     the cache.
//   - FetchPending reads AWSPENDING from the cache (the agent caches it
//     per label too, so that the processes of a host share one call
//     during a rotation), and again with refreshNow=true if the answer is
//     the rejected credential (a previous rotation's copy). If there is no
//     pending credential, it reads AWSCURRENT with refreshNow=true, unless
//     the Fetch before it just did, and returns what Secrets Manager holds
//     there if it is not the rejected credential.
//
// For an AWS single-user rotation, this means: the login with the old
// password is rejected after setSecret; Fetch returns the old credential
// from the cache (no call to Secrets Manager); FetchPending reads
// AWSPENDING, which the first process of the host brings into the agent's
// cache and the others read from it, and the connector logs in with it.
// For an alternating-users rotation the connector's credential dies one
// rotation later, and the new one comes from the agent's AWSCURRENT (after
// its TTL) or AWSPENDING. For a runbook rotation (ALTER ROLE, then the
// secret updated), each store step of the connector's incident reads
// AWSCURRENT with refreshNow=true, as a direct client would call Secrets
// Manager. docs/smagent.md has the measured counts.
//
// refreshNow is documented for the agent, not for AWS's Parameters and
// Secrets Lambda extension; if the extension ignores it, a stale copy is
// served until its TTL (SECRETS_MANAGER_TTL). The rotation window is still
// bridged (a first read of AWSPENDING is not cached), but a runbook
// rotation may be seen only after that TTL.
//
// The one case that costs more than without the agent: if the credential
// the database rejected works again later (a rolled-back password change)
// and is still the one Secrets Manager holds, every later Fetch asks with
// refreshNow=true until the next rejection replaces it (one call per
// refresh, as without the agent).
//
// # Errors and logs
//
// Errors are an [*Error] naming the secret id, the label, whether
// refreshNow was asked, and the version once known. It wraps an
// [*AgentError] for an answer other than 200: 403 ([ErrBadToken]), 429
// ([ErrTooManyConnections]), 504 ([ErrAgentTimeout]) and the errors the
// agent passes through from Secrets Manager with its status and error
// code (ResourceNotFoundException, AccessDeniedException,
// ThrottlingException, ...); [ErrAgentUnreachable] with the network error
// when nothing answers (the agent is down), or the context's error;
// [ErrNoToken] or a token file's error; or an error wrapping
// secrets.ErrMalformed or secrets.ErrEmptyPassword that names the field
// that is wrong. No error or log line holds the token or a secret value;
// the logger set with [WithLogger] sees secret ids, labels, refreshNow and
// version ids only.
//
// The agent needs secretsmanager:GetSecretValue and
// secretsmanager:DescribeSecret on the secret (and kms:Decrypt on a
// customer managed key); the application needs nothing but the token.
//
// For tests, Server.NewAgent of package secrets/awssm/awssmtest runs a
// stand-in for the agent in front of a local Secrets Manager endpoint.
package smagent
