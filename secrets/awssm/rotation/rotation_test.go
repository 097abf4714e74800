package rotation_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"

	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
	"github.com/pgrotate/rotating/secrets/awssm/rotation"
)

// awkwardPassword has every character that breaks DSN strings built by
// concatenation, to show that logins are built structurally.
const awkwardPassword = `p1 'q' "dq" \b @:/?#% end`

func TestSingleUserRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	ctx := testCtx(t)
	user := pgtest.UniqueName(t, "su")
	e.createUser(t, user, awkwardPassword)
	name := "prod/" + user
	_, v1 := e.srv.CreateSecret(name, e.secretJSON(t, user, awkwardPassword, nil))

	const hold = 2 * time.Second
	var steps []rotation.Step
	var heldFor time.Duration
	var newPassword string
	opts := e.options(rotation.SingleUser)
	opts.Hook = func(ctx context.Context, step rotation.Step, secretID, token string) error {
		steps = append(steps, step)
		if secretID != name || token == "" {
			t.Errorf("hook got secret %q token %q", secretID, token)
		}
		switch step {
		case rotation.StepCreate:
			// The database is untouched: AWSCURRENT still logs in.
			e.mustLogIn(t, e.value(t, name, awssmtest.StageCurrent), "AWSCURRENT after createSecret")
		case rotation.StepSet, rotation.StepTest:
			// The window: AWSCURRENT is still the old version, which the
			// database now refuses; AWSPENDING logs in.
			cur, pending := e.value(t, name, awssmtest.StageCurrent), e.value(t, name, awssmtest.StagePending)
			if cur.Version != v1 || pending.Version != token {
				t.Errorf("%v: AWSCURRENT is %s (want %s), AWSPENDING %s (want %s)", step, cur.Version, v1, pending.Version, token)
			}
			e.mustBeRefused(t, cur, "AWSCURRENT after "+step.String())
			e.mustLogIn(t, pending, "AWSPENDING after "+step.String())
			newPassword = pending.Password
			if step == rotation.StepSet {
				begin := time.Now()
				if err := testkit.Sleep(ctx, hold); err != nil {
					return err
				}
				heldFor = time.Since(begin)
			}
		}
		return nil
	}
	r := rotation.New(e.client, opts)

	v2, err := r.Rotate(ctx, name)
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if want := rotation.Steps; !slices.Equal(steps, want) {
		t.Errorf("hook saw steps %v, want %v", steps, want)
	}
	if heldFor < hold {
		t.Errorf("window held for %v, want at least %v", heldFor, hold)
	}
	if len(v2) < 32 || v2 == v1 {
		t.Errorf("new version id %q", v2)
	}

	if got := e.stagesOf(name, v1); !slices.Equal(got, []string{awssmtest.StagePrevious}) {
		t.Errorf("old version has labels %v, want [AWSPREVIOUS]", got)
	}
	if got := e.stagesOf(name, v2); !slices.Contains(got, awssmtest.StageCurrent) || slices.Contains(got, awssmtest.StagePrevious) {
		t.Errorf("new version has labels %v, want AWSCURRENT", got)
	}
	cur := e.value(t, name, awssmtest.StageCurrent)
	if cur.Version != v2 || cur.Username != user || cur.Password == awkwardPassword || cur.Password != newPassword {
		t.Errorf("AWSCURRENT is version %s user %s, want version %s user %s with the new password", cur.Version, cur.Username, v2, user)
	}
	e.mustLogIn(t, cur, "AWSCURRENT after finishSecret")
	prev := e.value(t, name, awssmtest.StagePrevious)
	if prev.Version != v1 || prev.Password != awkwardPassword {
		t.Errorf("AWSPREVIOUS is version %s, want %s with the old password", prev.Version, v1)
	}
	e.mustBeRefused(t, prev, "AWSPREVIOUS")

	logs := e.logs.String()
	if !strings.Contains(logs, "setSecret") || !strings.Contains(logs, v2) {
		t.Errorf("logs lack the steps or the version:\n%s", logs)
	}
	noSecretIn(t, "log", logs, awkwardPassword, cur.Password)
}

func TestAlternatingUsersRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	ctx := testCtx(t)
	user := pgtest.UniqueName(t, "au")
	clone := user + "_clone"
	master := pgtest.UniqueName(t, "master")
	const masterPassword = "master pw 'x'"
	e.createUser(t, user, awkwardPassword)
	e.createMaster(t, master, masterPassword)
	masterARN, _ := e.srv.CreateSecret("master/"+master, e.secretJSON(t, master, masterPassword, map[string]any{"dbname": "ignored"}))

	// A table owned by the user, which the clone must be able to use.
	table := pq.QuoteIdentifier("t_" + user)
	v1Login := login{Username: user, Password: awkwardPassword, DBName: "postgres"}
	db, err := e.open(t, v1Login)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+table+" (id int)"); err != nil {
		t.Fatal(err)
	}
	db.Close()

	name := "prod/" + user
	_, v1 := e.srv.CreateSecret(name, e.secretJSON(t, user, awkwardPassword, map[string]any{"masterarn": masterARN}))
	r := rotation.New(e.client, e.options(rotation.AlternatingUsers))

	// Rotation 1 creates the clone.
	v2, err := r.Rotate(ctx, name)
	if err != nil {
		t.Fatalf("rotation 1: %v", err)
	}
	if got := e.stagesOf(name, v1); !slices.Equal(got, []string{awssmtest.StagePrevious}) {
		t.Errorf("rotation 1: V1 has labels %v, want [AWSPREVIOUS]", got)
	}
	if got := e.stagesOf(name, v2); !slices.Contains(got, awssmtest.StageCurrent) {
		t.Errorf("rotation 1: V2 has labels %v, want AWSCURRENT", got)
	}
	cur := e.value(t, name, awssmtest.StageCurrent)
	if cur.Version != v2 || cur.Username != clone {
		t.Fatalf("rotation 1: AWSCURRENT is version %s user %s, want %s user %s", cur.Version, cur.Username, v2, clone)
	}
	db, err = e.open(t, cur)
	if err != nil {
		t.Fatalf("rotation 1: the clone cannot log in: %v", err)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO "+table+" VALUES (1)"); err != nil {
		t.Errorf("rotation 1: the clone lacks the user's privileges: %v", err)
	}
	db.Close()
	e.mustLogIn(t, e.value(t, name, awssmtest.StagePrevious), "AWSPREVIOUS (the original user) after rotation 1")

	// Rotation 2 flips back to the user with a new password; the clone
	// keeps working.
	v3, err := r.Rotate(ctx, name)
	if err != nil {
		t.Fatalf("rotation 2: %v", err)
	}
	cur = e.value(t, name, awssmtest.StageCurrent)
	if cur.Version != v3 || cur.Username != user || cur.Password == awkwardPassword {
		t.Fatalf("rotation 2: AWSCURRENT is version %s user %s, want %s user %s with a new password", cur.Version, cur.Username, v3, user)
	}
	e.mustLogIn(t, cur, "AWSCURRENT after rotation 2")
	prev := e.value(t, name, awssmtest.StagePrevious)
	if prev.Version != v2 || prev.Username != clone {
		t.Errorf("rotation 2: AWSPREVIOUS is version %s user %s, want %s user %s", prev.Version, prev.Username, v2, clone)
	}
	e.mustLogIn(t, prev, "AWSPREVIOUS (the clone) after rotation 2")
	e.mustBeRefused(t, v1Login, "the original user's first password")
	versions := e.srv.Versions(name)
	if got := versions[v1]; len(got) != 0 {
		t.Errorf("rotation 2: V1 has labels %v, want none", got)
	}
	if got := versions[v2]; !slices.Equal(got, []string{awssmtest.StagePrevious}) {
		t.Errorf("rotation 2: V2 has labels %v, want [AWSPREVIOUS]", got)
	}
	if got := versions[v3]; !slices.Contains(got, awssmtest.StageCurrent) {
		t.Errorf("rotation 2: V3 has labels %v, want AWSCURRENT", got)
	}
	// The master secret is never changed.
	if n := len(e.srv.Versions("master/" + master)); n != 1 {
		t.Errorf("master secret has %d versions, want 1", n)
	}
	noSecretIn(t, "log", e.logs.String(), awkwardPassword, masterPassword, cur.Password, prev.Password)
}

