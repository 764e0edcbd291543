package storage

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plexus-chat/plexus/internal/storage/storagetest"
)

func TestParseDSN(t *testing.T) {
	tests := []struct {
		dsn, dataDir string
		backend      string
		writeDSN     string // prefix the writer DSN must have
		mkdir        string
		wantErr      bool
	}{
		{dsn: "", dataDir: "/var/lib/plexus", backend: "sqlite", writeDSN: "file:/var/lib/plexus/plexus.db?_txlock", mkdir: "/var/lib/plexus"},
		{dsn: "", dataDir: "/odd?dir#x%", backend: "sqlite", writeDSN: "file:/odd%3fdir%23x%25/plexus.db?", mkdir: "/odd?dir#x%"},
		{dsn: "", dataDir: "", wantErr: true},
		{dsn: "postgres://u:pw@h/db?sslmode=disable", backend: "postgres", writeDSN: "postgres://u:pw@h/db?jit=off&sslmode=disable"},
		{dsn: "postgresql://h/db", backend: "postgres", writeDSN: "postgresql://h/db?jit=off"},
		{dsn: "sqlite:/tmp/x.db", backend: "sqlite", writeDSN: "file:/tmp/x.db?_txlock"},
		{dsn: "sqlite:///tmp/x.db", backend: "sqlite", writeDSN: "file:/tmp/x.db?_txlock"},
		{dsn: "sqlite:rel/x.db", backend: "sqlite", writeDSN: "file:rel/x.db?"},
		{dsn: "sqlite:", wantErr: true},
		{dsn: "file:/tmp/y.db", backend: "sqlite", writeDSN: "file:/tmp/y.db?_txlock"},
		{dsn: "file:/tmp/y.db?mode=rwc", backend: "sqlite", writeDSN: "file:/tmp/y.db?mode=rwc&_txlock"},
		{dsn: "mysql://h/db", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.dsn+"|"+tc.dataDir, func(t *testing.T) {
			got, err := parseDSN(tc.dsn, tc.dataDir)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parseDSN = %+v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.d.name != tc.backend || !strings.HasPrefix(got.writeDSN, tc.writeDSN) || got.mkdir != tc.mkdir {
				t.Errorf("parseDSN = {%s %q mkdir %q}, want {%s %q... mkdir %q}",
					got.d.name, got.writeDSN, got.mkdir, tc.backend, tc.writeDSN, tc.mkdir)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	if got := redact("postgres://user:secret@host/db"); strings.Contains(got, "secret") {
		t.Errorf("redact leaked the password: %q", got)
	}
}

// TestSQLitePragmas checks that the connections are configured as the
// package documentation promises.
func TestSQLitePragmas(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p.db")
	db, err := Open(ctx, "sqlite:"+path, "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.Backend() != "sqlite" {
		t.Fatalf("Backend = %q", db.Backend())
	}
	tests := []struct {
		conn   string
		pragma string
		want   string
	}{
		{"write", "journal_mode", "wal"},
		{"write", "synchronous", "1"}, // NORMAL
		{"write", "foreign_keys", "1"},
		{"write", "busy_timeout", "10000"},
		{"read", "query_only", "1"},
		{"read", "foreign_keys", "1"},
		{"read", "journal_mode", "wal"},
	}
	for _, tc := range tests {
		h := db.write
		if tc.conn == "read" {
			h = db.read
		}
		var got string
		if err := h.QueryRowContext(ctx, "PRAGMA "+tc.pragma).Scan(&got); err != nil {
			t.Fatalf("%s PRAGMA %s: %v", tc.conn, tc.pragma, err)
		}
		if got != tc.want {
			t.Errorf("%s PRAGMA %s = %q, want %q", tc.conn, tc.pragma, got, tc.want)
		}
	}
	if got := db.write.Stats().MaxOpenConnections; got != 1 {
		t.Errorf("writer pool allows %d connections, want 1", got)
	}
}

// TestPostgresSessionSettings checks that our PostgreSQL sessions run
// without the JIT compiler unless the DSN asks for it.
func TestPostgresSessionSettings(t *testing.T) {
	ctx := context.Background()
	dsn, _ := storagetest.Fresh(t, storagetest.Postgres)
	for _, tc := range []struct{ dsn, want string }{
		{dsn, "off"},
		{dsn + "&jit=on", "on"},
	} {
		db, err := Open(ctx, tc.dsn, "")
		if err != nil {
			t.Fatal(err)
		}
		for name, h := range map[string]*sql.DB{"write": db.write, "read": db.read} {
			var got string
			if err := h.QueryRowContext(ctx, "SHOW jit").Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("%s connection: jit = %q, want %q", name, got, tc.want)
			}
		}
		db.Close()
	}
	if got := withoutJIT("postgres://u@h/db"); got != "postgres://u@h/db?jit=off" {
		t.Errorf("withoutJIT = %q", got)
	}
}
