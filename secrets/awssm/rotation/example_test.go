package rotation_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/lib/pq"

	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
	"github.com/pgrotate/rotating/secrets/awssm/rotation"
)

// Rotate a single-user secret now. The client comes from the usual AWS
// configuration; AWS_ENDPOINT_URL_SECRETS_MANAGER can point it at a local
// endpoint such as awssmtest. Not run by go test: it needs a database and
// the secret prod/app/db describing it.
func ExampleRotator_Rotate() {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		log.Fatal(err)
	}
	r := rotation.New(secretsmanager.NewFromConfig(cfg), rotation.Options{
		Strategy: rotation.SingleUser,
		Logger:   slog.Default(), // secret ids and versions, never passwords
		// Hold the window in which AWSCURRENT is refused open for a while,
		// to watch how an application copes.
		Hook: func(ctx context.Context, step rotation.Step, secretID, token string) error {
			if step != rotation.StepSet {
				return nil
			}
			select {
			case <-time.After(2 * time.Second):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
	})
	version, err := r.Rotate(ctx, "prod/app/db")
	if err != nil {
		log.Fatal(err) // names the step and the secret, never a password
	}
	fmt.Println("AWSCURRENT is now version", version)
}

// Make awssmtest's RotateSecret run the rotation, as Secrets Manager invokes
// a rotation function, for an application under test that starts rotations
// itself. Not run by go test: it needs the database the secret describes.
func ExampleRotator_RunSteps() {
	ctx := context.Background()
	var r *rotation.Rotator
	done := make(chan error, 1)
	srv := awssmtest.NewServer(awssmtest.WithOnRotate(func(secretARN, versionID string) {
		done <- r.RunSteps(ctx, secretARN, versionID)
	})).Start()
	defer srv.Close()
	r = rotation.New(srv.Client(ctx), rotation.Options{
		Strategy: rotation.AlternatingUsers,
		SSLMode:  pq.SSLModeDisable, // a local test server without TLS
	})
	masterARN, _ := srv.CreateSecret("master", `{"engine":"postgres","host":"127.0.0.1","port":5432,"username":"postgres","password":"..."}`)
	srv.CreateSecret("app", `{"engine":"postgres","host":"127.0.0.1","port":5432,"dbname":"app","username":"app","password":"...","masterarn":"`+masterARN+`"}`)

	// ... the application calls RotateSecret ...

	if err := <-done; err != nil {
		log.Fatal(err)
	}
}

func ExampleParseStep() {
	// The event Secrets Manager sends a rotation function names the step.
	step, err := rotation.ParseStep("setSecret")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(step == rotation.StepSet, rotation.Steps)
	// Output: true [createSecret setSecret testSecret finishSecret]
}
