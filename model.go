package rotating

import (
	"database/sql/driver"
	"log/slog"
	"time"

	"github.com/pgrotate/rotating/secrets"
)

// This file is the connector's model of the credentials it knows: three
// named slots, a status per credential, one pick rule (decideLocked, and
// pickLocked for the lock-free fast path), and the only two places that
// change what is known: loginResultLocked after a login and
// applyFetchLocked/applyPendingLocked after a store call. docs/design.md
// lists every field and rule.

// status is what the connector knows about a credential from its last login.
type status uint8

const (
	untried  status = iota // no login with it has finished yet
	works                  // the last login with it succeeded
	rejected               // the last login with it was rejected
)

func (s status) String() string {
	switch s {
	case works:
		return "works"
	case rejected:
		return "rejected"
	}
	return "untried"
}

// entry is one credential with everything prebuilt to dial with it. The
// fields above the line never change after newEntry; those below are
// guarded by Connector.mu.
type entry struct {
	cred        secrets.Credential
	user        string // the user it logs in as: the credential's, or the DSN's
	gen         uint64 // numbers entries as they are built, for logs and Stats
	fetchedAt   time.Time
	fromPending bool // first offered by PendingSource.FetchPending
	conn        driver.Connector
	// sessions is set when the credential's sessions end at a known time
	// (Credential.SessionsEnd): its connections are wrapped so that
	// database/sql stops using them at sessions.retireAt.
	sessions *sessionEnd

	// Guarded by Connector.mu.
	status    status
	at        uint64 // Connector.clock when status last changed (0 while untried)
	rejectErr error  // the driver's error of the last rejection
	// checked is when the store last returned this credential, expires its
	// latest Expires and nextRotation its latest NextRotation; they drive
	// the background refresh.
	checked      time.Time
	expires      time.Time
	nextRotation time.Time
}

// usableAt reports whether new logins may use e at now: not once its
// sessions are being retired (a session opened then would be retired at
// once). Expires is the store's word and does not stop a login: the
// database's answer decides.
func (e *entry) usableAt(now time.Time) bool {
	return e.sessions == nil || now.Before(e.sessions.retireTime())
}

// slotsLocked returns the candidates in order of preference: the store's
// current credential, the store's pending one, the previous one that
// worked. Slots never share an entry.
func (c *Connector) slotsLocked() [3]*entry {
	return [3]*entry{c.current, c.pending, c.previous}
}

// freshLocked reports whether e is known to work now: its last login
// succeeded, and after every rejection of a credential preferred to it.
// A success from before the current credential was rejected is history, not
// knowledge: the database may have rotated both.
func (c *Connector) freshLocked(e *entry) bool {
	if e.status != works {
		return false
	}
	for _, better := range c.slotsLocked() {
		if better == e {
			return true
		}
		if better != nil && better.status == rejected && better.at > e.at {
			return false
		}
	}
	return true
}

// owedLocked reports whether the store must be asked before a credential
// not known to work is tried: a login was rejected after the store's last
// answer, so the store may already hold the successor, which is better
// than any guess.
func (c *Connector) owedLocked() bool {
	return c.askedAt < c.rejectedAt
}

// action is what decideLocked tells a caller of the slow path to do next.
type action struct {
	kind    actionKind
	e       *entry          // for dial and probe
	until   time.Time       // for wait: when to decide again at the latest
	changed <-chan struct{} // for wait: closed when anything in the model changes
	err     error           // for fail
}

type actionKind uint8

const (
	actDial  actionKind = iota // log in with e; others may do the same
	actProbe                   // log in with e on behalf of everyone; report the result
	actWait                    // wait for a change, until, or the caller's end
	actFail                    // return err
)

