// Package awsintegration holds the end-to-end tests of the rotating
// Connector over AWS Secrets Manager: a real PostgreSQL server (see
// internal/pgserver/pgtest), the real aws-sdk-go-v2 client talking to the
// local Secrets Manager endpoint of secrets/awssm/awssmtest, the awssm source,
// and AWS's four-step rotation played by secrets/awssm/rotation, while many
// goroutines keep inserting rows, each statement on a new login:
//
//   - a single-user rotation whose setSecret to finishSecret window is held
//     open (AWSCURRENT is dead, AWSPENDING is live);
//   - an alternating-users rotation (the username flips on every rotation);
//   - throttling, 5xx answers and a hanging endpoint during background
//     refreshes;
//   - a secret deleted or made malformed while the application runs, and
//     then the cached password changed in the database;
//   - a single-user rotation after an earlier incident (the credential
//     rejected once and working again), met by workers whose statements
//     (SELECT 1, each on a new login) have a deadline: issue 8's defect 1.
//
// The same rotations, faults and counts run through the Secrets Manager
// Agent too (agent_test.go): the smagent source over HTTP to the awssmtest
// agent in front of the same endpoint, with the agent failing in four ways
// (a refused token, its connection limit, down, slow), and eight processes
// of one host read Secrets Manager directly and through one agent, to
// measure what the agent saves.
//
// The two rotations run once per driver of internal/testkit/drivers
// (subtests lib/pq and pgx), with the same body and assertions. Every test
// checks that no statement failed, that every acknowledged row is in the
// table (for the inserting ones), how many GetSecretValue calls each
// rotation cost, and that no password appears in an error or a log line.
// The package has no non-test code.
package awsintegration
