package benchmarks

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lib/pq"
	"github.com/pgrotate/rotating/internal/naive"
	"github.com/pgrotate/rotating/secrets"
)

// The tests here check the benchmarks' own machinery (the alternatives and
// the statistics), so that a figure cannot come from a broken yardstick.
// They need no PostgreSQL server and run with go test ./...

func TestFetchPerConnectionCallsTheStoreEveryTime(t *testing.T) {
	db, store := newFakeDB("p1", 0), newMemStore("app", "p1")
	c := naive.PerLogin(store, db.dial, &pq.Driver{})
	for range 3 {
		if err := login(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	store.setPassword("p2")
	db.setPassword("p2")
	if err := login(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if got := store.calls.Load(); got != 4 {
		t.Fatalf("store calls = %d, want 4 (one per login)", got)
	}
}

func TestRefetchOnAuthFailure(t *testing.T) {
	ctx := context.Background()
	db, store := newFakeDB("p1", 0), newMemStore("app", "p1")
	c := naive.RefetchOnAuthFailure(store, db.dial, &pq.Driver{}, 1)
	for range 3 {
		if err := login(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if got := store.calls.Load(); got != 1 {
		t.Fatalf("store calls = %d, want 1 (cached after the first)", got)
	}

	// Store first, then the database: one refetch, then it works.
	store.setPassword("p2")
	db.setPassword("p2")
	if err := login(ctx, c); err != nil {
		t.Fatal(err)
	}
	if got := store.calls.Load(); got != 2 {
		t.Fatalf("store calls = %d, want 2", got)
	}
	if got := db.rejected.Load(); got != 1 {
		t.Fatalf("rejected logins = %d, want 1 (the cached password)", got)
	}

	// The store is behind the database: the refetch finds the dead
	// password again, and the login fails after one retry.
	db.setPassword("p3")
	err := login(ctx, c)
	if !naive.IsAuthFailure(err) {
		t.Fatalf("login = %v, want 28P01", err)
	}
	if got := store.calls.Load(); got != 3 {
		t.Fatalf("store calls = %d, want 3", got)
	}
	if got := db.rejected.Load(); got != 3 {
		t.Fatalf("rejected logins = %d, want 3 (one more per attempt)", got)
	}
}

// TestLaggingStoreCase checks BenchmarkStoreCalls' store=memory-lagging-1s
// case: the database changes at once, the store storeLag later, not
// earlier; and finish leaves the two in agreement either way.
func TestLaggingStoreCase(t *testing.T) {
	accepts := func(db *fakeDB, pw string) bool {
		_, err := db.login(context.Background(), "app", pw)
		return err == nil
	}
	storeHas := func(src secrets.Source) string {
		cred, err := src.Fetch(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return cred.Password
	}
	t.Run("lag passes", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			db := newFakeDB("p0", 0)
			sc := newStoreCase(t, storeLagging1s, 1, "app", "p0", db)
			finish := sc.rotate("p1")
			if !accepts(db, "p1") || accepts(db, "p0") {
				t.Fatal("the database did not change at once")
			}
			time.Sleep(storeLag - time.Millisecond)
			synctest.Wait()
			if got := storeHas(sc.src); got != "p0" {
				t.Fatalf("store has %q %v before the lag, want p0", got, storeLag-time.Millisecond)
			}
			time.Sleep(2 * time.Millisecond)
			synctest.Wait()
			if got := storeHas(sc.src); got != "p1" {
				t.Fatalf("store has %q after the lag, want p1", got)
			}
			finish()
		})
	})
	t.Run("finish before the lag", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			db := newFakeDB("p0", 0)
			sc := newStoreCase(t, storeLagging1s, 1, "app", "p0", db)
			sc.rotate("p1")()
			if got := storeHas(sc.src); got != "p1" {
				t.Fatalf("store has %q after finish, want p1", got)
			}
			time.Sleep(2 * storeLag) // the timer, stopped, must not fire
			synctest.Wait()
			if got := storeHas(sc.src); got != "p1" {
				t.Fatalf("store has %q, want p1", got)
			}
		})
	})
}

func TestHerdReleasesEveryone(t *testing.T) {
	db := newFakeDB("p1", 10*time.Millisecond)
	c := naive.PerLogin(newMemStore("app", "p1"), db.dial, &pq.Driver{})
	for _, err := range herd(32, func(int) error { return login(context.Background(), c) }) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := db.logins.Load(); got != 32 {
		t.Fatalf("logins = %d, want 32", got)
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i))
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50}, {0.99, 99}, {1, 100}, {0.001, 1}} {
		if got := percentile(ds, c.q); got != c.want {
			t.Errorf("percentile(1..100, %v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile(nil) = %v, want 0", got)
	}
}

func TestPeakInWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms ...int) []time.Time {
		var ts []time.Time
		for _, m := range ms {
			ts = append(ts, t0.Add(time.Duration(m)*time.Millisecond))
		}
		return ts
	}
	for _, c := range []struct {
		ts   []time.Time
		want int
	}{
		{nil, 0},
		{at(0), 1},
		{at(0, 999), 2},
		{at(0, 1000), 1}, // a window is [t, t+1s)
		{at(1500, 0, 100, 200, 1100, 1150), 3},
		{at(1100, 900, 200, 100, 0), 4},
	} {
		if got := peakInWindow(c.ts, time.Second); got != c.want {
			t.Errorf("peakInWindow(%v) = %d, want %d", c.ts, got, c.want)
		}
	}
}
