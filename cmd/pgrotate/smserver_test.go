package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/pgrotate/rotating/secrets/awssm/smagent"
)

func TestSMServer(t *testing.T) {
	seed := filepath.Join(t.TempDir(), "seed.json")
	if err := os.WriteFile(seed, []byte(`[
		{"name": "dev/app/db", "value": {"username": "app", "password": "seeded-pw", "port": 5432}},
		{"name": "dev/plain", "value": "just a string"}
	]`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	listening := make(chan string, 1)
	var out, errw syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"sm-server", "-addr", "127.0.0.1:0", "-seed", seed}, &stdio{
			out: &out, err: &errw, onListen: func(url string) { listening <- url },
		})
	}()
	var url string
	select {
	case url = <-listening:
	case code := <-done:
		t.Fatalf("sm-server exited %d before listening:\n%s", code, errw.String())
	case <-time.After(10 * time.Second):
		t.Fatal("sm-server did not start listening")
	}
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Errorf("url %q", url)
	}

	// Any SDK client pointed at it, with dummy credentials, reads the seeds.
	client := secretsmanager.New(secretsmanager.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(url),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "AKIAPGROTATEDUMMY000", SecretAccessKey: "dummy"}, nil
		}),
	})
	for name, want := range map[string]string{
		"dev/app/db": `{"username":"app","password":"seeded-pw","port":5432}`,
		"dev/plain":  "just a string",
	} {
		v, err := client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(name)})
		if err != nil {
			t.Fatalf("GetSecretValue %s: %v", name, err)
		}
		if got := aws.ToString(v.SecretString); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("exit %d after Ctrl-C, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sm-server did not stop")
	}
	for _, want := range []string{"export AWS_ENDPOINT_URL_SECRETS_MANAGER=" + url, "export AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID="} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, out.String())
		}
	}
	assertNoSecret(t, "sm-server's output", out.String()+errw.String(), "seeded-pw", "just a string")
}

func TestSMServerBadSeed(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"not a list":  `{"name": "x", "value": "y"}`,
		"bad json":    `[{"name": "x", "value": }]`,
		"duplicate":   `[{"name": "x", "value": "a"}, {"name": "x", "value": "b"}]`,
		"bad name":    `[{"name": "no spaces allowed", "value": "a"}]`,
		"no value":    `[{"name": "x"}]`,
		"number":      `[{"name": "x", "value": 3}]`,
		"unknown key": `[{"name": "x", "value": "a", "stage": "AWSCURRENT"}]`,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".json")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			r := runCmd(t, t.Context(), []string{"sm-server", "-addr", "127.0.0.1:0", "-seed", path}, nil)
			if r.code != exitUsage || !strings.Contains(r.err, "-seed") {
				t.Errorf("exit %d, want %d with a -seed error", r.code, exitUsage)
			}
		})
	}
	r := runCmd(t, t.Context(), []string{"sm-server", "-addr", "127.0.0.1:0", "-seed", filepath.Join(dir, "none.json")}, nil)
	if r.code != exitUsage {
		t.Errorf("missing seed file: exit %d, want %d", r.code, exitUsage)
	}
}

// With -agent, the Secrets Manager Agent's API is served in front of the
// same secrets: the smagent source reads them with the token from the
// printed file, a rotation through the Secrets Manager endpoint shows
// through the agent only after its TTL or with refreshNow, and the token
// is never printed.
func TestSMServerAgent(t *testing.T) {
	seed := filepath.Join(t.TempDir(), "seed.json")
	if err := os.WriteFile(seed, []byte(`[{"name": "dev/app/db", "value": {"username": "app", "password": "seeded-pw"}}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type agentAt struct{ url, tokenFile string }
	listening, agentUp := make(chan string, 1), make(chan agentAt, 1)
	var out, errw syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"sm-server", "-addr", "127.0.0.1:0", "-seed", seed, "-agent", "127.0.0.1:0", "-agent-ttl", "1h", "-v"}, &stdio{
			out: &out, err: &errw,
			onListen: func(url string) { listening <- url },
			onAgent:  func(url, tokenFile string) { agentUp <- agentAt{url, tokenFile} },
		})
	}()
	var (
		smURL string
		agent agentAt
	)
	for smURL == "" || agent.url == "" {
		select {
		case smURL = <-listening:
		case agent = <-agentUp:
		case code := <-done:
			t.Fatalf("sm-server exited %d before listening:\n%s", code, errw.String())
		case <-time.After(10 * time.Second):
			t.Fatal("sm-server did not start listening")
		}
	}
	token, err := os.ReadFile(agent.tokenFile)
	if err != nil {
		t.Fatalf("the token file: %v", err)
	}
	if !strings.Contains(out.String(), "export AWS_TOKEN=file://"+agent.tokenFile) {
		t.Errorf("stdout lacks AWS_TOKEN=file://%s:\n%s", agent.tokenFile, out.String())
	}

	src, err := smagent.New("dev/app/db", smagent.WithEndpoint(agent.url), smagent.WithTokenFile(agent.tokenFile))
	if err != nil {
		t.Fatal(err)
	}
	cred, err := src.Fetch(ctx)
	if err != nil || cred.Password != "seeded-pw" {
		t.Fatalf("Fetch through the agent: %v, %v", cred, err)
	}
	client := secretsmanager.New(secretsmanager.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(smURL),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "AKIAPGROTATEDUMMY000", SecretAccessKey: "dummy"}, nil
		}),
	})
	if _, err := client.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId: aws.String("dev/app/db"), SecretString: aws.String(`{"username":"app","password":"rotated-pw"}`),
	}); err != nil {
		t.Fatal(err)
	}
	if cred, err := src.Fetch(ctx); err != nil || cred.Password != "seeded-pw" {
		t.Errorf("Fetch within the agent's TTL: %v, %v, want the cached seeded-pw", cred, err)
	}
	if cred, err := src.FetchPending(ctx, cred); err != nil || cred.Password != "rotated-pw" {
		t.Errorf("FetchPending after the cached credential was rejected: %v, %v, want Secrets Manager's rotated-pw", cred, err)
	}

	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("exit %d after Ctrl-C, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sm-server did not stop")
	}
	if _, err := os.Stat(agent.tokenFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the temporary token file is left behind: %v", err)
	}
	assertNoSecret(t, "sm-server's output", out.String()+errw.String(), strings.TrimSpace(string(token)), "seeded-pw", "rotated-pw")

	r := runCmd(t, t.Context(), []string{"sm-server", "-addr", "127.0.0.1:0", "-agent", "0.0.0.0:2773"}, nil)
	if r.code != exitUsage || !strings.Contains(r.err, "-agent") || !strings.Contains(r.err, "loopback") {
		t.Errorf("-agent on all interfaces: exit %d, %q", r.code, r.err)
	}
}
