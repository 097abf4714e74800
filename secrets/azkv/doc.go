// Package azkv is a [secrets.Source] that reads a PostgreSQL credential
// from an Azure Key Vault secret, for use with the rotating connector:
//
//	src, err := azkv.New("https://myvault.vault.azure.net/", "db-app")
//	if err != nil { ... }
//	connector, err := rotating.NewConnector("host=db.postgres.database.azure.com dbname=app sslmode=verify-full", src)
//	if err != nil { ... }
//	db := sql.OpenDB(connector)
//
// [New] builds one azsecrets client that authenticates with azidentity's
// DefaultAzureCredential: the AZURE_CLIENT_ID / AZURE_TENANT_ID /
// AZURE_CLIENT_SECRET (or certificate) environment variables, a workload
// identity on Kubernetes, a managed identity on Azure compute, or a
// developer's Azure CLI login. [WithCredential] gives it another
// azcore.TokenCredential (a user-assigned managed identity, say), and
// [WithClientOptions] configures the client; [NewFromClient] takes a client
// built by the caller. This package is a module of its own
// (github.com/pgrotate/rotating/secrets/azkv), so that only its users
// depend on azcore, azidentity and MSAL.
//
// # The secret
//
// The secret's value is parsed with [secrets.ParseSecret]: either the JSON
// object that RDS rotation uses,
//
//	{"host":"db.postgres.database.azure.com","port":5432,"username":"app","password":"...","dbname":"app"}
//
// ([WithKeys] names other keys; unknown keys are ignored), or a plain
// string that is only the password, in which case the connector takes the
// username from the DSN. The version's id (the last segment of its
// identifier, 32 hex digits) becomes [secrets.Credential].Version, and its
// expiry attribute ("exp"), when set, [secrets.Credential].Expires, so that
// the connector fetches again ahead of it. Key Vault still returns an
// expired version's value, and so does the source; the connector then asks
// again at most once per backoff period (5 s by default) until a version
// with a later expiry appears. The not-before attribute ("nbf") is not
// used. A secret whose content type marks it as a certificate's
// (application/x-pkcs12, application/x-pem-file) is refused.
//
// # Versions and rotation
//
// [Source.Fetch] reads the latest version, which is Key Vault's newest
// version, enabled or not; [WithVersion] pins one version instead. A
// rotation adds a new version (SetSecret, `az keyvault secret set`) and
// changes the role's password in the database, in either order:
//
//   - vault first: the cached credential keeps working until the password
//     changes; the first login it fails then makes the connector fetch
//     once, and the new version logs in;
//   - database first: logins with the cached password are refused until
//     the new version is in the vault; the connector fetches (once for all
//     callers, then paced by its backoff) and holds the Connects that need
//     a login for up to its rotation wait (rotating.WithRotationWait, 10 s
//     by default), so the vault must be updated within that time.
//
// Key Vault has no pending stage like AWS's AWSPENDING, so there is no
// FetchPending. Disabling the newest version does not make Key Vault fall
// back to an older one: GetSecret then answers 403 with the inner error
// code SecretDisabled ([ErrDisabled]). To roll back, add the old value as a
// new version.
//
// Each Fetch is one GetSecret request (retries aside); the first request
// of a client is preceded by the unauthenticated request that elicits Key
// Vault's authentication challenge. The connector calls the source only on
// first use, after a rejected login, ahead of Expires and for refreshes it
// was asked to make.
//
// # Permissions
//
// The identity needs only to get the secret's value: the Azure RBAC role
// "Key Vault Secrets User" (4633458b-17de-408a-b874-0445c86b69e6) on the
// vault or on the secret itself, or, in a vault that uses access
// policies, the secret permission "get". The source never lists secrets
// or versions.
//
// # Retries and timeouts
//
// The source gives each GetSecret the retry settings of
// [DefaultRetryOptions] (or [WithRetryOptions]): azcore's defaults would
// honour a Retry-After of up to 60 s and outlast the connector's fetch
// timeout. A fetch the timeout ends still reports the status of the last
// answer, such as a 429.
//
// # Errors and logs
//
// Errors are an [*Error] that names the vault, the secret and, once known,
// the version, summarises Key Vault's answer (status, error code, inner
// error code, message) and wraps the cause: the *azcore.ResponseError of
// an error answer (reachable with errors.As), the credential's error, a
// transport or context error, or an error wrapping [secrets.ErrMalformed]
// or [secrets.ErrEmptyPassword] that names what is wrong. errors.Is
// matches [ErrDisabled], [ErrNotFound], [ErrAccessDenied] and
// [ErrThrottled]. No error or log line contains a secret value or a
// token: an answer the client could not parse is reported without the
// parser's message, which could quote the value. The logger set with
// [WithLogger] sees names, versions and expiry times only. Note that
// azcore's own logging (azcore/log.SetListener), if an application turns
// it on, is outside this package's control; it redacts the Authorization
// header but logs error answers.
//
// The azkvtest subpackage runs a local Key Vault endpoint over HTTPS that
// the real azsecrets client talks to, challenge and all, for testing an
// application through a rotation.
package azkv
