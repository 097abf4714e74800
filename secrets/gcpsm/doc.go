// Package gcpsm is a [secrets.Source] that reads a PostgreSQL credential
// from Google Cloud Secret Manager, for use with the rotating connector:
//
//	src, err := gcpsm.Open(ctx, "projects/my-project/secrets/app-db")
//	if err != nil { ... }
//	defer src.Close()
//	connector, err := rotating.NewConnector("host=10.0.0.5 dbname=app sslmode=require", src)
//	if err != nil { ... }
//	db := sql.OpenDB(connector)
//
// [Open] builds a gRPC client (cloud.google.com/go/secretmanager/apiv1)
// from Application Default Credentials: on GKE the Kubernetes service
// account's Google service account (Workload Identity), on Cloud Run,
// Cloud Functions and Compute Engine the attached service account, or the
// key file named by GOOGLE_APPLICATION_CREDENTIALS. To configure the client
// yourself, build a *secretmanager.Client and pass it to [New], or pass
// client options to Open with [WithClientOptions].
//
// The package is a module of its own, github.com/pgrotate/rotating/secrets/gcpsm,
// so that the Secret Manager client's dependencies (gRPC, protobuf, the
// Google API and auth libraries, OpenTelemetry) reach only the programs
// that use it.
//
// # The secret
//
// Each version's payload is parsed with [secrets.ParseSecret]: either the
// JSON object that RDS rotation uses,
//
//	{"engine":"postgres","host":"...","port":5432,"username":"app","password":"...","dbname":"app"}
//
// (port a number or a string; other keys are ignored; [WithKeys] names
// different keys), or a plain string that is only the password (one
// trailing newline, as `gcloud secrets versions add --data-file` of an
// edited file leaves, is removed), in which case the connector takes the
// username from the DSN. The payload's CRC32C checksum, which the service
// sends with it, is checked. The number of the version that answered
// becomes [secrets.Credential].Version, which the connector logs and
// reports in its stats.
//
// # Rotation
//
// A rotation adds a version: [Source.Fetch] reads "latest", the most
// recently created version, so the next Fetch after AddSecretVersion
// returns the new credential. The connector calls Fetch on first use,
// after the database rejects a login, and for refreshes it was asked to
// make, so a process makes one AccessSecretVersion call per rotation, not
// one per connection. Whichever is changed first, the database or the
// store, the connector bridges the gap: while only the old password works
// it keeps using it (and Fetch is not called); while only the new one
// works, rejected logins make it re-read the store until the new version
// is there. Secret Manager has no pending stage, so the source is not a
// [secrets.PendingSource]: change the store first, then the database, to
// avoid the gap altogether.
//
// Pin a version ("projects/P/secrets/S/versions/7") to roll credentials
// out by configuration instead. Note that "latest" is the newest version
// whatever its state: disabling or destroying the newest version makes
// Fetch fail with FailedPrecondition rather than fall back to an older
// one, so retire a compromised version by adding a new one.
//
// # Permissions
//
// The source calls only AccessSecretVersion, which needs the permission
// secretmanager.versions.access, granted by the role
// roles/secretmanager.secretAccessor. Grant it on the secret, not the
// project:
//
//	gcloud secrets add-iam-policy-binding app-db \
//	  --member=serviceAccount:app@my-project.iam.gserviceaccount.com \
//	  --role=roles/secretmanager.secretAccessor
//
// # Errors, retries and logs
//
// Errors are an [*Error] that names the version asked for and, once known,
// the version number that answered, and wraps the cause: the client's error
// (status.Code(err) gives NotFound for a missing secret or version,
// FailedPrecondition for a disabled or destroyed one, PermissionDenied,
// ResourceExhausted when throttled, Unavailable, DeadlineExceeded), or an
// error wrapping [ErrChecksum], [secrets.ErrMalformed] or
// [secrets.ErrEmptyPassword] that names the field that is wrong. Through
// the connector it arrives inside a *rotating.FetchError or
// *rotating.AuthError, and status.Code and errors.As still find it.
//
// The client retries Unavailable and ResourceExhausted itself, with a
// backoff that starts at up to 2 s and grows to 60 s. The connector's fetch
// timeout (rotating.WithFetchTimeout, 5 s by default) bounds each Fetch,
// retries and backoff included; when it ends a backoff, the error reports
// the last status the service answered, not only the deadline.
//
// No error or log line contains a secret value; the logger set with
// [WithLogger] sees resource names, version numbers, attempt counts and
// status codes only. The client's own debug logging
// (GOOGLE_SDK_GO_LOGGING_LEVEL=debug) would log whole responses, payloads
// included: [Open] turns it off, and a client given to [New] should be
// built with option.WithLogger for the same reason.
//
// The gcpsmtest subpackage runs a local Secret Manager that the real client
// talks to over gRPC, for testing an application through a rotation.
package gcpsm