// Every step can be repeated with the same token, for both strategies, and
// steps for a rotation already finished do nothing.
func TestStepsAreIdempotent(t *testing.T) {
	t.Parallel()
	for _, strategy := range []rotation.Strategy{rotation.SingleUser, rotation.AlternatingUsers} {
		t.Run(strategy.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, true)
			ctx := testCtx(t)
			user := pgtest.UniqueName(t, "idem")
			e.createUser(t, user, "first password")
			extra := map[string]any{}
			if strategy == rotation.AlternatingUsers {
				master := pgtest.UniqueName(t, "master")
				e.createMaster(t, master, "master password")
				extra["masterarn"], _ = e.srv.CreateSecret("master/"+master, e.secretJSON(t, master, "master password", nil))
			}
			name := "prod/" + user
			_, v1 := e.srv.CreateSecret(name, e.secretJSON(t, user, "first password", extra))
			var hookCalls atomic.Int64
			opts := e.options(strategy)
			opts.Hook = func(context.Context, rotation.Step, string, string) error { hookCalls.Add(1); return nil }
			r := rotation.New(e.client, opts)

			token, err := r.Start(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			for _, step := range rotation.Steps {
				for i := range 2 {
					if err := r.RunStep(ctx, step, name, token); err != nil {
						t.Fatalf("%v, call %d: %v", step, i+1, err)
					}
				}
				switch step {
				case rotation.StepCreate:
					if n := e.srv.Calls(awssmtest.OpPutSecretValue); n != 1 {
						t.Errorf("PutSecretValue called %d times, want 1", n)
					}
				case rotation.StepSet, rotation.StepTest:
					e.mustLogIn(t, e.value(t, name, awssmtest.StagePending), "AWSPENDING after "+step.String())
				case rotation.StepFinish:
					if n := e.srv.Calls(awssmtest.OpUpdateSecretVersionStage); n != 1 {
						t.Errorf("UpdateSecretVersionStage called %d times, want 1", n)
					}
				}
			}
			if n := hookCalls.Load(); n != 8 {
				t.Errorf("hook called %d times, want 8", n)
			}
			cur := e.value(t, name, awssmtest.StageCurrent)
			if cur.Version != token {
				t.Fatalf("AWSCURRENT is %s, want %s", cur.Version, token)
			}
			e.mustLogIn(t, cur, "AWSCURRENT")

			// The rotation is over: every step is now a no-op.
			before := e.srv.Versions(name)
			puts, moves := e.srv.Calls(awssmtest.OpPutSecretValue), e.srv.Calls(awssmtest.OpUpdateSecretVersionStage)
			if err := r.RunSteps(ctx, name, token); err != nil {
				t.Fatalf("steps after finishing: %v", err)
			}
			if after := e.srv.Versions(name); len(after) != len(before) || !slices.Equal(after[v1], before[v1]) || !slices.Equal(after[token], before[token]) {
				t.Errorf("labels changed from %v to %v", before, after)
			}
			if e.srv.Calls(awssmtest.OpPutSecretValue) != puts || e.srv.Calls(awssmtest.OpUpdateSecretVersionStage) != moves {
				t.Error("steps after finishing wrote to the secret")
			}
			if again := e.value(t, name, awssmtest.StageCurrent); again.Password != cur.Password {
				t.Error("steps after finishing changed the password")
			}
			e.mustLogIn(t, cur, "AWSCURRENT after repeated steps")
		})
	}
}

// A wrong master credential stops the rotation at setSecret with an error
// that names the step and the secret and holds no password; once the master
// secret is fixed, the next Rotate finishes the same rotation.
func TestWrongMasterCredential(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	ctx := testCtx(t)
	user := pgtest.UniqueName(t, "wm")
	master := pgtest.UniqueName(t, "master")
	const masterPassword, wrongPassword = "right master pw", "wrong master pw"
	e.createUser(t, user, awkwardPassword)
	e.createMaster(t, master, masterPassword)
	masterName := "master/" + master
	e.srv.CreateSecret(masterName, e.secretJSON(t, master, wrongPassword, nil))
	name := "prod/" + user
	_, v1 := e.srv.CreateSecret(name, e.secretJSON(t, user, awkwardPassword, nil))
	opts := e.options(rotation.AlternatingUsers)
	opts.MasterSecretID = masterName
	r := rotation.New(e.client, opts)

	token, err := r.Rotate(ctx, name)
	if err == nil {
		t.Fatal("Rotate succeeded with a wrong master password")
	}
	var se *rotation.StepError
	if !errors.As(err, &se) || se.Step != rotation.StepSet || se.SecretID != name || se.Token != token || token == "" {
		t.Fatalf("error %#v, want a *StepError for setSecret of %q", err, name)
	}
	if !errors.Is(err, rotation.ErrLoginFailed) || pq.As(err, pqerror.InvalidPassword) == nil {
		t.Errorf("error %v does not match ErrLoginFailed and a 28P01 *pq.Error", err)
	}
	msg := err.Error()
	for _, want := range []string{"setSecret", name, masterName, master} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %q", msg, want)
		}
	}
	pending := e.value(t, name, awssmtest.StagePending)
	noSecretIn(t, "error", msg, wrongPassword, masterPassword, awkwardPassword, pending.Password)
	noSecretIn(t, "log", e.logs.String(), wrongPassword, masterPassword, awkwardPassword, pending.Password)

	// Nothing changed for clients.
	if got := e.stagesOf(name, v1); !slices.Equal(got, []string{awssmtest.StageCurrent}) {
		t.Errorf("V1 has labels %v, want [AWSCURRENT]", got)
	}
	e.mustLogIn(t, e.value(t, name, awssmtest.StageCurrent), "AWSCURRENT after the failure")

	// Fixed master secret: Rotate resumes the unfinished rotation.
	e.srv.PutValue(masterName, e.secretJSON(t, master, masterPassword, nil))
	resumed, err := r.Rotate(ctx, name)
	if err != nil {
		t.Fatalf("Rotate after fixing the master secret: %v", err)
	}
	if resumed != token {
		t.Errorf("Rotate started version %s, want the unfinished %s", resumed, token)
	}
	cur := e.value(t, name, awssmtest.StageCurrent)
	if cur.Version != token || cur.Password != pending.Password || cur.Username != user+"_clone" {
		t.Errorf("AWSCURRENT is %s user %s, want the pending version %s", cur.Version, cur.Username, token)
	}
	e.mustLogIn(t, cur, "AWSCURRENT after resuming")
}

