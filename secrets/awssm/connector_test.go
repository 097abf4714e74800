package awssm_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets/awssm"
	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
)

// These tests run the rotating connector over the awssm source and the
// awssmtest server, with a fake database in place of PostgreSQL.

// fakeDB stands in for PostgreSQL's login check (see testkit.FakeDB).
type fakeDB = testkit.FakeDB

var newFakeDB = testkit.NewFakeDB

const testDSN = "host=db.example port=5432 dbname=app sslmode=disable"

// newConnector returns a rotating connector over src and db with fast
// timings, closed at the end of the test.
func newConnector(t *testing.T, src *awssm.Source, db *fakeDB, opts ...rotating.Option) *rotating.Connector {
	t.Helper()
	base := []rotating.Option{
		rotating.WithNewConnector(db.Connector),
		rotating.WithBackoff(10*time.Millisecond, 80*time.Millisecond),
		rotating.WithRotationWait(5 * time.Second),
	}
	c, err := rotating.NewConnector(testDSN, src, append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// connectAs connects and checks the user the connection logged in as.
func connectAs(t *testing.T, c *rotating.Connector, user string) {
	t.Helper()
	conn, err := c.Connect(t.Context())
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	defer conn.Close()
	if got := conn.(*testkit.FakeConn).User; got != user {
		t.Fatalf("connected as %q, want %q", got, user)
	}
}

// connectConcurrently runs n Connects at once and fails the test if any
// fails.
func connectConcurrently(t *testing.T, c *rotating.Connector, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			conn, err := c.Connect(t.Context())
			if err != nil {
				errs <- err
				return
			}
			conn.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Connect: %v", err)
	}
}

// rotateSingleUser plays the AWS single-user rotation function up to and
// including setSecret: RotateSecret, createSecret filling the AWSPENDING
// version, and the ALTER ROLE in db. It returns the new version's id.
func rotateSingleUser(t *testing.T, client *secretsmanager.Client, db *fakeDB, id, user, password string) string {
	t.Helper()
	ctx := t.Context()
	rot, err := client.RotateSecret(ctx, &secretsmanager.RotateSecretInput{SecretId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId:           aws.String(id),
		ClientRequestToken: rot.VersionId,
		SecretString:       aws.String(`{"engine":"postgres","username":"` + user + `","password":"` + password + `","port":5432}`),
		VersionStages:      []string{awssm.StagePending},
	})
	if err != nil {
		t.Fatal(err)
	}
	db.SetPassword(user, password)
	return aws.ToString(rot.VersionId)
}

// finishRotation is the finishSecret step: AWSCURRENT moves to version.
func finishRotation(t *testing.T, client *secretsmanager.Client, srv *awssmtest.Server, id, version string) {
	t.Helper()
	var current string
	for v, stages := range srv.Versions(id) {
		for _, s := range stages {
			if s == awssm.StageCurrent {
				current = v
			}
		}
	}
	_, err := client.UpdateSecretVersionStage(t.Context(), &secretsmanager.UpdateSecretVersionStageInput{
		SecretId:            aws.String(id),
		VersionStage:        aws.String(awssm.StageCurrent),
		MoveToVersionId:     aws.String(version),
		RemoveFromVersionId: aws.String(current),
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestConnectorBridgesSingleUserWindow is the case the pending credential
// exists for: between setSecret and finishSecret AWSCURRENT holds the old
// password, which the database no longer accepts, and AWSPENDING the live
// one.
func TestConnectorBridgesSingleUserWindow(t *testing.T) {
	const id = "prod/app/db"
	srv, client := start(t)
	_, v1 := srv.CreateSecret(id, `{"engine":"postgres","username":"app","password":"P1","port":5432}`)
	db := newFakeDB("app", "P1")
	src := newSource(t, client, id)
	c := newConnector(t, src, db)

	connectAs(t, c, "app")
	if st := c.Stats(); st.CredentialVersion != v1 {
		t.Fatalf("Stats.CredentialVersion = %q, want %q", st.CredentialVersion, v1)
	}
	wantCalls(t, srv, 1, 0)
	srv.ResetCalls()

	// setSecret has run: the database accepts only the pending password.
	v2 := rotateSingleUser(t, client, db, id, "app", "P2")
	srv.ResetCalls()
	connectConcurrently(t, c, 32)
	// One shared refresh for all 32 Connects: one Fetch that returns the
	// stale AWSCURRENT, one FetchPending.
	wantCalls(t, srv, 1, 1)
	st := c.Stats()
	if !st.CredentialFromPending || st.CredentialVersion != v2 || st.PendingPromotions != 1 {
		t.Errorf("after the window Stats = %+v, want the pending version %s promoted", st, v2)
	}

	// More Connects during the window and after finishSecret use the
	// cached credential: no call to Secrets Manager.
	srv.ResetCalls()
	connectAs(t, c, "app")
	wantCalls(t, srv, 0, 0)
	finishRotation(t, client, srv, id, v2)
	srv.ResetCalls()
	connectConcurrently(t, c, 8)
	wantCalls(t, srv, 0, 0)

	// The next rotation goes the same way, from a credential that was
	// itself promoted from AWSPENDING.
	v3 := rotateSingleUser(t, client, db, id, "app", "P3")
	srv.ResetCalls()
	connectAs(t, c, "app")
	wantCalls(t, srv, 1, 1)
	if st := c.Stats(); st.CredentialVersion != v3 {
		t.Errorf("after the second rotation Stats.CredentialVersion = %q, want %q", st.CredentialVersion, v3)
	}
	if st := c.Stats(); st.RecoveryFailures != 0 || st.FetchErrors != 0 {
		t.Errorf("Stats = %+v, want no failures", st)
	}
}

// TestConnectorFollowsRolledBackRotation: the password change was undone
// in the database after the pending credential had been promoted, while
// AWSCURRENT still holds the old password and AWSPENDING stays on the
// failed version (AWS keeps it there until the rotation is retried).
func TestConnectorFollowsRolledBackRotation(t *testing.T) {
	const id = "prod/app/db"
	srv, client := start(t)
	_, v1 := srv.CreateSecret(id, `{"engine":"postgres","username":"app","password":"R1","port":5432}`)
	db := newFakeDB("app", "R1")
	c := newConnector(t, newSource(t, client, id), db)
	connectAs(t, c, "app")
	rotateSingleUser(t, client, db, id, "app", "R2")
	connectAs(t, c, "app")
	if st := c.Stats(); !st.CredentialFromPending {
		t.Fatalf("the pending credential was not promoted: %+v", st)
	}

	db.SetPassword("app", "R1")
	srv.ResetCalls()
	connectAs(t, c, "app")
	if st := c.Stats(); st.CredentialVersion != v1 || st.CredentialFromPending {
		t.Errorf("after the rollback Stats = %+v, want AWSCURRENT version %s", st, v1)
	}
	// One Fetch found the working AWSCURRENT; AWSPENDING was not needed.
	wantCalls(t, srv, 1, 0)
}

// TestConnectorFollowsAlternatingUsers: AWSCURRENT is always valid, but its
// username changes with each rotation, and the second rotation's setSecret
// kills the credential cached before the first.
func TestConnectorFollowsAlternatingUsers(t *testing.T) {
	const id = "prod/app/db"
	srv, client := start(t)
	srv.CreateSecret(id, `{"username":"app","password":"A1"}`)
	db := newFakeDB("app", "A1")
	c := newConnector(t, newSource(t, client, id), db)
	connectAs(t, c, "app")

	// Rotation 1: CREATE ROLE app_clone, then finishSecret.
	v2 := srv.PutValue(id, `{"username":"app_clone","password":"A2"}`, awssm.StagePending)
	db.SetPassword("app_clone", "A2")
	srv.MoveStage(id, awssm.StageCurrent, v2)
	// The cached app/A1 still works: nothing is fetched.
	srv.ResetCalls()
	connectAs(t, c, "app")
	wantCalls(t, srv, 0, 0)

	// Rotation 2, setSecret: ALTER ROLE app with a new password. The cached
	// app/A1 dies; AWSCURRENT holds app_clone/A2, which works.
	v3 := srv.PutValue(id, `{"username":"app","password":"A3"}`, awssm.StagePending)
	db.SetPassword("app", "A3")
	connectAs(t, c, "app_clone")
	wantCalls(t, srv, 1, 0)
	if st := c.Stats(); st.CredentialVersion != v2 || st.CredentialFromPending {
		t.Errorf("Stats = %+v, want AWSCURRENT version %s", st, v2)
	}

	// finishSecret of rotation 2, then rotation 3's setSecret kills
	// app_clone/A2: the connector moves to app/A3.
	srv.MoveStage(id, awssm.StageCurrent, v3)
	srv.PutValue(id, `{"username":"app_clone","password":"A4"}`, awssm.StagePending)
	db.SetPassword("app_clone", "A4")
	srv.ResetCalls()
	connectAs(t, c, "app")
	wantCalls(t, srv, 1, 0)
}

// TestConnectorWaitsForManualRotation: a DBA ran ALTER ROLE and updates
// the secret a little later, without any AWSPENDING version. The connector
// asks for the pending credential, gets ErrNoPending, and keeps polling
// AWSCURRENT until the new value appears.
func TestConnectorWaitsForManualRotation(t *testing.T) {
	const id = "prod/app/db"
	srv, client := start(t)
	srv.CreateSecret(id, `{"username":"app","password":"M1"}`)
	db := newFakeDB("app", "M1")
	c := newConnector(t, newSource(t, client, id), db)
	connectAs(t, c, "app")

	db.SetPassword("app", "M2")
	var v2 atomic.Value
	timer := time.AfterFunc(200*time.Millisecond, func() {
		v2.Store(srv.PutValue(id, `{"username":"app","password":"M2"}`))
	})
	defer timer.Stop()
	connectAs(t, c, "app")
	if st := c.Stats(); st.CredentialVersion != v2.Load() || st.FetchErrors != 0 {
		t.Errorf("Stats = %+v, want version %v and no fetch errors (ErrNoPending is not one)", st, v2.Load())
	}
	if n := srv.CallsByStage(awssm.StagePending); n < 1 {
		t.Errorf("AWSPENDING was never asked for")
	}
}

// TestConnectorReportsWrongSecret: the secret holds a password the
// database never accepts and there is no rotation; Connect gives up with
// the driver's error and the source's description.
func TestConnectorReportsWrongSecret(t *testing.T) {
	const id = "prod/app/db"
	srv, client := start(t)
	srv.CreateSecret(id, `{"username":"app","password":"Wrong-Pw"}`)
	db := newFakeDB("app", "right")
	c := newConnector(t, newSource(t, client, id), db, rotating.WithRotationWait(300*time.Millisecond))
	_, err := c.Connect(t.Context())
	if !errors.Is(err, rotating.ErrCredentialRejected) {
		t.Fatalf("Connect = %v, want ErrCredentialRejected", err)
	}
	var authErr *rotating.AuthError
	if !errors.As(err, &authErr) || authErr.Source != "aws-secretsmanager "+id {
		t.Errorf("AuthError = %+v", authErr)
	}
	wantNoSecret(t, "error", err.Error(), "Wrong-Pw")
}
