package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"

	"github.com/pgrotate/rotating/internal/loopback"
	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
)

const smServerUsage = `Usage: pgrotate sm-server [-addr 127.0.0.1:4566] [-seed secrets.json] [-agent 127.0.0.1:2773] [-v]

Runs a local AWS Secrets Manager-compatible endpoint (the awssmtest package)
until Ctrl-C, so that your application, the AWS CLI or an SDK can be pointed
at it during development. It keeps everything in memory, accepts any request
signature and so serves only on a loopback address. It prints the
environment variables that point the AWS SDKs at it.

It implements CreateSecret, GetSecretValue, PutSecretValue,
UpdateSecretVersionStage, DescribeSecret, ListSecretVersionIds,
GetRandomPassword, RotateSecret (no Lambda is invoked) and DeleteSecret.

With -agent, it also serves the local API of the AWS Secrets Manager Agent
(and of the Parameters and Secrets Lambda extension) on that loopback
address, in front of the same secrets: GET /secretsmanager/get?secretId=...
with the token in X-Aws-Parameters-Secrets-Token, a TTL cache (-agent-ttl,
300s by default, as the agent's), refreshNow=true. A rotation done through
the Secrets Manager endpoint shows through the agent after the TTL, as with
the real agent. The token is written to a file (-agent-token-file, by
default a new temporary file) whose path is printed as AWS_TOKEN=file://...,
which the secrets/awssm/smagent source reads.

The seed file is a JSON list of secrets, each created with AWSCURRENT on
its value; a value that is a JSON object is stored as its JSON text:

  [
    {"name": "dev/app/db", "value": {"engine": "postgres", "host": "127.0.0.1", "port": 5432,
                                     "username": "app", "password": "...", "dbname": "app"}},
    {"name": "dev/api-key", "value": "a plain string"}
  ]

Flags:
`

// seedEntry is one secret of the seed file.
type seedEntry struct {
	Name  string          `json:"name"`
	Value json.RawMessage `json:"value"`
}

// secretNameRE is the character set and length AWS allows in a name.
var secretNameRE = regexp.MustCompile(`^[A-Za-z0-9/_+=.@-]{1,512}$`)

// readSeed reads and checks a seed file. Errors name the entry, never a
// value.
func readSeed(path string) (names, values []string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var entries []seedEntry
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&entries); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return nil, nil, fmt.Errorf("invalid JSON near byte offset %d; want a list of {\"name\": ..., \"value\": ...}", syn.Offset)
		}
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) {
			return nil, nil, fmt.Errorf("want a list of {\"name\": ..., \"value\": ...} (wrong type at %s)", typ.Field)
		}
		return nil, nil, errors.New("want a list of {\"name\": ..., \"value\": ...}: " + err.Error())
	}
	seen := map[string]bool{}
	for i, e := range entries {
		switch {
		case !secretNameRE.MatchString(e.Name):
			return nil, nil, fmt.Errorf("entry %d: name %q: want 1 to 512 of A-Z a-z 0-9 / _ + = . @ -", i+1, e.Name)
		case seen[e.Name]:
			return nil, nil, fmt.Errorf("entry %d: secret %q appears twice", i+1, e.Name)
		}
		seen[e.Name] = true
		var value string
		switch v := bytes.TrimSpace(e.Value); {
		case len(v) == 0 || bytes.Equal(v, []byte("null")):
			return nil, nil, fmt.Errorf("entry %d (%s): no value", i+1, e.Name)
		case v[0] == '"':
			if err := json.Unmarshal(v, &value); err != nil {
				return nil, nil, fmt.Errorf("entry %d (%s): value is not a valid JSON string", i+1, e.Name)
			}
		case v[0] == '{':
			var buf bytes.Buffer
			if err := json.Compact(&buf, v); err != nil {
				return nil, nil, fmt.Errorf("entry %d (%s): value is not a valid JSON object", i+1, e.Name)
			}
			value = buf.String()
		default:
			return nil, nil, fmt.Errorf("entry %d (%s): value must be a string or a JSON object", i+1, e.Name)
		}
		if value == "" {
			return nil, nil, fmt.Errorf("entry %d (%s): empty value", i+1, e.Name)
		}
		names, values = append(names, e.Name), append(values, value)
	}
	return names, values, nil
}

