package rotating

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets"
)

// fakeDB stands in for PostgreSQL's login check (see testkit.FakeDB).
type fakeDB = testkit.FakeDB

var newFakeDB = testkit.NewFakeDB

// fakeSource is a store that counts calls. Its current and pending
// credentials can be changed, it can fail or block.
type fakeSource struct {
	mu      sync.Mutex
	current secrets.Credential
	pending *secrets.Credential
	err     error
	// block, if not nil, makes Fetch wait for it to be closed (or ctx).
	block chan struct{}

	fetches        atomic.Int64
	pendingFetches atomic.Int64
}

func newFakeSource(user, password string) *fakeSource {
	return &fakeSource{current: secrets.Credential{Username: user, Password: password, Version: "v1"}}
}

func (s *fakeSource) Fetch(ctx context.Context) (secrets.Credential, error) {
	s.fetches.Add(1)
	s.mu.Lock()
	block, cred, err := s.block, s.current, s.err
	s.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return secrets.Credential{}, ctx.Err()
		}
	}
	if err != nil {
		return secrets.Credential{}, err
	}
	return cred, nil
}

func (s *fakeSource) Describe() string { return "fake store" }

func (s *fakeSource) set(c secrets.Credential) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.current = c
}

func (s *fakeSource) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func (s *fakeSource) setBlock(ch chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.block = ch
}

// pendingSource adds AWSPENDING-like behaviour to fakeSource.
type pendingSource struct{ *fakeSource }

func (s pendingSource) FetchPending(ctx context.Context, rejected secrets.Credential) (secrets.Credential, error) {
	s.pendingFetches.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil {
		return secrets.Credential{}, secrets.ErrNoPending
	}
	return *s.pending, nil
}

func (s pendingSource) setPending(c *secrets.Credential) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = c
}

// refreshNow makes one store step now, as the background refresh does,
// and waits for it to end.
func refreshNow(t *testing.T, c *Connector) {
	t.Helper()
	for {
		c.mu.Lock()
		if !c.fetching {
			step := c.askedAt
			c.startFetchLocked()
			c.mu.Unlock()
			testkit.WaitFor(t.Context(), t, 10*time.Second, "the store step to end", func() bool {
				c.mu.Lock()
				defer c.mu.Unlock()
				return c.askedAt > step
			})
			return
		}
		c.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
}
