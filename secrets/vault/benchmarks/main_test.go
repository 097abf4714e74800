package benchmarks

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgrotate/rotating/internal/pgserver"
	"github.com/pgrotate/rotating/internal/pgserver/pgtest"
	"github.com/pgrotate/rotating/secrets/vault"
	"github.com/pgrotate/rotating/secrets/vault/vaulttest"
)

// TestMain keeps the environment's Vault variables (VAULT_ADDR,
// VAULT_TOKEN, ...) out of the clients, and stops the PostgreSQL server
// that pgtest.Shared starts.
func TestMain(m *testing.M) {
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "VAULT_") {
			os.Unsetenv(name)
		}
	}
	os.Exit(pgtest.Main(m))
}

// startVault starts a Vault-compatible server over pg, closed (and its
// leases revoked) when the benchmark ends.
func startVault(b *testing.B, pg *pgserver.Server) *vaulttest.Server {
	b.Helper()
	srv, err := vaulttest.NewServer(pg.Admin())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := srv.Close(); err != nil {
			b.Errorf("closing the Vault server: %v", err)
		}
	})
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	return srv
}

// newClient returns a vault.Client with a token of its own (TTL an hour,
// longer than any run), as each application process has, and the token's
// accessor.
func newClient(b *testing.B, srv *vaulttest.Server) (*vault.Client, string) {
	b.Helper()
	token, err := srv.CreateToken(vaulttest.TokenOptions{TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	api, err := srv.Client(token)
	if err != nil {
		b.Fatal(err)
	}
	c, err := vault.NewClient(api)
	if err != nil {
		b.Fatal(err)
	}
	return c, srv.TokenAccessor(token)
}

// endpointDSN is a DSN for pg without user or password: the source gives
// both.
func endpointDSN(pg *pgserver.Server) string {
	return fmt.Sprintf("host=%s port=%d dbname=postgres sslmode=disable connect_timeout=10", pg.Host, pg.Port)
}

// percentile returns the nearest-rank p-th percentile of ds (sorted here).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(float64(len(ds))*p+0.999999) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
