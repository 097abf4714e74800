package otelrotating_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/XSAM/otelsql"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/otelrotating"
	"github.com/pgrotate/rotating/secrets"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The passwords of the tests: none may reach a metric.
const (
	oldPassword = "old-S3CRET-7f3a"
	newPassword = "new-S3CRET-91bc"
)

// store is a secret store with a current and a pending credential (as
// AWS Secrets Manager's AWSCURRENT and AWSPENDING), either of which the
// test changes.
type store struct {
	mu      sync.Mutex
	current secrets.Credential
	pending *secrets.Credential
	fail    error
}

func (s *store) Fetch(context.Context) (secrets.Credential, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current, s.fail
}

func (s *store) FetchPending(context.Context, secrets.Credential) (secrets.Credential, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil {
		return secrets.Credential{}, secrets.ErrNoPending
	}
	return *s.pending, nil
}

func (s *store) Describe() string { return "test store prod/app/db" }

func (s *store) update(fn func(s *store)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s)
}

// newConnector returns a connector over db and src whose every Connect
// is a new login (no idle connections), closed at the end of the test.
func newConnector(t *testing.T, db *testkit.FakeDB, src secrets.Source) (*rotating.Connector, *sql.DB) {
	t.Helper()
	c, err := rotating.NewConnector("host=db.example port=5432 dbname=app sslmode=disable", src,
		rotating.WithNewConnector(db.Connector),
		rotating.WithBackoff(10*time.Millisecond, 80*time.Millisecond),
		rotating.WithRotationWait(500*time.Millisecond))
	if err != nil {
		t.Fatalf("NewConnector: %v", err)
	}
	sqlDB := sql.OpenDB(c)
	sqlDB.SetMaxIdleConns(0)
	t.Cleanup(func() { sqlDB.Close() })
	return c, sqlDB
}

func newReader(t *testing.T) (*sdkmetric.ManualReader, *sdkmetric.MeterProvider) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		if err := mp.Shutdown(context.Background()); err != nil {
			t.Errorf("MeterProvider.Shutdown: %v", err)
		}
	})
	return reader, mp
}

// registered returns a connector over a fake database whose store holds
// oldPassword, registered with opts on a provider read by reader.
func registered(t *testing.T, opts ...otelrotating.Option) (*sdkmetric.ManualReader, *testkit.FakeDB, *store, *rotating.Connector, *sql.DB, metric.Registration) {
	t.Helper()
	reader, mp := newReader(t)
	db := testkit.NewFakeDB("app", oldPassword)
	src := &store{current: secrets.Credential{Username: "app", Password: oldPassword, Version: "v1"}}
	c, sqlDB := newConnector(t, db, src)
	reg, err := otelrotating.Register(c, append([]otelrotating.Option{otelrotating.WithMeterProvider(mp)}, opts...)...)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	return reader, db, src, c, sqlDB, reg
}

// point is one data point of a collection.
type point struct {
	unit  string
	value float64
	attrs attribute.Set
	sum   bool // a cumulative, monotonic sum (a counter)
}

// collect returns the data points of otelrotating's scope by metric name
// (several when several connectors report), and the whole collection
// printed with %+v.
func collect(t *testing.T, reader *sdkmetric.ManualReader) (map[string][]point, string) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	points := map[string][]point{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != otelrotating.ScopeName {
			continue
		}
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					points[m.Name] = append(points[m.Name], point{m.Unit, float64(p.Value), p.Attributes,
						d.IsMonotonic && d.Temporality == metricdata.CumulativeTemporality})
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					points[m.Name] = append(points[m.Name], point{m.Unit, float64(p.Value), p.Attributes, false})
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					points[m.Name] = append(points[m.Name], point{m.Unit, p.Value, p.Attributes, false})
				}
			default:
				t.Fatalf("%s: unexpected data %T", m.Name, m.Data)
			}
		}
	}
	return points, fmt.Sprintf("%+v", rm)
}