// decideLocked is the pick rule: what a caller that has no working
// credential at hand does next. sawStep is askedAt when the caller
// started. Candidates are taken in slot order:
//
//   - a credential known to work now is dialed;
//   - an untried one is probed by one caller while the others wait for its
//     result (or dial a later candidate that works), so a bad credential
//     costs one rejected login, not one per caller;
//   - after a rejection, the store is asked before a credential not known
//     to work is tried;
//   - a rejected one is skipped.
//
// With nothing left, the incident's step clock rules: one store call per
// step, and from the second step on one re-check (probe) of the rejected
// current credential per step, for when the database, not the store, was
// behind.
func (c *Connector) decideLocked(now time.Time, sawStep uint64) action {
	if c.closed {
		return action{kind: actFail, err: ErrClosed}
	}
	probeInFlight := false
	owed := false
	for _, e := range c.slotsLocked() {
		if e == nil || !e.usableAt(now) {
			continue
		}
		switch {
		case c.freshLocked(e):
			return action{kind: actDial, e: e}
		case e.status == rejected:
			continue
		case c.probing != nil:
			probeInFlight = true // wait for its result, or dial a later one
		case c.owedLocked():
			owed = true
		default:
			c.startProbeLocked(e)
			return action{kind: actProbe, e: e}
		}
	}
	if probeInFlight {
		return c.waitLocked(time.Time{})
	}

	// Nothing to dial: an incident, or the first use.
	if c.current != nil && !c.incident {
		c.startIncidentLocked(now)
	}
	if c.current == nil && c.fetchErr != nil && c.askedAt != sawStep {
		// First use, and the store failed since this caller came: there is
		// nothing to try, so the store's error is the answer.
		return action{kind: actFail, err: c.fetchErr}
	}
	// A step: the store call starts on its own goroutine; from the second
	// step on, once it has brought nothing, one caller re-checks the
	// rejected credential.
	if !c.fetching && (owed || !now.Before(c.nextFetch)) {
		c.startFetchLocked()
	}
	recheck := c.current != nil && c.current.status == rejected && c.current.usableAt(now) && c.probing == nil
	if recheck && !now.Before(c.nextProbe) {
		c.startProbeLocked(c.current)
		c.nextProbe = farFuture // one re-check per step; the next step's end sets it
		return action{kind: actProbe, e: c.current}
	}
	if c.fetching {
		return c.waitLocked(time.Time{})
	}
	if recheck {
		return c.waitLocked(earliest(c.nextFetch, c.nextProbe))
	}
	return c.waitLocked(c.nextFetch)
}

var farFuture = time.Unix(1<<62, 0)

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func (c *Connector) waitLocked(until time.Time) action {
	return action{kind: actWait, until: until, changed: c.changed}
}

func (c *Connector) startProbeLocked(e *entry) {
	c.probing = e
	c.stats.probes.Add(1)
	c.publishLocked()
}

// startIncidentLocked begins an incident: nothing usable is left. The
// store is asked at once (it may already hold the successor), then once
// per backoff step; the rejected credential is re-checked from the second
// step on. Everything about the incident is reset when it ends.
func (c *Connector) startIncidentLocked(now time.Time) {
	c.incident = true
	c.steps = 0
	c.backoff = c.cfg.minBackoff
	c.nextFetch = now
	c.nextProbe = farFuture
	c.pendingAsked = false
}

// endIncidentLocked is called on every successful login with a slot's
// credential: the next incident starts from nothing.
func (c *Connector) endIncidentLocked() {
	if !c.incident {
		return
	}
	c.incident = false
	c.backoff = c.cfg.minBackoff
	c.nextFetch = time.Time{}
	c.nextProbe = farFuture
	c.pendingAsked = false
	c.fetchErr = nil
}

// stepLocked moves the incident's clock after a store call that brought
// nothing usable: the next call after the backoff, which doubles, and from
// the second step on one re-check of the rejected credential now, after
// the step's store call, which would have made it moot.
func (c *Connector) stepLocked(now time.Time) {
	c.nextFetch = now.Add(c.backoff)
	c.backoff = min(2*c.backoff, c.cfg.maxBackoff)
	if !c.incident {
		return
	}
	if c.steps > 0 {
		c.nextProbe = now
	}
	c.steps++
}

// outcome is how a login ended, as far as the model cares.
type outcome uint8

