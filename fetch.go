package rotating

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/pgrotate/rotating/secrets"
)

// startFetchLocked starts the step's store call on the connector's
// context. Callers wait for it on c.changed, each with its own context, so
// that one caller giving up never fails the others.
func (c *Connector) startFetchLocked() {
	c.fetching = true
	c.wg.Add(1)
	go c.fetchStep()
}

// fetchStep is one store step: Fetch, and FetchPending when the store
// returned the credential the database rejected and the source has a
// pending stage (once per incident). The model is updated in
// applyFetchLocked and applyPendingLocked only.
func (c *Connector) fetchStep() {
	defer c.wg.Done()
	cred, err := c.call(false, c.src.Fetch)
	fresh, err := c.entryFor(cred, err, false)
	now := time.Now()
	c.mu.Lock()
	askPending := false
	if err != nil {
		c.fetchErr = err
		c.stepLocked(now)
	} else {
		c.fetchErr = nil
		askPending = c.applyFetchLocked(cred, fresh, now)
	}
	c.adoptLocked(fresh)
	var rejected secrets.Credential
	if askPending {
		rejected = c.current.cred
	} else {
		c.endStepLocked()
	}
	c.mu.Unlock()
	if !askPending {
		return
	}

	ps := c.src.(secrets.PendingSource)
	pcred, err := c.call(true, func(ctx context.Context) (secrets.Credential, error) { return ps.FetchPending(ctx, rejected) })
	none := errors.Is(err, secrets.ErrNoPending)
	if none {
		err = nil
	}
	var pfresh *entry
	if !none {
		pfresh, err = c.entryFor(pcred, err, true)
	}
	c.mu.Lock()
	if err != nil {
		c.fetchErr = err
	} else {
		c.applyPendingLocked(pcred, pfresh, none)
	}
	c.adoptLocked(pfresh)
	c.endStepLocked()
	c.mu.Unlock()
}

// entryFor builds an entry for a fetched credential unless the model knows
// its login already (then it returns nil and the known entry is used).
func (c *Connector) entryFor(cred secrets.Credential, err error, pending bool) (*entry, error) {
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	known := c.knownLocked(cred, time.Now())
	c.mu.Unlock()
	if known {
		return nil, nil
	}
	return c.newEntry(cred, pending)
}

// adoptLocked registers the session timer of an entry the step built, or
// stops it if the model did not take the entry.
func (c *Connector) adoptLocked(e *entry) {
	if e == nil || e.sessions == nil {
		return
	}
	if !c.inSlotLocked(e) || c.closed {
		e.sessions.stop()
		return
	}
	now := time.Now()
	kept := c.sessions[:0]
	for _, s := range c.sessions {
		if now.Before(s.retireTime()) {
			kept = append(kept, s)
		}
	}
	c.sessions = append(kept, e.sessions)
}

func (c *Connector) endStepLocked() {
	c.fetching = false
	c.clock++
	c.askedAt = c.clock
	c.startBackgroundLocked()
	c.changedLocked()
}

// sourceCall is one call to the source in flight.
type sourceCall struct {
	pending  bool
	deadline time.Time     // its fetch timeout
	done     chan struct{} // closed when the source returned
}

// wait waits for the call to return until its deadline, and reports
// whether it did.
func (sc *sourceCall) wait() bool {
	t := time.NewTimer(time.Until(sc.deadline))
	defer t.Stop()
	select {
	case <-sc.done:
		return true
	case <-t.C:
		return false
	}
}

// abandonGrace is how long a call whose fetch timeout passed may take to
// return its context's error before it is abandoned.
const abandonGrace = 50 * time.Millisecond

// call calls the source on the connector's context with the fetch
// timeout, validates the credential and counts the call. The source runs
// on a goroutine of its own, so that a source that panics is an error and a
// source that ignores its context is abandoned at the timeout (its late
// result is discarded) instead of holding up the connector.
func (c *Connector) call(pending bool, fn func(context.Context) (secrets.Credential, error)) (secrets.Credential, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.fetchTimeout)
	defer cancel()
	if pending {
		c.stats.pendingFetches.Add(1)
	} else {
		c.stats.fetches.Add(1)
	}
	deadline, _ := ctx.Deadline()
	sc := &sourceCall{pending: pending, deadline: deadline, done: make(chan struct{})}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return secrets.Credential{}, ErrClosed
	}
	c.calls[sc] = struct{}{}
	c.mu.Unlock()
	c.log.Debug("rotating: fetching credential", slog.Bool("pending", pending))

	type result struct {
		cred secrets.Credential
		err  error
	}
	res := make(chan result, 1)
	go func() {
		defer func() {
			c.mu.Lock()
			delete(c.calls, sc)
			c.mu.Unlock()
			close(sc.done)
		}()
		defer func() {
			if r := recover(); r != nil {
				err := panicError("the source", r)
				c.log.Error("rotating: the source panicked", slog.Bool("pending", pending),
					slog.Any("error", err), slog.String("stack", string(debug.Stack())))
				res <- result{err: err}
			}
		}()
		cred, err := fn(ctx)
		res <- result{cred, err}
	}()

	var r result
	select {
	case r = <-res:
	case <-ctx.Done():
		grace := time.NewTimer(abandonGrace)
		select {
		case r = <-res:
		case <-c.ctx.Done():
		case <-grace.C:
			c.stats.abandonedFetches.Add(1)
			c.log.Warn("rotating: the source did not return within the fetch timeout; abandoning the call, its late result will be discarded",
				slog.Bool("pending", pending), slog.Duration("fetch_timeout", c.cfg.fetchTimeout))
			r.err = fmt.Errorf("the source did not return within the fetch timeout (%v): %w", c.cfg.fetchTimeout, context.DeadlineExceeded)
		}
		grace.Stop()
		if c.ctx.Err() != nil {
			return secrets.Credential{}, ErrClosed // cancelled by Close
		}
	}
	err := r.err
	if err == nil {
		err = r.cred.Validate()
	}
	if err != nil && c.ctx.Err() != nil {
		return secrets.Credential{}, ErrClosed // the call was cancelled by Close
	}
	if err != nil {
		if pending && errors.Is(err, secrets.ErrNoPending) {
			return secrets.Credential{}, err
		}
		c.stats.fetchErrors.Add(1)
		ferr := &FetchError{Source: c.srcName, Pending: pending, Err: err}
		c.log.Warn("rotating: credential fetch failed", slog.Any("error", ferr))
		return secrets.Credential{}, ferr
	}
	return r.cred, nil
}

// panicError describes a recovered panic by the type of its value only:
// the value itself may hold a secret.
func panicError(who string, r any) error {
	return fmt.Errorf("%s panicked (with a value of type %T, not shown: it may hold a secret)", who, r)
}
