// Package gcpsmtest runs an in-process Google Cloud Secret Manager: the
// generated secretmanagerpb.SecretManagerServiceServer (the v1 gRPC API)
// served over a real gRPC listener on a loopback port, which the real
// cloud.google.com/go/secretmanager client reaches unchanged. Use it to
// test an application's behaviour through a credential rotation, an
// outage or a revoked permission without a Google Cloud project.
//
// # Starting a server
//
//	srv := gcpsmtest.NewServer().Start()
//	defer srv.Close()
//	name := srv.CreateSecret("projects/my-project/secrets/db")
//	srv.AddVersion(name, []byte(`{"username":"app","password":"p1"}`))
//	client, err := srv.Client(ctx) // a *secretmanager.Client for srv
//
// Code that builds its own client passes [Server.ClientOptions] to
// secretmanager.NewClient: option.WithEndpoint(srv.Addr()),
// option.WithoutAuthentication() and plain-text gRPC transport credentials.
// The server listens on 127.0.0.1 only: it checks no credentials.
//
// # What it implements
//
// CreateSecret, GetSecret, DeleteSecret, AddSecretVersion,
// GetSecretVersion, AccessSecretVersion, ListSecretVersions,
// DisableSecretVersion, EnableSecretVersion and DestroySecretVersion, with
// the service's rules: version numbers count from 1; "latest" is the most
// recently created version whatever its state, so that a disabled or
// destroyed newest version makes AccessSecretVersion on "latest" fail with
// FailedPrecondition ("... is in DISABLED state."), as the service does;
// a destroyed version loses its payload and cannot be enabled again; a
// payload is at most 64 KiB and is refused if the client's CRC32C does not
// match it; AccessSecretVersion answers with the payload's CRC32C; version
// aliases given at creation resolve; etags are checked when given; answers
// name resources with the project number ([Server.ProjectNumber]) whatever
// the request used, as the service does. Missing resources answer NotFound,
// bad names and ids InvalidArgument. Every other method answers
// Unimplemented.
//
// # Test hooks
//
// Tests can set state without a client ([Server.CreateSecret],
// [Server.AddVersion], [Server.DisableVersion], [Server.EnableVersion],
// [Server.DestroyVersion], [Server.Versions]), count requests per method
// ([Server.Calls], [Server.TotalCalls], [Server.ResetCalls]: each of the
// client's retries counts), inject faults per method
// ([Server.InjectFault]: a status code such as PermissionDenied,
// ResourceExhausted or Unavailable, latency, a request that hangs until
// the client gives up, a payload whose checksum is wrong) and take the
// whole service off the network and back ([Server.Down], [Server.Up]).
//
// # Differences from Secret Manager
//
// Everything is in memory; no IAM policy is checked (inject
// PermissionDenied instead); nothing is encrypted or replicated; a secret's
// expiration, rotation schedule and Pub/Sub topics are stored and returned
// but never acted on (no notification is published); UpdateSecret,
// ListSecrets, the IAM methods and the location methods are not
// implemented; ListSecretVersions filters on state only. The server never
// logs or returns payloads in errors.
package gcpsmtest
