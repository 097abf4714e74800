package loopback

import "sync"

// Faults is a server's table of injected faults, by operation: each for
// the next few calls or until cleared, and one under a wildcard key for
// every operation without a fault of its own. F is the server's own Fault
// type. Faults is safe for concurrent use; its lock is held only for the
// table's own work, so a server may use it with its own lock held.
type Faults[K comparable, F any] struct {
	all K

	mu sync.Mutex
	m  map[K]*countedFault[F]
}

// countedFault is a fault and how many more calls it applies to.
type countedFault[F any] struct {
	fault     F
	limited   bool
	remaining int
}

// NewFaults returns an empty table whose wildcard key is all. (A zero
// Faults is an empty table whose wildcard is K's zero value.)
func NewFaults[K comparable, F any](all K) *Faults[K, F] {
	return &Faults[K, F]{all: all, m: make(map[K]*countedFault[F])}
}

// Set makes the next count calls of op (every call until [Faults.Clear]
// if count is zero or less) meet f, replacing any fault op had.
func (t *Faults[K, F]) Set(op K, f F, count int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[K]*countedFault[F])
	}
	t.m[op] = &countedFault[F]{fault: f, limited: count > 0, remaining: count}
}

// Clear removes every fault.
func (t *Faults[K, F]) Clear() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.m)
}

// Take returns the fault this call of op meets, op's own or else the
// wildcard's, and uses up one of its calls.
func (t *Faults[K, F]) Take(op K) (F, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := op
	c := t.m[key]
	if c == nil {
		key = t.all
		c = t.m[key]
	}
	if c == nil {
		var zero F
		return zero, false
	}
	if c.limited {
		c.remaining--
		if c.remaining <= 0 {
			delete(t.m, key)
		}
	}
	return c.fault, true
}

// Calls counts a server's requests by operation. The zero value is ready
// to use; it is safe for concurrent use.
type Calls[K comparable] struct {
	mu    sync.Mutex
	m     map[K]int64
	total int64
}

// Add counts one call of op.
func (c *Calls[K]) Add(op K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[K]int64)
	}
	c.m[op]++
	c.total++
}

// AddOther counts a call of no operation in the total only.
func (c *Calls[K]) AddOther() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total++
}

// Of returns the calls of op since the start or the last [Calls.Reset].
func (c *Calls[K]) Of(op K) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[op]
}

// Total returns the calls of every operation since the start or the last
// [Calls.Reset].
func (c *Calls[K]) Total() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// Reset sets every count to zero.
func (c *Calls[K]) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.m)
	c.total = 0
}
