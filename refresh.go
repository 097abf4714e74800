package rotating

import (
	"math/rand/v2"
	"time"
)

// startBackgroundLocked starts the background refresh if there is anything
// for it to do (a refresh interval, or a current credential that expires or
// whose sessions end) and it is not running yet. It runs until Close.
func (c *Connector) startBackgroundLocked() {
	if c.background || c.closed || c.current == nil {
		return
	}
	e := c.current
	if c.cfg.refreshInterval == 0 && e.expires.IsZero() && e.nextRotation.IsZero() && e.sessions == nil {
		return
	}
	c.background = true
	c.wg.Add(1)
	go c.refreshInBackground()
}

// refreshInBackground asks the store ahead of the current credential's
// expiry or its sessions' end, and every refresh interval, through the same
// store step as Connect (one at a time, paced by the backoff), so it never
// adds a call while a rotation is being handled. Connect keeps using the
// known credential meanwhile.
func (c *Connector) refreshInBackground() {
	defer c.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		c.mu.Lock()
		now := time.Now()
		at, ok := c.nextRefreshLocked(now)
		if ok && !c.fetching && !now.Before(at) {
			c.startFetchLocked()
			ok = false // wait for the step to end
		}
		changed := c.changed
		c.mu.Unlock()

		var due <-chan time.Time
		if ok {
			timer.Reset(at.Sub(now))
			due = timer.C
		}
		select {
		case <-c.ctx.Done():
			return
		case <-changed:
		case <-due:
		}
		timer.Stop()
	}
}

// nextRefreshLocked returns when the next background refresh is due, or
// false if none is: the earlier of the jittered refresh interval after the
// store last returned the current credential, and a jittered lead before
// its expiry or its sessions' retirement, and just after the store's next
// scheduled rotation, never before the store may be called again (the
// backoff). A refresh that finds the same credential
// counts as a check, so an unchanged store is asked once per interval.
func (c *Connector) nextRefreshLocked(now time.Time) (time.Time, bool) {
	e := c.current
	if e == nil || c.fetching {
		return time.Time{}, false
	}
	var at time.Time
	if c.cfg.refreshInterval > 0 {
		at = e.checked.Add(jitter(c.cfg.refreshInterval, 0.1))
	}
	end := e.expires
	if e.sessions != nil && (end.IsZero() || e.sessions.retireTime().Before(end)) {
		end = e.sessions.retireTime()
	}
	if !end.IsZero() {
		life := end.Sub(e.checked)
		lead := c.cfg.refreshBeforeExpiry
		lead += time.Duration(float64(lead) * 0.5 * rand.Float64())
		// Never earlier than half-way through the remaining life: a short
		// lived credential would otherwise be refreshed at once.
		lead = min(lead, life/2)
		t := end.Add(-lead)
		// A store that keeps returning the same expiring credential is
		// asked again after the longest backoff, not in a tight loop.
		if floor := e.checked.Add(c.cfg.maxBackoff); !t.After(e.checked) && t.Before(floor) {
			t = floor
		}
		if at.IsZero() || t.Before(at) {
			at = t
		}
	}
	if r := e.nextRotation; !r.IsZero() {
		// Just after the store's scheduled rotation, spread over a second
		// so that a fleet does not ask at the same instant. A store that
		// returned the old credential although its rotation was due
		// (late) is asked again after the longest backoff.
		t := r.Add(time.Duration(rand.Int64N(int64(time.Second))))
		if !r.After(e.checked) {
			t = e.checked.Add(c.cfg.maxBackoff)
		}
		if at.IsZero() || t.Before(at) {
			at = t
		}
	}
	if at.IsZero() {
		return time.Time{}, false
	}
	return latest(at, c.nextFetch), true
}