// Without a master secret an alternating-users rotation stops at setSecret,
// before changing the database.
func TestAlternatingWithoutMaster(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	ctx := testCtx(t)
	user := pgtest.UniqueName(t, "nm")
	e.createUser(t, user, "pw")
	name := "prod/" + user
	e.srv.CreateSecret(name, e.secretJSON(t, user, "pw", nil))
	_, err := rotation.New(e.client, e.options(rotation.AlternatingUsers)).Rotate(ctx, name)
	var se *rotation.StepError
	if !errors.Is(err, rotation.ErrNoMasterSecret) || !errors.As(err, &se) || se.Step != rotation.StepSet {
		t.Fatalf("Rotate: %v, want ErrNoMasterSecret at setSecret", err)
	}
}

// In a single-user rotation whose AWSCURRENT went stale (an earlier
// rotation changed the password and failed before finishSecret, and a new
// one began), setSecret logs in with AWSPREVIOUS.
func TestSingleUserFallsBackToPrevious(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	ctx := testCtx(t)
	user := pgtest.UniqueName(t, "fb")
	e.createUser(t, user, "old password")
	name := "prod/" + user
	e.srv.CreateSecret(name, e.secretJSON(t, user, "old password", nil))
	// AWSCURRENT holds a password the database never had.
	e.srv.PutValue(name, e.secretJSON(t, user, "never set", nil))
	r := rotation.New(e.client, e.options(rotation.SingleUser))
	if _, err := r.Rotate(ctx, name); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	e.mustLogIn(t, e.value(t, name, awssmtest.StageCurrent), "AWSCURRENT")
}

// awssmtest.WithOnRotate plays Secrets Manager invoking a rotation function:
// RotateSecret from any client runs the steps, with the secret's ARN.
func TestRunStepsFromOnRotate(t *testing.T) {
	t.Parallel()
	var rotator atomic.Pointer[rotation.Rotator]
	done := make(chan error, 1)
	ctx := testCtx(t)
	e := newEnv(t, true, awssmtest.WithOnRotate(func(secretARN, versionID string) {
		done <- rotator.Load().RunSteps(ctx, secretARN, versionID)
	}))
	rotator.Store(rotation.New(e.client, e.options(rotation.SingleUser)))
	user := pgtest.UniqueName(t, "hook")
	e.createUser(t, user, "pw one")
	name := "prod/" + user
	e.srv.CreateSecret(name, e.secretJSON(t, user, "pw one", nil))

	out, err := e.client.RotateSecret(ctx, &secretsmanager.RotateSecretInput{SecretId: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("RunSteps: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("rotation did not finish")
	}
	cur := e.value(t, name, awssmtest.StageCurrent)
	if cur.Version != aws.ToString(out.VersionId) {
		t.Errorf("AWSCURRENT is %s, want %s", cur.Version, aws.ToString(out.VersionId))
	}
	e.mustLogIn(t, cur, "AWSCURRENT")
}