const (
	loggedIn     outcome = iota
	loginDenied          // the database rejected the credential
	inconclusive         // any other error, or the caller gave up
)

// loginResultLocked records a login's result. probe says the login was
// the probe decideLocked handed out; started is the clock when the login
// began. A result for an entry no longer in a slot changes nothing: it is
// about a credential the connector has moved past (a late failure never
// evicts a newer credential).
func (c *Connector) loginResultLocked(e *entry, probe bool, o outcome, err error, started uint64) {
	changed := false
	if probe && c.probing == e {
		c.probing = nil
		changed = true
	}
	if o == loggedIn && e.status != works && e.at > started {
		// The login started before e was rejected (or forgotten): the
		// server checked its password before the database changed, so its
		// success is not news about the database now.
		o = inconclusive
	}
	if c.inSlotLocked(e) {
		switch {
		case o == loggedIn && (e.status != works || c.incident || !c.freshLocked(e)):
			c.logWorks(e)
			c.clock++
			e.status, e.at, e.rejectErr = works, c.clock, nil
			c.endIncidentLocked()
			changed = true
		case o == loginDenied && e.status != rejected:
			if e.status == works {
				c.databaseChangedLocked(e)
			}
			c.clock++
			e.status, e.at, e.rejectErr = rejected, c.clock, err
			c.rejectedAt = c.clock
			c.log.Warn("rotating: login rejected; looking for a newer credential",
				slog.Uint64("generation", e.gen), slog.String("version", e.cred.Version),
				slog.String("username", e.user), slog.String("slot", c.slotName(e)),
				slog.String("sqlstate", sqlState(err)))
			changed = true
		}
	}
	if changed {
		c.changedLocked()
	}
}

// databaseChangedLocked is called when a credential that worked is
// rejected: the database changed, so what earlier logins told about the
// other credentials is history. Their rejections are forgotten (they may
// work again: a rolled-back rotation), and each is tried once more, by one
// caller, after the store was asked.
func (c *Connector) databaseChangedLocked(changed *entry) {
	for _, e := range c.slotsLocked() {
		if e != nil && e != changed && e.status == rejected {
			c.clock++
			e.status, e.at, e.rejectErr = untried, c.clock, nil
		}
	}
}

func (c *Connector) inSlotLocked(e *entry) bool {
	return e != nil && (e == c.current || e == c.pending || e == c.previous)
}

func (c *Connector) logWorks(e *entry) {
	switch e {
	case c.current:
		if e.status == rejected && c.incident {
			c.log.Info("rotating: rejected credential works again", slog.Uint64("generation", e.gen),
				slog.Any("credential", e.cred))
		}
	case c.pending:
		c.stats.promotions.Add(1)
		c.log.Info("rotating: pending credential works; using it", slog.Uint64("generation", e.gen),
			slog.Any("credential", e.cred))
	case c.previous:
		c.log.Warn("rotating: the store's credential is rejected but the previous one works; using the previous one",
			slog.Uint64("generation", e.gen), slog.Any("credential", e.cred))
	}
}

func (c *Connector) slotName(e *entry) string {
	switch e {
	case c.current:
		return "current"
	case c.pending:
		return "pending"
	case c.previous:
		return "previous"
	}
	return "none"
}

