// Package azkvtest runs an in-process Azure Key Vault secrets endpoint over
// HTTPS, so that the real azsecrets client (and so the azkv source) talks
// to it unchanged: TLS with a CA made for the server, the bearer challenge
// Key Vault starts every new client with, and the REST API's JSON. Use it
// to test an application through a credential rotation without an Azure
// subscription.
//
// # Starting a server
//
//	srv := azkvtest.NewServer().Start()
//	defer srv.Close()
//	srv.SetSecret("db-app", `{"username":"app","password":"p1"}`)
//	client := srv.Client() // an *azsecrets.Client for srv
//
// Code that builds its own client points it at the server with
// azsecrets.NewClient(srv.URL(), srv.Credential(), srv.ClientOptions()):
// the options carry a transport that trusts the server's CA
// ([Server.CertPool], [Server.CACertPEM]) and set
// DisableChallengeResourceVerification, because the challenge names Key
// Vault's resource, https://vault.azure.net, which the client would
// otherwise require to be a suffix of the vault's host (127.0.0.1). For the
// azkv source, pass azkv.WithCredential(srv.Credential()) and
// azkv.WithClientOptions(srv.ClientOptions()) to azkv.New with srv.URL().
//
// # Authentication
//
// A request without a bearer token, or with another token than the
// server's, is answered 401 with
//
//	WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<TenantID>", resource="https://vault.azure.net"
//
// as Key Vault answers. The client then asks its credential for a token
// for [Scope] in [TenantID] and sends the request again. [Credential]
// hands out the server's one token ([Server.Token]) and refuses any other
// scope or tenant, so a test proves the challenge was followed.
//
// # What it implements
//
// GetSecret (GET /secrets/{name}/{version}, the latest version when the
// version is empty), SetSecret (PUT /secrets/{name}, which adds a new
// version that becomes the latest), UpdateSecretProperties (PATCH, to
// enable or disable a version and set its nbf and exp), the versions list
// (GET /secrets/{name}/versions, in one page) and DeleteSecret. As in Key
// Vault, the latest version is the newest one whether or not it is
// enabled; GetSecret on a disabled version answers 403 Forbidden with the
// inner error code SecretDisabled, and on a deleted secret or an unknown
// version 404 SecretNotFound; an expired version's value is still
// returned. Every request needs an api-version query parameter (any value).
//
// # Test hooks
//
// Tests can set state without the SDK ([Server.SetSecret],
// [Server.SetEnabled], [Server.SetExpires], [Server.Delete],
// [Server.Purge], [Server.Versions]), count requests ([Server.Calls],
// [Server.TotalCalls], [Server.Challenges], [Server.Refused]) and inject
// faults per operation ([Server.InjectFault]): latency, a request that
// hangs until the client gives up, a dropped connection, an error answer
// (401, 403, 404, 429 with Retry-After, 5xx) or a body the client cannot
// parse. [Server.SetDown] makes the whole server unreachable and back.
//
// # Differences from Key Vault
//
// The server keeps everything in memory, knows one token and one tenant,
// lists versions in a single page, does not implement the list of secrets,
// backup, restore, recovery of deleted secrets or certificates' secrets,
// and never removes a deleted secret by itself ([Server.Purge] does). It
// does not enforce nbf or exp, as Key Vault does not for secrets. It never
// logs or returns secret values or tokens in errors.
package azkvtest
