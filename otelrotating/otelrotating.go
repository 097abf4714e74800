// Package otelrotating exports a rotating.Connector's Stats as OpenTelemetry
// metrics.
//
// Register creates one observable instrument per figure of Stats and one
// callback that reads Stats once per collection, so the figures cost
// nothing on Connect: the connector counts them anyway, and the callback
// runs only when a reader collects.
//
//	connector, err := rotating.NewConnector(dsn, source)
//	...
//	reg, err := otelrotating.Register(connector, otelrotating.WithName("orders"))
//	...
//	defer reg.Unregister()
//
// The instruments are named under "rotating." with units after the
// OpenTelemetry semantic conventions (counters of things in {braces},
// durations in seconds):
//
//	rotating.fetches                 {fetch}       Source.Fetch calls
//	rotating.fetch.errors            {error}       failed or unusable fetches
//	rotating.fetch.pending           {fetch}       PendingSource.FetchPending calls
//	rotating.fetch.abandoned         {fetch}       fetches abandoned at the fetch timeout
//	rotating.credential.changes      {change}      refreshes that replaced the credential
//	rotating.credential.promotions   {promotion}   pending credentials that became current
//	rotating.credential.generation   {generation}  gauge: the credential in use (0: none yet)
//	rotating.credential.age          s             gauge: since the credential in use was fetched
//	rotating.logins                  {login}       login attempts
//	rotating.login.errors            {error}       logins that failed for any reason
//	rotating.login.rejections        {rejection}   logins rejected as a bad credential
//	rotating.probes                  {probe}       logins made on behalf of all callers
//	rotating.recoveries              {recovery}    Connect calls that succeeded after a rejection
//	rotating.recovery.failures       {failure}     Connect calls that gave up with an *AuthError
//	rotating.connections.retired     {connection}  connections retired before their sessions end
//
// Every data point carries the attribute rotating.source, the source's
// description (secrets.Describe, which never holds a secret), and
// rotating.name if WithName gave one: no other attribute, so no secret and
// no credential version reaches the metrics.
package otelrotating

import (
	"context"
	"errors"
	"math"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/pgrotate/rotating"
)

// ScopeName is the instrumentation scope of the meter Register uses.
const ScopeName = "github.com/pgrotate/rotating/otelrotating"

// The attribute keys of every data point.
const (
	// SourceKey holds the source's description (rotating.Stats.Source).
	SourceKey = attribute.Key("rotating.source")
	// NameKey holds the name given with WithName, to tell apart connectors
	// that share a source description.
	NameKey = attribute.Key("rotating.name")
)

// Option configures Register.
type Option func(*config)

type config struct {
	provider metric.MeterProvider
	name     string
	err      error
}

// WithMeterProvider makes Register create its instruments with p rather
// than the global provider (otel.GetMeterProvider).
func WithMeterProvider(p metric.MeterProvider) Option {
	return func(c *config) {
		if p == nil {
			c.err = errors.Join(c.err, errors.New("otelrotating: WithMeterProvider(nil)"))
			return
		}
		c.provider = p
	}
}

// WithName adds the attribute rotating.name=name to every data point, to
// tell apart connectors of one application (a primary and a replica, say).
// The name is the caller's, not read from any secret.
func WithName(name string) Option {
	return func(c *config) {
		if name == "" {
			c.err = errors.Join(c.err, errors.New("otelrotating: WithName(\"\")"))
			return
		}
		c.name = name
	}
}

