package vault_test

import (
	"context"
	"database/sql"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pgrotate/rotating"
	"github.com/pgrotate/rotating/internal/testkit"
	"github.com/pgrotate/rotating/secrets/vault"
)

// A static-creds read less than a second before the scheduled rotation
// answers ttl 0 (Vault rounds it; its rotation queue may also run late).
// The rotation is due: the credential's NextRotation is the read's send
// time, so the connector asks again after its longest backoff and gets the
// new password without a login being rejected first. Without it, the
// connector would learn of the rotation only from a rejected login.
func TestStaticRoleDueRotation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const period, maxBackoff = time.Hour, time.Second
		f := fakeWithRoot()
		// The rotation is due in 400 ms: the answer's ttl is 0.
		f.static["app"] = &fakeStatic{username: "app", password: "Static-pass@1",
			lastRotation: time.Now().Add(-period + 400*time.Millisecond), period: period}
		src, err := vault.StaticRole(newClient(t, f, rootToken), "", "app")
		if err != nil {
			t.Fatal(err)
		}
		cred, err := src.Fetch(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !cred.NextRotation.Equal(time.Now()) {
			t.Fatalf("NextRotation = %v for ttl 0, want the send time %v (the rotation is due)", cred.NextRotation, time.Now())
		}

		fdb := testkit.NewFakeDB("app", "Static-pass@1")
		connector, err := rotating.NewConnector("host=db.internal dbname=app", src,
			rotating.WithNewConnector(fdb.Connector), rotating.WithBackoff(100*time.Millisecond, maxBackoff))
		if err != nil {
			t.Fatal(err)
		}
		db := sql.OpenDB(connector)
		defer db.Close()
		conn, err := db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		reads := f.count("GET database/static-creds/app")

		time.Sleep(400 * time.Millisecond) // Vault rotates
		f.rotate("app", "Static-pass@2")
		fdb.SetPassword("app", "Static-pass@2")
		time.Sleep(maxBackoff)
		synctest.Wait()
		if got := f.count("GET database/static-creds/app") - reads; got != 1 {
			t.Errorf("%d static-creds reads in the %v after a read that said the rotation was due, want 1", got, maxBackoff)
		}
		db.SetMaxIdleConns(0) // a new login
		if err := db.PingContext(context.Background()); err != nil {
			t.Fatal(err)
		}
		if st := connector.Stats(); st.AuthFailures != 0 || st.CredentialChanges != 1 {
			t.Errorf("Stats: %d rejected logins, %d credential changes; want 0 and 1", st.AuthFailures, st.CredentialChanges)
		}
	})
}
