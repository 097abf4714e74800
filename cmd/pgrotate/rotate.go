package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/lib/pq"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets"
	"github.com/pgrotate/rotating/secrets/awssm/rotation"
)

// Kinds of rotation events.
const (
	kindRunbook = "runbook"
)

// rotationEvent is one rotation, applied to every approach's secret at
// once. Times are set as it runs; the mutex guards them.
type rotationEvent struct {
	n    int
	kind string

	mu         sync.Mutex
	start, end time.Time
	open       time.Time // the database stops accepting what the store says is current (setSecret, ALTER ROLE)
	close      time.Time // the store catches up (finishSecret, PutSecretValue)
	err        error

	// At the start: the rotating approach's counters and where the server
	// log ended, for the per-rotation figures.
	fetches   FetchCounts
	vault     VaultCalls
	stats     rotating.Stats
	failed    int64
	logOffset int64

	// rotationRefused counts the logins of the rotation function on the
	// rotating approach's secret that the database refused (28P01): the
	// server logs them under the application's role.
	rotationRefused atomic.Int64
}

func (e *rotationEvent) markOpen() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if now := time.Now(); e.open.IsZero() || now.Before(e.open) {
		e.open = now
	}
}

// markAt records that the database changed at open and the store caught
// up at close (a rotation the demo watched rather than ran).
func (e *rotationEvent) markAt(open, close time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.open, e.close = open, close
}

func (e *rotationEvent) markClose() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if now := time.Now(); now.After(e.close) {
		e.close = now
	}
}

func (e *rotationEvent) inWindow() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return !e.start.IsZero() && e.end.IsZero()
}

// rotator applies the rotation events of a run, one after the other:
// AWS's rotations and the runbook (rotationPlan), or a Vault static role's
// rotations (vaultRotations).
type rotator interface {
	// due returns when the i-th event (from 0) is due, the run having
	// started at start and the events before it having run.
	due(start time.Time, i int) time.Time
	// describe says what ev does, for the log line that starts it.
	describe(ev *rotationEvent) string
	// apply runs ev, marking when the database changes (markOpen) and
	// when the store has caught up (markClose).
	apply(ctx context.Context, ev *rotationEvent) error
}

// rotationPlan says how to rotate: which secrets, with which strategy, and
// how long to hold the window in which the store is behind the database.
// Its total events are spread evenly over duration.
type rotationPlan struct {
	pg       *pgserver.Server
	ops      *opsClient
	strategy rotation.Strategy
	window   time.Duration
	secrets  []string // one per approach, rotated together
	log      *slog.Logger
	verbose  bool
	duration time.Duration
	total    int
}

var _ rotator = (*rotationPlan)(nil)

func (p *rotationPlan) due(start time.Time, i int) time.Time {
	return eventAt(start, p.duration, i+1, p.total)
}

func (p *rotationPlan) describe(ev *rotationEvent) string {
	if ev.kind == kindRunbook {
		return "manual runbook: ALTER ROLE now, the secret updated " + p.window.String() + " later"
	}
	return "AWS four-step rotation (" + ev.kind + "), setSecret to finishSecret held open " + p.window.String()
}

// kindOf returns the kind of the n-th of total events: AWS rotations first,
// the manual runbook last.
func (p *rotationPlan) kindOf(n, total int) string {
	if n == total {
		return kindRunbook
	}
	return p.strategy.String()
}

// apply runs ev on every secret at once and waits for all of them.
func (p *rotationPlan) apply(ctx context.Context, ev *rotationEvent) error {
	errs := make([]error, len(p.secrets))
	var wg sync.WaitGroup
	for i, id := range p.secrets {
		// The first secret is the rotating approach's, whose refused logins
		// the report counts.
		var refused *atomic.Int64
		if i == 0 {
			refused = &ev.rotationRefused
		}
		wg.Go(func() {
			if ev.kind == kindRunbook {
				errs[i] = p.runbook(ctx, ev, id)
			} else {
				errs[i] = p.rotateAWS(ctx, ev, id, refused)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// rotateAWS is AWS's four-step rotation, holding the window between
// setSecret and finishSecret open for p.window so that the workload really
// meets it. If refused is not nil, the rotation function's logins that
// the database refuses are counted into it.
func (p *rotationPlan) rotateAWS(ctx context.Context, ev *rotationEvent, secretID string, refused *atomic.Int64) error {
	var logger *slog.Logger
	if p.verbose {
		logger = p.log // a line per step; too much for the default output
	}
	var newConnector rotation.NewConnectorFunc
	if refused != nil {
		newConnector = refusalCounter(refused)
	}
	r := rotation.New(p.ops, rotation.Options{
		NewConnector: newConnector,
		Strategy:     p.strategy,
		SSLMode:      pq.SSLModeDisable, // the throwaway server has no TLS
		Logger:       logger,
		Hook: func(ctx context.Context, step rotation.Step, _, _ string) error {
			switch step {
			case rotation.StepSet:
				ev.markOpen()
				return testkit.Sleep(ctx, p.window)
			case rotation.StepFinish:
				ev.markClose()
			}
			return nil
		},
	})
	_, err := r.Rotate(ctx, secretID)
	return err
}

// runbook is the manual rotation: the DBA runs ALTER ROLE, and updates the
// secret (PutSecretValue, through the SDK) p.window later.
func (p *rotationPlan) runbook(ctx context.Context, ev *rotationEvent, secretID string) error {
	out, err := p.ops.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(secretID)})
	if err != nil {
		return fmt.Errorf("runbook: read %s: %w", secretID, err)
	}
	value := []byte(aws.ToString(out.SecretString))
	cred, err := secrets.ParseJSON(value, secrets.Keys{})
	if err != nil {
		return fmt.Errorf("runbook: %s: %w", secretID, err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(value, &fields); err != nil {
		return fmt.Errorf("runbook: %s: %w", secretID, secrets.ErrMalformed)
	}
	password := newPassword()
	if err := p.pg.SetPassword(ctx, cred.Username, password); err != nil {
		return fmt.Errorf("runbook: %w", err)
	}
	ev.markOpen()
	if err := testkit.Sleep(ctx, p.window); err != nil {
		return err
	}
	fields["password"], _ = json.Marshal(password)
	updated, _ := json.Marshal(fields)
	if _, err := p.ops.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId:     aws.String(secretID),
		SecretString: aws.String(string(updated)),
	}); err != nil {
		return fmt.Errorf("runbook: PutSecretValue %s: %w", secretID, err)
	}
	ev.markClose()
	return nil
}

// eventAt returns when the n-th of total events is due: spread evenly over
// the run, leaving time before the first and after the last.
func eventAt(start time.Time, d time.Duration, n, total int) time.Time {
	return start.Add(d * time.Duration(n) / time.Duration(total+1))
}

// newPassword returns a random password of 32 hex digits.
func newPassword() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// randomSuffix returns n random hex digits for names.
func randomSuffix(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}
