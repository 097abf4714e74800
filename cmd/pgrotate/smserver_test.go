package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
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
