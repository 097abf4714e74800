package rotating_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/lib/pq"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/secrets"
)

// The README's usage: the application's DSN without a password, a source,
// and sql.OpenDB. Nothing else in the application changes.
func ExampleNewConnector() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "db.json")
	_ = os.WriteFile(path, []byte(`{"username":"app","password":"example-only","port":"5432"}`), 0o600)

	src := secrets.File(path) // or secrets.Env, awssm.NewFromConfig, any secrets.Source
	connector, err := rotating.NewConnector("host=db.internal dbname=app sslmode=require", src,
		rotating.WithLogger(slog.Default()),
		rotating.WithRotationWait(15*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close() // also closes the connector
	db.SetConnMaxLifetime(30 * time.Minute)

	fmt.Println(connector.Stats().Fetches) // nothing is fetched until the first connection
	// Output: 0
}

// Unit tests of application code can run against go-sqlmock while the
// connector's credential handling stays real: WithNewConnector replaces
// only how a connection is opened.
func ExampleWithNewConnector() {
	mockDB, mock, err := sqlmock.NewWithDSN("example-mock")
	if err != nil {
		log.Fatal(err)
	}
	defer mockDB.Close()
	mock.ExpectQuery("SELECT current_user").WillReturnRows(sqlmock.NewRows([]string{"current_user"}).AddRow("app"))

	src := secrets.Static(secrets.Credential{Username: "app", Password: "example-only"})
	connector, err := rotating.NewConnector("host=db.internal dbname=app", src,
		rotating.WithNewConnector(func(cfg pq.Config) (driver.Connector, error) {
			// cfg is the DSN merged with the credential; a test can check it.
			fmt.Println("connector built for user", cfg.User, "on", cfg.Host)
			return rotating.ConnectorFunc(func(context.Context) (driver.Conn, error) {
				return mockDB.Driver().Open("example-mock")
			}), nil
		}))
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()

	var user string
	if err := db.QueryRow("SELECT current_user").Scan(&user); err != nil {
		log.Fatal(err)
	}
	fmt.Println("current_user:", user)
	fmt.Println("expectations met:", mock.ExpectationsWereMet() == nil)
	// Output:
	// connector built for user app on db.internal
	// current_user: app
	// expectations met: true
}

// Stats gives counters to export to a metrics system.
func ExampleConnector_Stats() {
	src := secrets.Static(secrets.Credential{Username: "app", Password: "example-only", Version: "v1"})
	connector, _ := rotating.NewConnector("host=db.internal dbname=app", src,
		rotating.WithNewConnector(func(pq.Config) (driver.Connector, error) {
			return rotating.ConnectorFunc(func(context.Context) (driver.Conn, error) {
				return nil, fmt.Errorf("no database in this example")
			}), nil
		}))
	defer connector.Close()
	_, _ = connector.Connect(context.Background())
	st := connector.Stats()
	fmt.Printf("fetches=%d dials=%d dial_errors=%d version=%s\n", st.Fetches, st.Dials, st.DialErrors, st.CredentialVersion)
	// Output: fetches=1 dials=1 dial_errors=1 version=v1
}

// A credential whose sessions end (a Vault dynamic lease) has its
// connections wrapped so that they retire before the end; DriverConn gives
// the driver's own connection inside (*sql.Conn).Raw, for driver-specific
// features (pgx's CopyFrom through *stdlib.Conn, say).
func ExampleDriverConn() {
	mockDB, mock, err := sqlmock.NewWithDSN("example-lease")
	if err != nil {
		log.Fatal(err)
	}
	defer mockDB.Close()

	lease := secrets.Func(func(context.Context) (secrets.Credential, error) {
		end := time.Now().Add(time.Hour)
		return secrets.Credential{Username: "v-app-1", Password: "example-only", Version: "lease-1",
			Expires: end, SessionsEnd: end}, nil
	})
	connector, err := rotating.NewConnector("host=db.internal dbname=app", lease,
		rotating.WithSessionMargin(5*time.Minute), // retire its connections 5 minutes before the lease ends
		rotating.WithNewConnector(func(pq.Config) (driver.Connector, error) {
			return rotating.ConnectorFunc(func(context.Context) (driver.Conn, error) {
				return mockDB.Driver().Open("example-lease")
			}), nil
		}))
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()

	conn, err := db.Conn(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	_ = conn.Raw(func(dc any) error {
		fmt.Println("the connection is the driver's own:", dc == any(mock))
		fmt.Println("DriverConn gives the driver's own:", rotating.DriverConn(dc) == any(mock))
		return nil
	})
	// Output:
	// the connection is the driver's own: false
	// DriverConn gives the driver's own: true
}
