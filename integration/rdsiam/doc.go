// Package rdsiamintegration holds the end-to-end tests of the rotating
// Connector with the RDS IAM source (secrets/rdsiam) against a real
// PostgreSQL server with TLS (internal/pgserver/pgtest), through lib/pq
// and pgx. Tokens are built by the real aws-sdk-go-v2 (auth.BuildAuthToken,
// the static credentials provider behind aws.CredentialsCache); no AWS
// endpoint is involved, since signing is local.
//
// PostgreSQL stands in for RDS in one of two ways:
//
//   - each new token becomes the role's password with VALID UNTIL its
//     signing time plus the token's life (RDS's 15 minutes, shortened to
//     seconds), so that an expired token is refused by PostgreSQL itself,
//     with 28P01 (password authentication);
//   - the role's logins go through pg_hba.conf's ldap method to the LDAP
//     server of internal/rdsauth, which checks each token as RDS does
//     (signature, endpoint, user, region, lifetime): PostgreSQL refuses a
//     bad token with 28000, the SQLSTATE RDS answers, and every token is
//     valid until its own expiry, as on RDS.
//
// The package has no non-test code.
package rdsiamintegration