// counters are the counters Register reports, with their units and the
// figure of Stats each reports.
var counters = []struct {
	name, unit string
	stat       func(rotating.Stats) uint64
}{
	{"rotating.fetches", "{fetch}", func(s rotating.Stats) uint64 { return s.Fetches }},
	{"rotating.fetch.errors", "{error}", func(s rotating.Stats) uint64 { return s.FetchErrors }},
	{"rotating.fetch.pending", "{fetch}", func(s rotating.Stats) uint64 { return s.PendingFetches }},
	{"rotating.fetch.abandoned", "{fetch}", func(s rotating.Stats) uint64 { return s.AbandonedFetches }},
	{"rotating.credential.changes", "{change}", func(s rotating.Stats) uint64 { return s.CredentialChanges }},
	{"rotating.credential.promotions", "{promotion}", func(s rotating.Stats) uint64 { return s.PendingPromotions }},
	{"rotating.logins", "{login}", func(s rotating.Stats) uint64 { return s.Dials }},
	{"rotating.login.errors", "{error}", func(s rotating.Stats) uint64 { return s.DialErrors }},
	{"rotating.login.rejections", "{rejection}", func(s rotating.Stats) uint64 { return s.AuthFailures }},
	{"rotating.probes", "{probe}", func(s rotating.Stats) uint64 { return s.Probes }},
	{"rotating.recoveries", "{recovery}", func(s rotating.Stats) uint64 { return s.Recoveries }},
	{"rotating.recovery.failures", "{failure}", func(s rotating.Stats) uint64 { return s.RecoveryFailures }},
	{"rotating.connections.retired", "{connection}", func(s rotating.Stats) uint64 { return s.RetiredConnections }},
}

// rotate runs a rotation through the connector as AWS single-user rotation
// makes it: the database takes newPassword while the store's current still
// holds oldPassword and its pending the new one; later the store's current
// catches up. Every Ping in between succeeds; the connector meets one
// rejected login, a recovery through the pending credential, and a failed
// fetch.
func rotate(t *testing.T, db *testkit.FakeDB, src *store, sqlDB *sql.DB) {
	t.Helper()
	ctx := context.Background()
	if err := sqlDB.PingContext(ctx); err != nil {
		t.Fatalf("first Ping: %v", err)
	}
	next := secrets.Credential{Username: "app", Password: newPassword, Version: "v2"}
	src.update(func(s *store) { s.pending = &next })
	db.SetPassword("app", newPassword)
	for i := range 5 {
		if err := sqlDB.PingContext(ctx); err != nil {
			t.Fatalf("Ping %d in the rotation window: %v", i, err)
		}
	}
	src.update(func(s *store) { s.current, s.pending = next, nil })
}

