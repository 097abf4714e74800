// Package awssmtest runs an in-process endpoint that speaks the AWS Secrets
// Manager wire protocol (AWS JSON 1.1), so that the real aws-sdk-go-v2
// secretsmanager client, botocore and the AWS CLI talk to it unchanged. Use
// it to test an application's behaviour through a credential rotation
// without an AWS account.
//
// # Starting a server
//
//	srv := awssmtest.NewServer().Start()
//	defer srv.Close()
//	srv.CreateSecret("prod/app/db", `{"username":"app","password":"p1"}`)
//	client := srv.Client(ctx) // an *secretsmanager.Client for srv
//
// Code that builds its own client can be pointed at the server in either of
// two ways:
//
//   - set secretsmanager.Options.BaseEndpoint to srv.URL(), with any static
//     credentials and a region;
//   - or set the environment variables AWS_ENDPOINT_URL_SECRETS_MANAGER (or
//     AWS_ENDPOINT_URL) to srv.URL(), AWS_ACCESS_KEY_ID and
//     AWS_SECRET_ACCESS_KEY to any value and AWS_REGION to [Region] before
//     calling config.LoadDefaultConfig. botocore takes endpoint_url= instead.
//
// [Server.ListenAndServe] runs the same endpoint standalone on a loopback
// address, for clients in other processes.
//
// # What it implements
//
// CreateSecret, GetSecretValue, PutSecretValue, UpdateSecretVersionStage,
// DescribeSecret, ListSecretVersionIds, GetRandomPassword, RotateSecret and
// DeleteSecret, with the staging-label rules AWS documents: a label is on at
// most one version; moving AWSCURRENT moves AWSPREVIOUS to the version that
// had AWSCURRENT; PutSecretValue attaches AWSCURRENT unless told otherwise; a
// ClientRequestToken is idempotent; a version left without labels is
// deprecated. Every other operation answers UnknownOperationException.
//
// RotateSecret invokes no Lambda function. It records the rotation settings,
// attaches AWSPENDING to a new version that has no value yet (GetSecretValue
// on it answers ResourceNotFoundException until a PutSecretValue with the
// same ClientRequestToken fills it) and calls the hook given with
// [WithOnRotate], which can run the rotation steps itself.
//
// # The Secrets Manager Agent
//
// [Server.NewAgent] puts a stand-in for the AWS Secrets Manager Agent (and
// the AWS Parameters and Secrets Lambda extension, which has the same
// API) in front of the same store: GET /secretsmanager/get?secretId=...
// with the X-Aws-Parameters-Secrets-Token header, its TTL cache (a
// rotation done through the Secrets Manager API shows through the agent
// only after the TTL, unless refreshNow=true), its 403 and 429 answers, and
// counters that tell agent requests from store calls ([Agent.Stats]). The
// secrets/awssm/smagent source reads through it.
//
// # Test hooks
//
// Tests can set state without the SDK ([Server.CreateSecret],
// [Server.PutValue], [Server.MoveStage], [Server.Delete], [Server.Versions]),
// count requests ([Server.Calls], [Server.CallsByStage], [Server.TotalCalls])
// and inject faults per operation ([Server.InjectFault]): latency, a request
// that hangs until the client gives up, an AWS error such as
// ThrottlingException or InternalServiceError, or a response body the SDK
// cannot parse.
//
// # Differences from AWS
//
// The server keeps everything in memory, accepts any SigV4 signature (it only
// requires an Authorization header), knows one account ([AccountID]) and one
// region ([Region]), encrypts nothing, never removes deprecated versions, and
// accepts a SecretId that is a name or a full ARN but not a partial ARN. A
// secret scheduled for deletion stays scheduled until a forced DeleteSecret
// removes it. The server never logs or returns secret values in errors.
package awssmtest
