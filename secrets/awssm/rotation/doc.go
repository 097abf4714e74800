// Package rotation rotates a PostgreSQL credential stored in AWS Secrets
// Manager the way AWS's own rotation functions do
// (SecretsManagerRDSPostgreSQLRotationSingleUser and
// SecretsManagerRDSPostgreSQLRotationMultiUser), written in Go from their
// documented behaviour. Tests and demos use it to put an application
// through a real rotation of a real database, against Secrets Manager or a
// compatible endpoint such as awssmtest; it also serves as the body of a
// rotation function written in Go.
//
//	r := rotation.New(client, rotation.Options{Strategy: rotation.SingleUser})
//	version, err := r.Rotate(ctx, "prod/app/db")
//
// # The rotation
//
// Secrets Manager attaches the staging label AWSPENDING to a new, empty
// version (RotateSecret; [Rotator.Start]) and then calls four steps with
// that version's id as the token ([Rotator.RunSteps], or one at a time with
// [Rotator.RunStep] or the step methods):
//
//  1. createSecret ([Rotator.CreateSecret]): copy the AWSCURRENT value,
//     put a password from GetRandomPassword in it (and, for
//     [AlternatingUsers], the other username: u becomes u_clone and u_clone
//     becomes u), and store it with PutSecretValue as AWSPENDING. The
//     database is untouched.
//  2. setSecret ([Rotator.SetSecret]): make the database accept AWSPENDING.
//     [SingleUser] logs in as the user with AWSCURRENT (or AWSPREVIOUS) and
//     runs ALTER USER u WITH PASSWORD; from here until finishSecret the
//     AWSCURRENT password is refused (SQLSTATE 28P01). [AlternatingUsers]
//     logs in with the master secret and runs CREATE ROLE u_clone WITH LOGIN
//     PASSWORD ...; GRANT u TO u_clone the first time and ALTER USER
//     afterwards; AWSCURRENT keeps working throughout.
//  3. testSecret ([Rotator.TestSecret]): log in with AWSPENDING and run
//     SELECT NOW().
//  4. finishSecret ([Rotator.FinishSecret]): UpdateSecretVersionStage moves
//     AWSCURRENT to the new version; Secrets Manager moves AWSPREVIOUS to
//     the version that had it.
//
// Before each step, as AWS's functions do, DescribeSecret checks that
// rotation is enabled and that the token's version carries AWSPENDING; if
// the version already carries AWSCURRENT the step does nothing. Each step
// can be repeated with the same token: createSecret does nothing if the
// version already has a value, setSecret does nothing if AWSPENDING already
// logs in, finishSecret does nothing once the version is AWSCURRENT.
// [Options.Hook] is called after every step, so that a test can act, or
// wait, between setSecret and finishSecret.
//
// # Secrets
//
// A secret is a JSON object in the RDS format: host, port (a number or a
// numeric string; default 5432), dbname (default "postgres"), username and
// password; an engine field, if present, must be "postgres" or
// "aurora-postgresql". Other fields are copied to the new version
// unchanged. An alternating-users secret names its master secret in
// masterarn, unless [Options.MasterSecretID] does.
//
// Every login uses lib/pq with a configuration built field by field from
// the secret, never a DSN string, so passwords may contain any character.
// TLS is required by default ([Options.SSLMode]).
//
// # Where this differs from AWS's functions
//
// It compares the port as well as the host of AWSPENDING and AWSCURRENT;
// it falls back to AWSPREVIOUS in a single-user setSecret only if that
// version names the same user and server; in an alternating-users setSecret
// it refuses an AWSPENDING username that is not the alternate of the
// AWSCURRENT one; it checks that a generated password respects the
// requested length and exclusions; and a login that fails for a reason
// other than a refused credential (an unreachable server) ends the step at
// once instead of trying the next credential.
//
// # Errors and secrecy
//
// Errors are *[StepError] values naming the step, the secret and the
// version, wrapping a sentinel of this package ([ErrLoginFailed],
// [ErrNotPending], ...), the SDK's error or the driver's *pq.Error. No
// error or log line contains a password.
package rotation