func TestRegisterReportsStats(t *testing.T) {
	reader, db, src, c, sqlDB, reg := registered(t, otelrotating.WithName("orders"))
	defer reg.Unregister()

	// Before the first fetch: every counter 0, generation 0, no age.
	points, _ := collect(t, reader)
	for _, ct := range counters {
		if p := points[ct.name]; len(p) != 1 || p[0].value != 0 {
			t.Errorf("before any Connect, %s = %+v, want one point of 0", ct.name, p)
		}
	}
	if p := points["rotating.credential.generation"]; len(p) != 1 || p[0].value != 0 {
		t.Errorf("before any Connect, generation = %+v, want one point of 0", p)
	}
	if p := points["rotating.credential.age"]; len(p) != 0 {
		t.Errorf("before any Connect, age = %+v, want no point", p)
	}

	rotate(t, db, src, sqlDB)
	if g := c.Stats().CredentialGeneration; g != 2 {
		t.Fatalf("after the rotation, generation %d, want 2 (the first credential, then the pending one)", g)
	}
	// A rotation without a pending credential: the store's current changes
	// with the database's.
	third := secrets.Credential{Username: "app", Password: "third-S3CRET", Version: "v3"}
	src.update(func(s *store) { s.current = third })
	db.SetPassword("app", third.Password)
	if err := sqlDB.PingContext(context.Background()); err != nil {
		t.Fatalf("Ping after the store and the database changed: %v", err)
	}
	// A rotation the store does not follow: the database rejects every
	// credential and the store fails, so the Ping gives up.
	db.SetPassword("app", "fourth-S3CRET")
	src.update(func(s *store) { s.fail = errors.New("store unreachable") })
	if err := sqlDB.PingContext(context.Background()); err == nil {
		t.Fatal("Ping succeeded with the database rejecting every credential and the store failing")
	}

	before := c.Stats()
	points, _ = collect(t, reader)
	after := c.Stats()

	// The activity above must show in the figures, or matching Stats
	// proves nothing.
	for name, v := range map[string]uint64{
		"Fetches": before.Fetches, "CredentialChanges": before.CredentialChanges, "FetchErrors": before.FetchErrors, "PendingFetches": before.PendingFetches,
		"PendingPromotions": before.PendingPromotions, "AuthFailures": before.AuthFailures,
		"Recoveries": before.Recoveries, "RecoveryFailures": before.RecoveryFailures, "Probes": before.Probes,
	} {
		if v == 0 {
			t.Errorf("Stats().%s = 0 after a rotation and a failing store; the test did not exercise it", name)
		}
	}
	// Nothing runs in the background here (no refresh interval, no
	// expiry): a difference but for the age means the test's activity is
	// not over.
	b, a := before, after
	b.CredentialAge, a.CredentialAge = 0, 0
	if b != a {
		t.Fatalf("Stats changed during the collection:\n%+v\n%+v", before, after)
	}
	for _, ct := range counters {
		p := points[ct.name]
		if len(p) != 1 {
			t.Errorf("%s: %d points, want 1", ct.name, len(p))
			continue
		}
		if want := float64(ct.stat(after)); p[0].value != want {
			t.Errorf("%s = %v, Stats says %v", ct.name, p[0].value, want)
		}
		if p[0].unit != ct.unit || !p[0].sum {
			t.Errorf("%s: unit %q, cumulative monotonic sum %v; want %q, a counter", ct.name, p[0].unit, p[0].sum, ct.unit)
		}
	}
	t.Logf("after a rotation and a failing store: %+v", after)

	gen := points["rotating.credential.generation"]
	if len(gen) != 1 || gen[0].value != float64(after.CredentialGeneration) || gen[0].unit != "{generation}" {
		t.Errorf("generation = %+v, Stats says %d", gen, after.CredentialGeneration)
	}
	age := points["rotating.credential.age"]
	if len(age) != 1 || age[0].unit != "s" {
		t.Fatalf("age = %+v, want one point in s", age)
	}
	if lo, hi := before.CredentialAge.Seconds(), after.CredentialAge.Seconds(); age[0].value < lo || age[0].value > hi {
		t.Errorf("age = %v s, want between %v and %v (Stats before and after the collection)", age[0].value, lo, hi)
	}
}

func TestAttributesHoldNoSecret(t *testing.T) {
	reader, db, src, _, sqlDB, reg := registered(t, otelrotating.WithName("orders"))
	defer reg.Unregister()
	rotate(t, db, src, sqlDB)

	points, printed := collect(t, reader)
	if len(points) != len(counters)+2 {
		t.Errorf("%d instruments reported, want %d", len(points), len(counters)+2)
	}
	want := attribute.NewSet(otelrotating.SourceKey.String("test store prod/app/db"), otelrotating.NameKey.String("orders"))
	for name, ps := range points {
		for _, p := range ps {
			if !p.attrs.Equals(&want) {
				t.Errorf("%s: attributes %v, want only %v", name, p.attrs.ToSlice(), want.ToSlice())
			}
		}
	}
	for _, secret := range []string{oldPassword, newPassword, "S3CRET"} {
		if strings.Contains(printed, secret) {
			t.Errorf("the collection holds %q", secret)
		}
	}
}

func TestUnregisterStopsReporting(t *testing.T) {
	reader, _, _, _, sqlDB, reg := registered(t)
	if err := sqlDB.Ping(); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if points, _ := collect(t, reader); len(points["rotating.logins"]) != 1 || points["rotating.logins"][0].value != 1 {
		t.Fatalf("registered: rotating.logins = %+v, want one point of 1", points["rotating.logins"])
	}
	if err := reg.Unregister(); err != nil {
		t.Fatalf("Unregister: %v", err)
	}
	if err := sqlDB.Ping(); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if points, _ := collect(t, reader); len(points) != 0 {
		t.Errorf("after Unregister the collection still holds %d instruments: %v", len(points), points)
	}
	if err := reg.Unregister(); err != nil {
		t.Errorf("second Unregister: %v", err)
	}
}