// Register creates the instruments listed in the package documentation and
// one callback that observes all of them from c.Stats() whenever a reader
// collects. It starts no goroutine; Unregister on the returned Registration
// stops the reporting (call it before or after closing c: Stats stays
// readable after Close).
//
// Registering several connectors with one meter provider is fine: the
// instruments are shared, and each connector's data points carry its own
// attributes (give them distinct names with WithName when their sources
// describe themselves alike).
func Register(c *rotating.Connector, opts ...Option) (metric.Registration, error) {
	if c == nil {
		return nil, errors.New("otelrotating: nil *rotating.Connector")
	}
	var cfg config
	for _, opt := range opts {
		opt(&cfg)
	}
	if cfg.err != nil {
		return nil, cfg.err
	}
	if cfg.provider == nil {
		cfg.provider = otel.GetMeterProvider()
	}
	meter := cfg.provider.Meter(ScopeName)

	attrs := []attribute.KeyValue{SourceKey.String(c.Stats().Source)}
	if cfg.name != "" {
		attrs = append(attrs, NameKey.String(cfg.name))
	}
	set := metric.WithAttributeSet(attribute.NewSet(attrs...))

	var errs []error
	counter := func(name, unit, desc string, read func(rotating.Stats) uint64) counterOf {
		inst, err := meter.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return counterOf{inst, read}
	}
	counters := []counterOf{
		counter("rotating.fetches", "{fetch}",
			"Calls to the source's Fetch.",
			func(s rotating.Stats) uint64 { return s.Fetches }),
		counter("rotating.fetch.errors", "{error}",
			"Fetch and FetchPending calls that failed or returned an unusable credential.",
			func(s rotating.Stats) uint64 { return s.FetchErrors }),
		counter("rotating.fetch.pending", "{fetch}",
			"Calls to the source's FetchPending.",
			func(s rotating.Stats) uint64 { return s.PendingFetches }),
		counter("rotating.fetch.abandoned", "{fetch}",
			"Source calls abandoned at the fetch timeout.",
			func(s rotating.Stats) uint64 { return s.AbandonedFetches }),
		counter("rotating.credential.changes", "{change}",
			"Refreshes that replaced the cached credential with a different one.",
			func(s rotating.Stats) uint64 { return s.CredentialChanges }),
		counter("rotating.credential.promotions", "{promotion}",
			"Pending credentials that logged in and became the cached credential.",
			func(s rotating.Stats) uint64 { return s.PendingPromotions }),
		counter("rotating.logins", "{login}",
			"Login attempts.",
			func(s rotating.Stats) uint64 { return s.Dials }),
		counter("rotating.login.errors", "{error}",
			"Login attempts that failed for any reason.",
			func(s rotating.Stats) uint64 { return s.DialErrors }),
		counter("rotating.login.rejections", "{rejection}",
			"Login attempts the database rejected as a bad credential.",
			func(s rotating.Stats) uint64 { return s.AuthFailures }),
		counter("rotating.probes", "{probe}",
			"Logins made by one caller on behalf of all to try or re-check a credential.",
			func(s rotating.Stats) uint64 { return s.Probes }),
		counter("rotating.recoveries", "{recovery}",
			"Connect calls that succeeded after a rejected login.",
			func(s rotating.Stats) uint64 { return s.Recoveries }),
		counter("rotating.recovery.failures", "{failure}",
			"Connect calls that gave up with an *AuthError after a rejected login.",
			func(s rotating.Stats) uint64 { return s.RecoveryFailures }),
		counter("rotating.connections.retired", "{connection}",
			"Connections closed once their credential's sessions were to end.",
			func(s rotating.Stats) uint64 { return s.RetiredConnections }),
	}
	generation, err := meter.Int64ObservableGauge("rotating.credential.generation",
		metric.WithUnit("{generation}"),
		metric.WithDescription("The credential in use: 1 for the first, one higher each time new logins move to another; 0 before the first fetch."))
	errs = append(errs, err)
	age, err := meter.Float64ObservableGauge("rotating.credential.age",
		metric.WithUnit("s"),
		metric.WithDescription("Time since the credential in use was fetched; not reported before the first fetch."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	instruments := []metric.Observable{generation, age}
	for _, ct := range counters {
		instruments = append(instruments, ct.inst)
	}
	return meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := c.Stats()
		for _, ct := range counters {
			o.ObserveInt64(ct.inst, clamp(ct.read(s)), set)
		}
		o.ObserveInt64(generation, clamp(s.CredentialGeneration), set)
		if s.CredentialGeneration > 0 {
			o.ObserveFloat64(age, s.CredentialAge.Seconds(), set)
		}
		return nil
	}, instruments...)
}

type counterOf struct {
	inst metric.Int64ObservableCounter
	read func(rotating.Stats) uint64
}

// clamp converts a counter to the int64 OpenTelemetry takes; a counter
// past math.MaxInt64 stays there rather than wrapping to a negative value.
func clamp(n uint64) int64 {
	if n > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(n)
}
