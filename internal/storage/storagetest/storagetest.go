package storagetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers driver "pgx"
)

// Environment variables that select the PostgreSQL backend for tests.
const (
	EnvPostgres        = "PLEXUS_TEST_POSTGRES"    // DSN of a server we may create databases on
	EnvRequirePostgres = "PLEXUS_REQUIRE_POSTGRES" // "1": a missing or unreachable server fails the run
)

// Backend names.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// Backends lists every backend, for table-driven suites.
var Backends = []string{SQLite, Postgres}

// Fresh returns the DSN and data folder of a new, empty store on backend,
// removed when tb ends. For PostgreSQL without a reachable server it skips,
// unless PLEXUS_REQUIRE_POSTGRES=1, when CI needs the run to fail instead.
func Fresh(tb testing.TB, backend string) (dsn, dataDir string) {
	tb.Helper()
	switch backend {
	case SQLite:
		return "", tb.TempDir()
	case Postgres:
		return freshPostgres(tb), ""
	}
	tb.Fatalf("storagetest: unknown backend %q", backend)
	return "", ""
}

// freshPostgres creates a database of its own, so that concurrent runs
// never share tables, and drops it at cleanup.
func freshPostgres(tb testing.TB) string {
	tb.Helper()
	require := os.Getenv(EnvRequirePostgres) == "1"
	unavailable := func(format string, args ...any) {
		tb.Helper()
		if require {
			tb.Fatalf("%s=1 but "+format, append([]any{EnvRequirePostgres}, args...)...)
		}
		tb.Skipf(format, args...)
	}
	base := os.Getenv(EnvPostgres)
	if base == "" {
		unavailable("%s is not set", EnvPostgres)
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		tb.Fatalf("%s must be a postgres:// URL", EnvPostgres)
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		tb.Fatalf("open %s: %v", EnvPostgres, err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		unavailable("PostgreSQL at %s unreachable: %v", u.Redacted(), err)
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatal(err)
	}
	name := "plexus_test_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("create database: %v", err)
	}
	tb.Cleanup(func() {
		admin, err := sql.Open("pgx", base)
		if err != nil {
			tb.Errorf("drop database %s: %v", name, err)
			return
		}
		defer admin.Close()
		// WITH (FORCE) ends connections a failed test left open.
		if _, err := admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			tb.Errorf("drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}