func TestConnectorsShareInstruments(t *testing.T) {
	reader, mp := newReader(t)
	primaryDB, replicaDB := testkit.NewFakeDB("app", oldPassword), testkit.NewFakeDB("app", oldPassword)
	cred := secrets.Credential{Username: "app", Password: oldPassword}
	primary, primarySQL := newConnector(t, primaryDB, &store{current: cred})
	replica, _ := newConnector(t, replicaDB, &store{current: cred})
	for c, name := range map[*rotating.Connector]string{primary: "primary", replica: "replica"} {
		reg, err := otelrotating.Register(c, otelrotating.WithMeterProvider(mp), otelrotating.WithName(name))
		if err != nil {
			t.Fatalf("Register(%s): %v", name, err)
		}
		defer reg.Unregister()
	}
	for range 3 {
		if err := primarySQL.Ping(); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	}
	points, _ := collect(t, reader)
	logins := map[string]float64{}
	for _, p := range points["rotating.logins"] {
		name, _ := p.attrs.Value(otelrotating.NameKey)
		logins[name.AsString()] = p.value
	}
	if len(logins) != 2 || logins["primary"] != 3 || logins["replica"] != 0 {
		t.Errorf("rotating.logins by rotating.name = %v, want primary 3, replica 0", logins)
	}
}

func TestRegisterRejectsBadArguments(t *testing.T) {
	_, mp := newReader(t)
	c, _ := newConnector(t, testkit.NewFakeDB("app", oldPassword), &store{})
	for name, call := range map[string]func() error{
		"nil connector": func() error { _, err := otelrotating.Register(nil, otelrotating.WithMeterProvider(mp)); return err },
		"empty name": func() error {
			_, err := otelrotating.Register(c, otelrotating.WithMeterProvider(mp), otelrotating.WithName(""))
			return err
		},
		"nil provider": func() error { _, err := otelrotating.Register(c, otelrotating.WithMeterProvider(nil)); return err },
	} {
		if err := call(); err == nil || !strings.HasPrefix(err.Error(), "otelrotating: ") {
			t.Errorf("%s: err = %v, want an otelrotating error", name, err)
		}
	}
}

// otelsql's connector wraps ours: its Close must reach ours (else db.Close
// leaves the connector's background work running), and both report
// through one provider.
func TestOtelsqlForwardsClose(t *testing.T) {
	reader, mp := newReader(t)
	db := testkit.NewFakeDB("app", oldPassword)
	c, err := rotating.NewConnector("host=db.example dbname=app sslmode=disable",
		&store{current: secrets.Credential{Username: "app", Password: oldPassword}},
		rotating.WithNewConnector(db.Connector))
	if err != nil {
		t.Fatalf("NewConnector: %v", err)
	}
	sqlDB := otelsql.OpenDB(c, otelsql.WithMeterProvider(mp))
	poolMetrics, err := otelsql.RegisterDBStatsMetrics(sqlDB, otelsql.WithMeterProvider(mp))
	if err != nil {
		t.Fatalf("RegisterDBStatsMetrics: %v", err)
	}
	defer poolMetrics.Unregister()
	reg, err := otelrotating.Register(c, otelrotating.WithMeterProvider(mp))
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	defer reg.Unregister()

	if err := sqlDB.Ping(); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	scopes := map[string]int{}
	for _, sm := range rm.ScopeMetrics {
		scopes[sm.Scope.Name] += len(sm.Metrics)
	}
	if scopes["github.com/XSAM/otelsql"] == 0 || scopes[otelrotating.ScopeName] != len(counters)+2 {
		t.Errorf("instruments by scope: %v, want otelsql's and %d of otelrotating's", scopes, len(counters)+2)
	}

	if err := sqlDB.Close(); err != nil {
		t.Fatalf("db.Close: %v", err)
	}
	if _, err := c.Connect(context.Background()); !errors.Is(err, rotating.ErrClosed) {
		t.Fatalf("after db.Close, our Connect = %v, want ErrClosed: otelsql did not forward Close", err)
	}
	// Stats stays readable after Close, and so do the metrics.
	if points, _ := collect(t, reader); len(points["rotating.logins"]) != 1 || points["rotating.logins"][0].value != 1 {
		t.Errorf("after Close, rotating.logins = %+v, want one point of 1", points["rotating.logins"])
	}
}
