package otelrotating_test

import (
	"context"
	"fmt"
	"log"
	"slices"

	"github.com/XSAM/otelsql"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/otelrotating"
	"github.com/pgrotate/rotating/secrets"
)

// Register reports a connector's Stats through a meter provider; here the
// SDK's with a manual reader, to print what one collection holds before
// the connector's first Connect.
func ExampleRegister() {
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer provider.Shutdown(context.Background())

	connector, err := rotating.NewConnector("host=db.example dbname=app",
		secrets.Static(secrets.Credential{Username: "app", Password: "example"}))
	if err != nil {
		log.Fatal(err)
	}
	defer connector.Close()
	reg, err := otelrotating.Register(connector,
		otelrotating.WithMeterProvider(provider), otelrotating.WithName("orders"))
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Unregister()

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		log.Fatal(err)
	}
	var lines []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				lines = append(lines, fmt.Sprintf("%s %s %d", m.Name, m.Unit, d.DataPoints[0].Value))
			case metricdata.Gauge[int64]:
				p := d.DataPoints[0]
				lines = append(lines, fmt.Sprintf("%s %s %d %s", m.Name, m.Unit, p.Value, p.Attributes.Encoded(attribute.DefaultEncoder())))
			}
		}
	}
	slices.Sort(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
	// Output:
	// rotating.connections.retired {connection} 0
	// rotating.credential.changes {change} 0
	// rotating.credential.generation {generation} 0 rotating.name=orders,rotating.source=static
	// rotating.credential.promotions {promotion} 0
	// rotating.fetch.abandoned {fetch} 0
	// rotating.fetch.errors {error} 0
	// rotating.fetch.pending {fetch} 0
	// rotating.fetches {fetch} 0
	// rotating.login.errors {error} 0
	// rotating.login.rejections {rejection} 0
	// rotating.logins {login} 0
	// rotating.probes {probe} 0
	// rotating.recoveries {recovery} 0
	// rotating.recovery.failures {failure} 0
}

// With otelsql, the connector goes inside otelsql's: otelsql.OpenDB traces
// the statements and forwards Close to the rotating connector, so db.Close
// still stops its background work. The pool's figures come from otelsql's
// RegisterDBStatsMetrics, the credential's from Register; both use the
// global meter provider unless given one.
func Example_otelsql() {
	source := secrets.File("/run/secrets/db.json") // or any store's source
	connector, err := rotating.NewConnector("host=db.example dbname=app sslmode=verify-full", source)
	if err != nil {
		log.Fatal(err)
	}
	db := otelsql.OpenDB(connector, otelsql.WithAttributes(semconv.DBSystemNamePostgreSQL))
	defer db.Close() // closes connector too

	poolMetrics, err := otelsql.RegisterDBStatsMetrics(db, otelsql.WithAttributes(semconv.DBSystemNamePostgreSQL))
	if err != nil {
		log.Fatal(err)
	}
	defer poolMetrics.Unregister()
	rotationMetrics, err := otelrotating.Register(connector)
	if err != nil {
		log.Fatal(err)
	}
	defer rotationMetrics.Unregister()

	// Use db as any *sql.DB.
	var now string
	if err := db.QueryRowContext(context.Background(), "SELECT now()::text").Scan(&now); err != nil {
		log.Fatal(err)
	}
}
