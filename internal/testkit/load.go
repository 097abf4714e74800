package testkit

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lib/pq"
)

// Ledger is the record of an insert load: every id the database
// acknowledged, the statements that failed and the first few errors, and
// the check that no acknowledged row was lost (Verify). InsertLoad keeps
// one; so does pgrotate demo's paced load.
type Ledger struct {
	// OK and Failed count statements as they are recorded.
	OK, Failed atomic.Int64

	table string

	mu   sync.Mutex // guards ids and errs
	ids  map[int64]struct{}
	errs []error // the first few failures
}

// NewLedger returns an empty Ledger of inserts into table.
func NewLedger(table string) *Ledger {
	return &Ledger{table: table, ids: make(map[int64]struct{})}
}

// Record notes one statement: the id the database acknowledged, or its
// error.
func (l *Ledger) Record(id int64, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.Failed.Add(1)
		if len(l.errs) < 5 {
			l.errs = append(l.errs, err)
		}
		return
	}
	l.OK.Add(1)
	l.ids[id] = struct{}{}
}

// InsertLoad is a set of workers that insert rows through an application's
// pool and remember every id the database acknowledged, so that a test can
// prove no acknowledged row was lost.
type InsertLoad struct {
	*Ledger

	stop    chan struct{}
	wg      sync.WaitGroup
	slowest atomic.Int64 // nanoseconds, since TakeSlowest
}

// StartInserts starts workers that insert into table (columns worker and
// seq, returning id) until Finish, until ctx ends, or until each has made
// maxPerWorker attempts, pausing for pause between two statements. Each
// statement has 30 s.
func StartInserts(ctx context.Context, db *sql.DB, table string, workers, maxPerWorker int, pause time.Duration) *InsertLoad {
	query := "INSERT INTO " + quoteTable(table) + " (worker, seq) VALUES ($1, $2) RETURNING id"
	return StartInsertFunc(ctx, table, workers, maxPerWorker, pause, func(ctx context.Context, worker, seq int) (int64, error) {
		var id int64
		err := db.QueryRowContext(ctx, query, worker, seq).Scan(&id)
		return id, err
	})
}

// StartInsertFunc is StartInserts with the insert made by insert, for a
// load that goes through a tool of its own (an ORM, generated code): insert
// adds one row to table (which has an id column) for worker's seq-th
// attempt and returns its id. Each call has 30 s.
func StartInsertFunc(ctx context.Context, table string, workers, maxPerWorker int, pause time.Duration,
	insert func(ctx context.Context, worker, seq int) (id int64, err error)) *InsertLoad {
	l := &InsertLoad{Ledger: NewLedger(table), stop: make(chan struct{})}
	for w := range workers {
		l.wg.Go(func() {
			for seq := range maxPerWorker {
				select {
				case <-l.stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				begin := time.Now()
				id, err := insert(sctx, w, seq)
				l.noteDuration(time.Since(begin))
				cancel()
				l.Record(id, err)
				if pause > 0 {
					_ = Sleep(ctx, pause)
				}
			}
		})
	}
	return l
}

func (l *InsertLoad) noteDuration(d time.Duration) {
	for {
		if old := l.slowest.Load(); int64(d) <= old || l.slowest.CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

// TakeSlowest returns the longest a statement took since the last call, and
// starts over. It is for reports, not assertions.
func (l *InsertLoad) TakeSlowest() time.Duration { return time.Duration(l.slowest.Swap(0)) }

// Finish stops the workers and waits for them.
func (l *InsertLoad) Finish() {
	close(l.stop)
	l.wg.Wait()
}

// LoadResult compares what a load was told with what the table holds.
type LoadResult struct {
	Failures, Acknowledged, Found, Lost, Extra int64
	// FirstErrors are the first few statement errors.
	FirstErrors []error
}

func (r LoadResult) String() string {
	return fmt.Sprintf("failures=%d acknowledged=%d found=%d lost=%d", r.Failures, r.Acknowledged, r.Found, r.Lost)
}

// Problems lists what a test should fail for: a failed statement, nothing
// acknowledged, a lost row, or a row nobody acknowledged.
func (r LoadResult) Problems() []string {
	var p []string
	if r.Failures != 0 {
		p = append(p, fmt.Sprintf("%d statements failed; first errors: %v", r.Failures, r.FirstErrors))
	}
	if r.Acknowledged == 0 {
		p = append(p, "no insert was acknowledged")
	}
	if r.Lost != 0 {
		p = append(p, fmt.Sprintf("%d acknowledged rows are missing from the table", r.Lost))
	}
	if r.Extra != 0 {
		p = append(p, fmt.Sprintf("the table holds %d rows that no insert acknowledged", r.Extra))
	}
	return p
}

// Verify reads the table's ids through reader (ideally a connection that
// does not go through the connector under test) and compares them with the
// acknowledged ones. Call it once the load has stopped (InsertLoad.Finish).
func (l *Ledger) Verify(ctx context.Context, reader *sql.DB) (LoadResult, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := LoadResult{Failures: l.Failed.Load(), Acknowledged: int64(len(l.ids)), FirstErrors: l.errs}
	rows, err := reader.QueryContext(ctx, "SELECT id FROM "+quoteTable(l.table))
	if err != nil {
		return r, fmt.Errorf("read back: %w", err)
	}
	defer rows.Close()
	stored := make(map[int64]struct{}, len(l.ids))
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return r, fmt.Errorf("read back: %w", err)
		}
		stored[id] = struct{}{}
	}
	if err := rows.Err(); err != nil {
		return r, fmt.Errorf("read back: %w", err)
	}
	r.Found = int64(len(stored))
	for id := range l.ids {
		if _, ok := stored[id]; !ok {
			r.Lost++
		}
	}
	for id := range stored {
		if _, ok := l.ids[id]; !ok {
			r.Extra++
		}
	}
	return r, nil
}

// WaitAcks waits until n more inserts than now have been acknowledged,
// failing t after 30 s.
func (l *Ledger) WaitAcks(ctx context.Context, t testing.TB, n int64, what string) {
	t.Helper()
	target := l.OK.Load() + n
	WaitFor(ctx, t, 30*time.Second, what, func() bool { return l.OK.Load() >= target })
}

// Check is Verify that fails t: fatally if the table cannot be read, and
// once for each of the result's Problems. Call it once the load has
// stopped.
func (l *Ledger) Check(ctx context.Context, t testing.TB, reader *sql.DB) LoadResult {
	t.Helper()
	r, err := l.Verify(ctx, reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range r.Problems() {
		t.Error(p)
	}
	return r
}

// quoteTable quotes a table name for SQL; a schema-qualified name
// (schema.table) has each part quoted.
func quoteTable(name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = pq.QuoteIdentifier(p)
	}
	return strings.Join(parts, ".")
}
