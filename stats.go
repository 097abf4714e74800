package rotating

import (
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a Connector's counters and current credential,
// for export to a metrics system. Counters only grow.
type Stats struct {
	// Source describes the connector's source (secrets.Describe), as
	// FetchError.Source does: a name for a metric's labels, never a secret.
	Source string

	// Fetches counts calls to Source.Fetch; FetchErrors counts the calls
	// (Fetch or FetchPending) that failed or returned an unusable credential.
	Fetches     uint64
	FetchErrors uint64
	// PendingFetches counts calls to PendingSource.FetchPending.
	PendingFetches uint64
	// CredentialChanges counts refreshes that replaced the cached credential
	// with a different one (the first fetch is not a change).
	CredentialChanges uint64
	// PendingPromotions counts pending credentials that logged in and became
	// the cached credential.
	PendingPromotions uint64
	// Dials counts login attempts; DialErrors those that failed for any
	// reason; AuthFailures those the database rejected as a bad credential.
	Dials        uint64
	DialErrors   uint64
	AuthFailures uint64
	// Probes counts logins made by one caller on behalf of all to try a
	// credential nobody has logged in with yet, or to re-check a rejected
	// one (once per backoff step).
	Probes uint64
	// AbandonedFetches counts source calls that did not return within the
	// fetch timeout and were abandoned.
	AbandonedFetches uint64
	// RetiredConnections counts connections of credentials whose sessions
	// end (Credential.SessionsEnd) that were closed once retired.
	RetiredConnections uint64
	// Recoveries counts Connect calls that succeeded after a rejected login;
	// RecoveryFailures those that gave up with an *AuthError.
	Recoveries       uint64
	RecoveryFailures uint64

	// The credential in use (the last one new logins were sent to, else the
	// store's current one): its generation (1 for the first, one higher
	// each time new logins move to another credential; 0 before the first
	// fetch), its store version (if the
	// source gives one), when it was fetched and how long ago, and whether
	// it came from the source's pending credential.
	CredentialGeneration  uint64
	CredentialVersion     string
	CredentialFetchedAt   time.Time
	CredentialAge         time.Duration
	CredentialFromPending bool
}

type counters struct {
	fetches, fetchErrors, pendingFetches atomic.Uint64
	changes, promotions                  atomic.Uint64
	dials, dialErrors, authFailures      atomic.Uint64
	recoveries, recoveryFailures         atomic.Uint64
	probes, abandonedFetches             atomic.Uint64
	retiredConns                         atomic.Uint64
}

// Stats returns a snapshot of the connector's counters and current
// credential. It is cheap and safe to call concurrently.
func (c *Connector) Stats() Stats {
	s := Stats{
		Source:             c.srcName,
		Fetches:            c.stats.fetches.Load(),
		FetchErrors:        c.stats.fetchErrors.Load(),
		PendingFetches:     c.stats.pendingFetches.Load(),
		CredentialChanges:  c.stats.changes.Load(),
		PendingPromotions:  c.stats.promotions.Load(),
		Dials:              c.stats.dials.Load(),
		DialErrors:         c.stats.dialErrors.Load(),
		AuthFailures:       c.stats.authFailures.Load(),
		Recoveries:         c.stats.recoveries.Load(),
		RecoveryFailures:   c.stats.recoveryFailures.Load(),
		Probes:             c.stats.probes.Load(),
		AbandonedFetches:   c.stats.abandonedFetches.Load(),
		RetiredConnections: c.stats.retiredConns.Load(),
	}
	c.mu.Lock()
	e, gen := c.inUseLocked(), c.targetGen
	c.mu.Unlock()
	if e != nil {
		s.CredentialGeneration = max(gen, 1)
		s.CredentialVersion = e.cred.Version
		s.CredentialFetchedAt = e.fetchedAt
		s.CredentialAge = time.Since(e.fetchedAt)
		s.CredentialFromPending = e.fromPending
	}
	return s
}

// inUse returns the credential in use: the last one new logins went to,
// unless it was rejected since; else the store's current one.
func (c *Connector) inUse() *entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inUseLocked()
}

func (c *Connector) inUseLocked() *entry {
	if c.target != nil && c.target.status != rejected {
		return c.target
	}
	return c.current
}
