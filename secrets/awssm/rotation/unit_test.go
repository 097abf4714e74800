package rotation_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
	"github.com/pgrotate/rotating/secrets/awssm/rotation"
)

// These tests need no database: they stop before setSecret.

func TestStepNames(t *testing.T) {
	want := []string{"createSecret", "setSecret", "testSecret", "finishSecret"}
	for i, step := range rotation.Steps {
		if step.String() != want[i] {
			t.Errorf("step %d is %q, want %q", i, step, want[i])
		}
		got, err := rotation.ParseStep(want[i])
		if err != nil || got != step {
			t.Errorf("ParseStep(%q) = %v, %v", want[i], got, err)
		}
	}
	for _, bad := range []string{"", "create", "CreateSecret"} {
		if _, err := rotation.ParseStep(bad); err == nil {
			t.Errorf("ParseStep(%q) succeeded", bad)
		}
	}
	if s := rotation.Step(0).String(); s != "Step(0)" {
		t.Errorf("Step(0) = %q", s)
	}
}

func TestInvalidOptions(t *testing.T) {
	client := awssmtest.NewServer().Start()
	defer client.Close()
	sm := client.Client(context.Background())
	for _, tc := range []struct {
		name   string
		client rotation.API
		opts   rotation.Options
	}{
		{"nil client", nil, rotation.Options{}},
		{"strategy", sm, rotation.Options{Strategy: 7}},
		{"negative length", sm, rotation.Options{PasswordLength: -1}},
		{"long length", sm, rotation.Options{PasswordLength: 5000}},
		{"sslmode", sm, rotation.Options{SSLMode: "sometimes"}},
		{"timeout", sm, rotation.Options{ConnectTimeout: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rotation.New(tc.client, tc.opts)
			ctx := context.Background()
			if _, err := r.Rotate(ctx, "s"); !errors.Is(err, rotation.ErrInvalidOptions) {
				t.Errorf("Rotate: %v, want ErrInvalidOptions", err)
			}
			for _, step := range rotation.Steps {
				if err := r.RunStep(ctx, step, "s", "t"); !errors.Is(err, rotation.ErrInvalidOptions) {
					t.Errorf("%v: %v, want ErrInvalidOptions", step, err)
				}
			}
		})
	}
}

