package benchmarks

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/pgrotate/rotating/secrets/awssm"
	"github.com/pgrotate/rotating/secrets/awssm/awssmtest"
)

// smEndpoint is a local AWS Secrets Manager endpoint (awssmtest) on
// 127.0.0.1, behind a middleware that records when each GetSecretValue
// request arrived and which process (client) sent it.
type smEndpoint struct {
	srv *awssmtest.Server
	hs  *httptest.Server
	// transport carries every client's requests, with enough idle
	// connections kept that a herd of requests does not churn sockets.
	transport *http.Transport

	mu       sync.Mutex
	arrivals []arrival
}

// arrival is one GetSecretValue request reaching the endpoint.
type arrival struct {
	at      time.Time
	process int // -1 when the client was not tagged
}

// processHeader carries the number of the process (connector) that sent a
// request. It is added after signing; the endpoint ignores it.
const processHeader = "X-Bench-Process"

const secretName = "bench/app/db"

func startSM(tb testing.TB, maxConns int) *smEndpoint {
	tb.Helper()
	e := &smEndpoint{srv: awssmtest.NewServer()}
	// httptest listens on 127.0.0.1 only.
	e.hs = httptest.NewServer(http.HandlerFunc(e.serveHTTP))
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.MaxIdleConns = maxConns + 16
	tr.MaxIdleConnsPerHost = maxConns + 16
	e.transport = tr
	tb.Cleanup(func() {
		e.hs.Close()
		e.srv.Close()
		tr.CloseIdleConnections()
	})
	return e
}

func (e *smEndpoint) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Amz-Target") == "secretsmanager."+awssmtest.OpGetSecretValue {
		p, err := strconv.Atoi(r.Header.Get(processHeader))
		if err != nil {
			p = -1
		}
		e.mu.Lock()
		e.arrivals = append(e.arrivals, arrival{at: time.Now(), process: p})
		e.mu.Unlock()
	}
	e.srv.ServeHTTP(w, r)
}

// takeArrivals returns the GetSecretValue arrivals recorded so far and
// forgets them.
func (e *smEndpoint) takeArrivals() []arrival {
	e.mu.Lock()
	defer e.mu.Unlock()
	a := e.arrivals
	e.arrivals = nil
	return a
}

// client returns a Secrets Manager client for the endpoint whose requests
// carry process as processHeader: the SDK's defaults, static dummy
// credentials, no environment or shared configuration read.
func (e *smEndpoint) client(process int) *secretsmanager.Client {
	return secretsmanager.New(secretsmanager.Options{
		Region:       awssmtest.Region,
		BaseEndpoint: aws.String(e.hs.URL),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "AKIABENCHMARK0000000", SecretAccessKey: "benchmark-dummy", Source: "bench"}, nil
		}),
		HTTPClient: &http.Client{Transport: tagged{rt: e.transport, process: strconv.Itoa(process)}},
	})
}

// source returns an awssm.Source for the benchmark secret through a client
// tagged with process.
func (e *smEndpoint) source(tb testing.TB, process int) *awssm.Source {
	tb.Helper()
	src, err := awssm.New(e.client(process), secretName)
	if err != nil {
		tb.Fatal(err)
	}
	return src
}

// getSecretValueCalls is the endpoint's own count of GetSecretValue
// requests.
func (e *smEndpoint) getSecretValueCalls() int64 {
	return e.srv.Calls(awssmtest.OpGetSecretValue)
}

type tagged struct {
	rt      http.RoundTripper
	process string
}

func (t tagged) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(processHeader, t.process)
	return t.rt.RoundTrip(r)
}

// secretValue is the RDS-format JSON of a login.
func secretValue(tb testing.TB, user, pw string) string {
	tb.Helper()
	b, err := json.Marshal(map[string]string{"engine": "postgres", "username": user, "password": pw})
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// awsRotation is AWS Secrets Manager's single-user rotation of the benchmark
// secret, step by step.
type awsRotation struct {
	e       *smEndpoint
	user    string
	pending string // version id of AWSPENDING
	pw      string
}

// createSecret is the rotation's first step: a new version labelled
// AWSPENDING holding pw.
func (e *smEndpoint) createSecret(tb testing.TB, user, pw string) *awsRotation {
	tb.Helper()
	v := e.srv.PutValue(secretName, secretValue(tb, user, pw), awssmtest.StagePending)
	return &awsRotation{e: e, user: user, pending: v, pw: pw}
}

// finishSecret is the last step: AWSCURRENT moves to the pending version
// (AWSPREVIOUS follows; AWSPENDING stays on the new version, as AWS leaves
// it). setSecret, the ALTER ROLE, is the caller's: it is the database's
// part.
func (r *awsRotation) finishSecret() {
	r.e.srv.MoveStage(secretName, awssmtest.StageCurrent, r.pending)
}