// applyFetchLocked records the store's current credential. fresh is the
// entry prebuilt for it if it was not known when the fetch ended (nil
// otherwise, or if building it failed). It reports whether the step should
// go on to ask for the pending credential.
func (c *Connector) applyFetchLocked(cred secrets.Credential, fresh *entry, now time.Time) (askPending bool) {
	var next *entry
	switch {
	case c.current != nil && cred.SameLogin(c.current.cred):
	case c.pending != nil && cred.SameLogin(c.pending.cred):
		next, c.pending = c.pending, nil // the rotation finished
	case c.previous != nil && cred.SameLogin(c.previous.cred):
		next, c.previous = c.previous, nil // the store went back
	default:
		next = fresh
	}
	if next != nil {
		c.replaceCurrentLocked(next)
	}
	cur := c.current
	if cur == nil || !cred.SameLogin(cur.cred) {
		return false // building the entry failed; fetchErr says why
	}
	cur.checked, cur.expires, cur.nextRotation = now, cred.Expires, cred.NextRotation
	if cur.sessions != nil && !cred.SessionsEnd.IsZero() {
		// A renewed lease: its connections live on until the new end.
		cur.sessions.moveTo(c.retireAt(now, cred.SessionsEnd))
	}
	if cur.status != rejected {
		if !c.incident {
			c.backoff = c.cfg.minBackoff
		}
		return false
	}
	// The store returned a credential the database rejected: the store is
	// behind the database (a runbook's ALTER ROLE before the vault was
	// updated, or AWS's window between setSecret and finishSecret).
	c.stepLocked(now)
	if _, ok := c.src.(secrets.PendingSource); ok && !c.pendingAsked {
		c.pendingAsked = true
		return true
	}
	return false
}

// replaceCurrentLocked makes e the current credential. The one it replaces
// becomes the previous one if it worked; otherwise the previous one stays.
func (c *Connector) replaceCurrentLocked(e *entry) {
	old := c.current
	c.current = e
	if old != nil {
		if old.status == works {
			c.previous = old
		}
		c.stats.changes.Add(1)
	}
	c.log.Info("rotating: credential changed", slog.Uint64("generation", e.gen),
		slog.Any("credential", e.cred), slog.String("status", e.status.String()))
	c.startBackgroundLocked()
}

// applyPendingLocked records the answer to FetchPending: no pending
// credential, or one to probe.
func (c *Connector) applyPendingLocked(cred secrets.Credential, fresh *entry, none bool) {
	if none {
		c.pending = nil
		return
	}
	if c.current != nil && cred.SameLogin(c.current.cred) {
		return // the rejected credential again: nothing pending
	}
	if c.pending != nil && cred.SameLogin(c.pending.cred) {
		return // known already, with what its logins told
	}
	if fresh == nil {
		return
	}
	c.pending = fresh
	c.log.Info("rotating: trying pending credential", slog.Uint64("generation", fresh.gen),
		slog.Any("credential", fresh.cred))
}

// knownLocked reports whether cred is the login of a slot's entry, so a
// fetch need not build a new entry for it.
func (c *Connector) knownLocked(cred secrets.Credential) bool {
	for _, e := range c.slotsLocked() {
		if e != nil && cred.SameLogin(e.cred) {
			return true
		}
	}
	return false
}

// changedLocked publishes the fast path's credential and wakes every
// caller waiting for a change.
func (c *Connector) changedLocked() {
	c.publishLocked()
	close(c.changed)
	c.changed = make(chan struct{})
}

// publishLocked stores what Connect's fast path dials: the first candidate
// known to work now, unless an earlier one is untried and nobody is
// probing it yet (then the fast path is off, so that a caller comes to the
// slow path and probes it).
func (c *Connector) publishLocked() {
	now := time.Now()
	if t := c.targetLocked(now); t != nil && t != c.target {
		c.target = t
		c.targetGen++
	}
	c.use.Store(c.pickLocked(now))
}

// targetLocked returns the credential new logins go to: the first
// candidate known to work now, or not tried yet once the store has been
// asked since the last rejection (nil while only rejected or stale ones are
// left, or the store must be asked first).
func (c *Connector) targetLocked(now time.Time) *entry {
	for _, e := range c.slotsLocked() {
		if e == nil || !e.usableAt(now) {
			continue
		}
		if c.freshLocked(e) {
			return e
		}
		if e.status == untried {
			if c.owedLocked() {
				return nil
			}
			return e
		}
	}
	return nil
}

func (c *Connector) pickLocked(now time.Time) *entry {
	if c.closed {
		return nil
	}
	for _, e := range c.slotsLocked() {
		if e == nil || !e.usableAt(now) {
			continue
		}
		switch {
		case c.freshLocked(e):
			return e
		case e.status == rejected || c.probing == e:
			continue
		}
		return nil // an untried candidate wants its probe
	}
	return nil
}