// createPending runs Start and createSecret on a new secret holding value
// and returns the AWSPENDING value as a JSON object.
func createPending(t *testing.T, e *env, r *rotation.Rotator, name, value string) map[string]any {
	t.Helper()
	ctx := context.Background()
	e.srv.CreateSecret(name, value)
	token, err := r.Start(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CreateSecret(ctx, name, token); err != nil {
		t.Fatal(err)
	}
	out, err := e.client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{
		SecretId: aws.String(name), VersionId: aws.String(token), VersionStage: aws.String(awssmtest.StagePending),
	})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(aws.ToString(out.SecretString)), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCreateSecretPasswords(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	for _, tc := range []struct {
		name    string
		opts    rotation.Options
		exclude string
		length  int
	}{
		{"default", rotation.Options{}, `:/@"'\`, 32},
		{"custom", rotation.Options{PasswordExclude: "abcdefghijklmnopqrstuvwxyz0123456789", PasswordLength: 48}, "abcdefghijklmnopqrstuvwxyz0123456789", 48},
	} {
		r := rotation.New(e.client, tc.opts)
		for i := range 20 {
			name := tc.name + "/" + string(rune('a'+i))
			m := createPending(t, e, r, name, e.secretJSON(t, "app", "old", nil))
			pw, _ := m["password"].(string)
			if len(pw) != tc.length || strings.ContainsAny(pw, tc.exclude) {
				t.Fatalf("%s: password of length %d breaks the policy (excluded %q)", tc.name, len(pw), tc.exclude)
			}
		}
	}
	if rotation.DefaultPasswordExclude != `:/@"'\` {
		t.Errorf("DefaultPasswordExclude = %q", rotation.DefaultPasswordExclude)
	}
}

// createSecret copies every field of AWSCURRENT, in its JSON type, and
// changes only the password (and, alternating, the username).
func TestCreateSecretCopiesFields(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	value := `{"engine":"postgres","host":"db.invalid","port":"6543","dbname":"app","username":"app",` +
		`"password":"old","masterarn":"arn:aws:secretsmanager:us-east-1:123456789012:secret:m-abcdef","dbClusterIdentifier":"c1","proxy":{"a":[1,2]}}`
	for _, tc := range []struct {
		strategy rotation.Strategy
		current  string
		want     string
	}{
		{rotation.SingleUser, "app", "app"},
		{rotation.AlternatingUsers, "app", "app_clone"},
		{rotation.AlternatingUsers, "app_clone", "app"},
	} {
		r := rotation.New(e.client, rotation.Options{Strategy: tc.strategy})
		v := strings.Replace(value, `"username":"app"`, `"username":"`+tc.current+`"`, 1)
		m := createPending(t, e, r, tc.strategy.String()+"/"+tc.current, v)
		if m["username"] != tc.want {
			t.Errorf("%v from %s: username %v, want %s", tc.strategy, tc.current, m["username"], tc.want)
		}
		if m["password"] == "old" {
			t.Errorf("%v: password unchanged", tc.strategy)
		}
		var orig map[string]any
		if err := json.Unmarshal([]byte(v), &orig); err != nil {
			t.Fatal(err)
		}
		for k, ov := range orig {
			if k == "username" || k == "password" {
				continue
			}
			ob, _ := json.Marshal(ov)
			nb, _ := json.Marshal(m[k])
			if string(ob) != string(nb) {
				t.Errorf("%v: field %s is %s, want %s", tc.strategy, k, nb, ob)
			}
		}
	}
}

func TestUnusableUsernames(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	r := rotation.New(e.client, rotation.Options{Strategy: rotation.AlternatingUsers})
	ctx := context.Background()
	for i, user := range []string{"_clone", strings.Repeat("u", 58)} {
		name := "bad/" + string(rune('a'+i))
		e.srv.CreateSecret(name, e.secretJSON(t, user, "pw", nil))
		token, err := r.Start(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.CreateSecret(ctx, name, token); !errors.Is(err, rotation.ErrMalformedSecret) {
			t.Errorf("username %q: %v, want ErrMalformedSecret", user, err)
		}
	}
}

func TestMalformedSecrets(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	r := rotation.New(e.client, rotation.Options{})
	ctx := context.Background()
	for i, value := range []string{
		"plain-text-password-xyz",
		`{"username":"app","password":"secret-xyz"}`,                                    // no host
		`{"host":"h","password":"secret-xyz"}`,                                          // no username
		`{"host":"h","username":"app","password":"secret-xyz","engine":"mysql"}`,        // another engine
		`{"host":"h","username":"app","password":"secret-xyz","port":"not-a-port-xyz"}`, // bad port
		`{"host":"h","username":"app","password":""}`,                                   // empty password
	} {
		name := "malformed/" + string(rune('a'+i))
		e.srv.CreateSecret(name, value)
		token, err := r.Start(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		err = r.CreateSecret(ctx, name, token)
		if !errors.Is(err, rotation.ErrMalformedSecret) {
			t.Errorf("%s: %v, want ErrMalformedSecret", value, err)
			continue
		}
		if strings.Contains(err.Error(), "xyz") {
			t.Errorf("error %q quotes the secret value", err)
		}
	}
}

// The checks every step makes first, as AWS's rotation functions do.
func TestStepPreconditions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	ctx := context.Background()
	r := rotation.New(e.client, rotation.Options{})
	const name = "pre/app"
	_, v1 := e.srv.CreateSecret(name, e.secretJSON(t, "app", "pw", nil))
	const unknown = "00000000-0000-4000-8000-000000000000"

	if err := r.CreateSecret(ctx, name, unknown); !errors.Is(err, rotation.ErrRotationNotEnabled) {
		t.Errorf("before any rotation: %v, want ErrRotationNotEnabled", err)
	}
	token, err := r.Start(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CreateSecret(ctx, name, unknown); !errors.Is(err, rotation.ErrNotPending) {
		t.Errorf("unknown token: %v, want ErrNotPending", err)
	}
	var se *rotation.StepError
	err = r.TestSecret(ctx, name, unknown)
	if !errors.As(err, &se) || se.Step != rotation.StepTest || se.SecretID != name || se.Token != unknown {
		t.Errorf("error %v does not identify the step", err)
	}
	if !strings.Contains(err.Error(), "testSecret") || !strings.Contains(err.Error(), name) {
		t.Errorf("error %q does not name the step and the secret", err)
	}
	// A version with AWSCURRENT is a finished rotation: nothing to do,
	// even for the version a rotation is now pending on.
	if err := r.FinishSecret(ctx, name, v1); err != nil {
		t.Errorf("finishSecret on AWSCURRENT: %v", err)
	}
	// Starting again resumes the unfinished rotation.
	if again, err := r.Start(ctx, name); err != nil || again != token {
		t.Errorf("second Start = %s, %v; want the unfinished %s", again, err, token)
	}
}

// A hook error stops the rotation after the step it follows.
func TestHookErrorStops(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	ctx := context.Background()
	stop := errors.New("stop here")
	var steps []rotation.Step
	r := rotation.New(e.client, rotation.Options{Hook: func(_ context.Context, step rotation.Step, _, _ string) error {
		steps = append(steps, step)
		return stop
	}})
	e.srv.CreateSecret("hook/app", e.secretJSON(t, "app", "pw", nil))
	token, err := r.Rotate(ctx, "hook/app")
	var se *rotation.StepError
	if !errors.Is(err, stop) || !errors.As(err, &se) || se.Step != rotation.StepCreate || token == "" {
		t.Fatalf("Rotate: %q, %v; want the hook's error after createSecret", token, err)
	}
	if len(steps) != 1 {
		t.Errorf("hook called for %v", steps)
	}
}

// badPasswords wraps a client and hands out passwords that break the policy.
type badPasswords struct {
	rotation.API
	password string
}

func (b badPasswords) GetRandomPassword(context.Context, *secretsmanager.GetRandomPasswordInput, ...func(*secretsmanager.Options)) (*secretsmanager.GetRandomPasswordOutput, error) {
	return &secretsmanager.GetRandomPasswordOutput{RandomPassword: aws.String(b.password)}, nil
}

func TestPasswordPolicyEnforced(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	ctx := context.Background()
	for i, pw := range []string{
		"abcdefghijklmnop@rstuvwxyz012345", // excluded character
		"tooShortSecretXYZ",                // wrong length
	} {
		r := rotation.New(badPasswords{e.client, pw}, rotation.Options{})
		name := "policy/" + string(rune('a'+i))
		e.srv.CreateSecret(name, e.secretJSON(t, "app", "pw", nil))
		token, err := r.Start(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		err = r.CreateSecret(ctx, name, token)
		if !errors.Is(err, rotation.ErrPasswordPolicy) {
			t.Errorf("%v, want ErrPasswordPolicy", err)
		} else if strings.Contains(err.Error(), pw) {
			t.Errorf("error %q contains the password", err)
		}
		if n := e.srv.Calls(awssmtest.OpPutSecretValue); n != 0 {
			t.Errorf("a bad password was stored (%d PutSecretValue calls)", n)
		}
	}
}
