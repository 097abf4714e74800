package awssmtest_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/smithy-go"

	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
)

// A test starts a server, stores a secret and reads it with the real SDK
// client, then rotates it as the AWS rotation function would.
func ExampleServer() {
	ctx := context.Background()
	srv := awssmtest.NewServer().Start()
	defer srv.Close()

	srv.CreateSecret("prod/app/db", `{"username":"app","password":"p1"}`)
	client := srv.Client(ctx)

	cur, err := client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("prod/app/db")})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("current:", *cur.SecretString, cur.VersionStages)

	// Rotation: AWSPENDING on a new, empty version...
	rot, err := client.RotateSecret(ctx, &secretsmanager.RotateSecretInput{SecretId: aws.String("prod/app/db")})
	if err != nil {
		log.Fatal(err)
	}
	_, err = client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("prod/app/db"), VersionStage: aws.String("AWSPENDING")})
	var notFound *types.ResourceNotFoundException
	fmt.Println("pending before createSecret is not found:", errors.As(err, &notFound))

	// ... filled by the createSecret step ...
	_, err = client.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId:           aws.String("prod/app/db"),
		ClientRequestToken: rot.VersionId,
		SecretString:       aws.String(`{"username":"app","password":"p2"}`),
		VersionStages:      []string{"AWSPENDING"},
	})
	if err != nil {
		log.Fatal(err)
	}
	// ... and promoted by the finishSecret step.
	_, err = client.UpdateSecretVersionStage(ctx, &secretsmanager.UpdateSecretVersionStageInput{
		SecretId:            aws.String("prod/app/db"),
		VersionStage:        aws.String("AWSCURRENT"),
		MoveToVersionId:     rot.VersionId,
		RemoveFromVersionId: cur.VersionId,
	})
	if err != nil {
		log.Fatal(err)
	}

	now, err := client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("prod/app/db")})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("current:", *now.SecretString)
	fmt.Println("old version now:", srv.Versions("prod/app/db")[*cur.VersionId])
	fmt.Println("GetSecretValue calls:", srv.Calls(awssmtest.OpGetSecretValue))
	// Output:
	// current: {"username":"app","password":"p1"} [AWSCURRENT]
	// pending before createSecret is not found: true
	// current: {"username":"app","password":"p2"}
	// old version now: [AWSPREVIOUS]
	// GetSecretValue calls: 3
}

// Injected faults reach the SDK as the errors AWS would send.
func ExampleServer_InjectFault() {
	ctx := context.Background()
	srv := awssmtest.NewServer().Start()
	defer srv.Close()
	srv.CreateSecret("db", "secret")

	// Throttle every GetSecretValue; the SDK's retryer tries 3 times.
	srv.InjectFault(awssmtest.OpGetSecretValue, awssmtest.Fault{Error: "ThrottlingException"})
	client := srv.Client(ctx, func(o *secretsmanager.Options) {
		o.Retryer = aws.NopRetryer{} // one attempt, for a fast example
	})
	_, err := client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("db")})
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		fmt.Println(apiErr.ErrorCode())
	}
	fmt.Println("attempts:", srv.Calls(awssmtest.OpGetSecretValue))
	// Output:
	// ThrottlingException
	// attempts: 1
}

// WithOnRotate lets a test play the rotation Lambda. The hook runs after
// RotateSecret has answered.
func ExampleWithOnRotate() {
	ctx := context.Background()
	rotated := make(chan string, 1)
	var srv *awssmtest.Server
	srv = awssmtest.NewServer(awssmtest.WithOnRotate(func(secretID, versionID string) {
		client := srv.Client(ctx)
		pw, err := client.GetRandomPassword(ctx, &secretsmanager.GetRandomPasswordInput{ExcludeCharacters: aws.String(`:/@"'\`)})
		if err != nil {
			log.Fatal(err)
		}
		_, err = client.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
			SecretId: aws.String(secretID), ClientRequestToken: aws.String(versionID),
			SecretString: pw.RandomPassword, VersionStages: []string{"AWSPENDING"},
		})
		if err != nil {
			log.Fatal(err)
		}
		// A real rotation changes the database password here.
		srv.MoveStage("db", "AWSCURRENT", versionID)
		rotated <- versionID
	})).Start()
	defer srv.Close()

	_, v1 := srv.CreateSecret("db", "initial")
	client := srv.Client(ctx)
	if _, err := client.RotateSecret(ctx, &secretsmanager.RotateSecretInput{SecretId: aws.String("db")}); err != nil {
		log.Fatal(err)
	}
	v2 := <-rotated
	versions := srv.Versions("db")
	fmt.Println(versions[v1], versions[v2])
	// Output:
	// [AWSPREVIOUS] [AWSCURRENT AWSPENDING]
}
