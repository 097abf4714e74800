package rotating

import (
	"log/slog"
	"math/rand/v2"
	"time"
)

// startBackground starts the background refresh when e is cached, if there
// is anything for it to do (a refresh interval was set, or e expires) and it
// is not running yet. It runs until Close.
func (c *Connector) startBackground(e *entry) {
	if c.cfg.refreshInterval == 0 && e.cred.Expires.IsZero() {
		return
	}
	c.mu.Lock()
	if c.backgroundStart || c.isClosed {
		c.mu.Unlock()
		return
	}
	c.backgroundStart = true
	c.wg.Add(1)
	c.mu.Unlock()
	go c.refreshInBackground()
}

// poke tells the background refresh that the credential changed, so that it
// recomputes when the next refresh is due.
func (c *Connector) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// refreshInBackground fetches the credential ahead of its expiry and every
// refresh interval, through the same shared refresh as Connect, so it never
// adds a call while a rotation is being handled. Connect keeps using the
// cached credential meanwhile.
func (c *Connector) refreshInBackground() {
	defer c.wg.Done()
	var timer *time.Timer
	for {
		var due <-chan time.Time
		if d, ok := c.nextRefreshIn(time.Now()); ok {
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			due = timer.C
		}
		select {
		case <-c.ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return
		case <-c.wake:
			if timer != nil {
				timer.Stop()
			}
			continue
		case <-due:
		}
		if _, err := c.refresh(c.ctx, refreshAlways); err != nil {
			if c.ctx.Err() != nil {
				return // closed
			}
			c.log.Warn("rotating: background refresh failed; keeping the cached credential", slog.Any("error", err))
			// The next attempt is paced by the backoff.
			c.mu.Lock()
			retry := c.backoff
			c.mu.Unlock()
			if sleep(c.ctx, retry) != nil {
				return
			}
		}
	}
}

// nextRefreshIn returns how long until the next background refresh is due,
// or false if none is: the earlier of the jittered refresh interval after
// the credential was last checked with the store and the jittered lead
// before its expiry. A refresh that finds the same credential counts as a
// check (and may bring a later expiry), so an unchanged store is asked once
// per interval, not once per backoff step.
func (c *Connector) nextRefreshIn(now time.Time) (time.Duration, bool) {
	e := c.cur.Load()
	if e == nil {
		return 0, false
	}
	checked := time.Unix(0, e.checked.Load())
	var at time.Time
	if c.cfg.refreshInterval > 0 {
		at = checked.Add(jitter(c.cfg.refreshInterval, 0.1))
	}
	if exp := e.expires.Load(); exp != 0 {
		expires := time.Unix(0, exp)
		life := expires.Sub(e.fetchedAt)
		lead := c.cfg.refreshBeforeExpiry
		lead += time.Duration(float64(lead) * 0.5 * rand.Float64())
		// Never refresh earlier than half-way through the lifetime: a short
		// lived credential would otherwise be refreshed at once.
		lead = min(lead, life/2)
		t := expires.Add(-lead)
		// A store that keeps returning the same expiring credential is
		// asked again after the longest backoff, not in a tight loop.
		if floor := checked.Add(c.cfg.maxBackoff); !t.After(checked) && t.Before(floor) {
			t = floor
		}
		if at.IsZero() || t.Before(at) {
			at = t
		}
	}
	if at.IsZero() {
		return 0, false
	}
	return max(at.Sub(now), 0), true
}
