package gcpsm_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"

	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets/gcpsm"
	"github.com/pgrotate/rotating/secrets/gcpsm/gcpsmtest"
)

// env is one test's Secret Manager: a local server, the real client for
// it, and a log that records the source's Debug lines as JSON.
type env struct {
	srv    *gcpsmtest.Server
	client *secretmanager.Client
	logs   *testkit.LogBuffer
	logger *slog.Logger
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := gcpsmtest.NewServer().Start()
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := srv.Client(ctx)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	logs := new(testkit.LogBuffer)
	return &env{srv: srv, client: client, logs: logs,
		logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
}

// source returns a Source for name over the env's client, logging to the
// env's log.
func (e *env) source(t *testing.T, name string, opts ...gcpsm.Option) *gcpsm.Source {
	t.Helper()
	src, err := gcpsm.New(e.client, name, append([]gcpsm.Option{gcpsm.WithLogger(e.logger)}, opts...)...)
	if err != nil {
		t.Fatalf("gcpsm.New(%q): %v", name, err)
	}
	return src
}

// rdsJSON is an RDS-style secret.
func rdsJSON(t *testing.T, user, password string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"engine": "postgres", "host": "db.internal", "port": 5432,
		"username": user, "password": password, "dbname": "app"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// assertNoSecret fails t if text contains any of secrets, without
// printing the text.
func assertNoSecret(t *testing.T, what, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("%s contains a secret value (%d bytes of text)", what, len(text))
			return
		}
	}
}

var randomPassword = pgtest.RandomPassword