func smServerCommand(ctx context.Context, args []string, std *stdio) int {
	fs := flag.NewFlagSet("pgrotate sm-server", flag.ContinueOnError)
	fs.SetOutput(std.err)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), smServerUsage)
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), "\n"+exitCodesHelp)
	}
	addr := fs.String("addr", "127.0.0.1:4566", "loopback address to listen on (port 0 picks a free one)")
	seed := fs.String("seed", "", "JSON file of secrets to create at start (see above)")
	verbose := fs.Bool("v", false, "log every request (operation, secret id, status; never a value)")
	agentAddr := fs.String("agent", "", "also serve the Secrets Manager Agent's API on this loopback address (e.g. 127.0.0.1:2773)")
	agentTTL := fs.Duration("agent-ttl", awssmtest.DefaultAgentTTL, "how long the agent serves a cached value before it checks the version (0: no cache)")
	agentTokenFile := fs.String("agent-token-file", "", "file to write the agent's token to (default: a new temporary file)")
	if code, stop := parseFlags(fs, args); stop {
		return code
	}
	log := newLogger(std.err, *verbose)

	if msg := checkLoopback(*addr); msg != "" {
		fmt.Fprintf(std.err, "pgrotate sm-server: -addr %q: %s\n", *addr, msg)
		return exitUsage
	}
	if *agentAddr != "" {
		if msg := checkLoopback(*agentAddr); msg != "" {
			fmt.Fprintf(std.err, "pgrotate sm-server: -agent %q: %s\n", *agentAddr, msg)
			return exitUsage
		}
	}
	if *agentTTL < 0 {
		fmt.Fprintf(std.err, "pgrotate sm-server: -agent-ttl %v: want 0 or more\n", *agentTTL)
		return exitUsage
	}
	var names, values []string
	if *seed != "" {
		var err error
		if names, values, err = readSeed(*seed); err != nil {
			fmt.Fprintf(std.err, "pgrotate sm-server: -seed %s: %v\n", *seed, err)
			return exitUsage
		}
	}

	var opts []awssmtest.Option
	if *verbose {
		opts = append(opts, awssmtest.WithLogger(log))
	}
	srv := awssmtest.NewServer(opts...)
	defer srv.Close()
	for i, name := range names {
		_, version := srv.CreateSecret(name, values[i])
		log.Info("created secret", slog.String("name", name), slog.String("version", version))
	}

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", *addr)
	if err != nil {
		fmt.Fprintf(std.err, "pgrotate sm-server: %v\n", err)
		return exitSource
	}
	url := "http://" + ln.Addr().String()
	fmt.Fprintf(std.out, "# Secrets Manager endpoint at %s; point the AWS SDKs and CLI at it with:\n", url)
	fmt.Fprintf(std.out, "export AWS_ENDPOINT_URL_SECRETS_MANAGER=%s\n", url)
	fmt.Fprintf(std.out, "export AWS_REGION=%s\n", awssmtest.Region)
	fmt.Fprintf(std.out, "export AWS_ACCESS_KEY_ID=AKIAPGROTATEDUMMY000  # any value: the endpoint checks no signature\n")
	fmt.Fprintf(std.out, "export AWS_SECRET_ACCESS_KEY=dummy\n")
	fmt.Fprintf(std.out, "# e.g. aws secretsmanager get-secret-value --secret-id NAME  (older CLIs: --endpoint-url %s)\n", url)

	serveAgent, stopAgent := func() error { return nil }, func() {}
	if *agentAddr != "" {
		opts := []awssmtest.AgentOption{awssmtest.WithAgentTTL(*agentTTL)}
		if *verbose {
			opts = append(opts, awssmtest.WithAgentLogger(log))
		}
		agent := srv.NewAgent(opts...)
		defer agent.Close()
		tokenFile, err := writeAgentToken(*agentTokenFile, agent.Token())
		if err != nil {
			fmt.Fprintf(std.err, "pgrotate sm-server: -agent-token-file: %v\n", err)
			ln.Close()
			return exitSource
		}
		if *agentTokenFile == "" {
			defer os.RemoveAll(filepath.Dir(tokenFile))
		}
		aln, err := lc.Listen(ctx, "tcp", *agentAddr)
		if err != nil {
			fmt.Fprintf(std.err, "pgrotate sm-server: -agent: %v\n", err)
			ln.Close()
			return exitSource
		}
		agentURL := "http://" + aln.Addr().String()
		fmt.Fprintf(std.out, "# Secrets Manager Agent API at %s (TTL %v); point the smagent source at it with:\n", agentURL, *agentTTL)
		fmt.Fprintf(std.out, "export AWS_TOKEN=file://%s\n", tokenFile)
		if _, port, _ := net.SplitHostPort(aln.Addr().String()); port != "2773" {
			fmt.Fprintf(std.out, "export PARAMETERS_SECRETS_EXTENSION_HTTP_PORT=%s  # or smagent.WithEndpoint(%q)\n", port, agentURL)
		}
		fmt.Fprintf(std.out, "# e.g. curl -H \"X-Aws-Parameters-Secrets-Token: $(cat %s)\" '%s/secretsmanager/get?secretId=NAME'\n", tokenFile, agentURL)
		log.Info("agent serving", slog.String("url", agentURL), slog.Duration("ttl", *agentTTL), slog.String("token_file", tokenFile))
		if std.onAgent != nil {
			std.onAgent(agentURL, tokenFile)
		}
		serveAgent, stopAgent = func() error { return agent.Serve(ctx, aln) }, agent.Close
	}

	log.Info("serving until Ctrl-C", slog.String("url", url), slog.Int("secrets", len(names)))
	if std.onListen != nil {
		std.onListen(url)
	}
	served := make(chan error, 1)
	go func() { served <- serveAgent() }()
	err = srv.Serve(ctx, ln)
	stopAgent() // if the Secrets Manager endpoint stopped on its own
	if aerr := <-served; err == nil {
		err = aerr
	}
	if err != nil {
		fmt.Fprintf(std.err, "pgrotate sm-server: %v\n", err)
		return exitSource
	}
	log.Info("stopped")
	return exitOK
}

// checkLoopback returns why addr is not a loopback host:port, or "".
func checkLoopback(addr string) string {
	switch err := loopback.CheckAddr(addr); {
	case errors.Is(err, loopback.ErrNotLoopback):
		return "serve on a loopback address (127.0.0.1, [::1], localhost): " +
			"the endpoints serve secrets to any signature, so they must not be reachable from other machines"
	case err != nil:
		return err.Error()
	}
	return ""
}

// writeAgentToken writes token to path (0600), or to a new file in a new
// temporary directory if path is empty, and returns the file's path.
func writeAgentToken(path, token string) (string, error) {
	if path == "" {
		dir, err := os.MkdirTemp("", "pgrotate-agent-")
		if err != nil {
			return "", err
		}
		path = filepath.Join(dir, "awssmatoken")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(abs, []byte(token+"\n"), 0o600); err != nil {
		return "", err
	}
	return abs, nil
}
