package storage

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// migrationFS holds the schema. migrations/NNNN_name.sql applies to both
// backends after dialect.expand; migrations/<backend>/NNNN_name.sql, where
// present, replaces the shared file of the same name (or adds one) for that
// backend only, for SQL that tokens cannot bridge.
//
//go:embed migrations
var migrationFS embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations lists the migrations for d in version order.
func loadMigrations(fsys fs.FS, d *dialect) ([]migration, error) {
	files := map[string]string{} // base name -> path
	for _, dir := range []string{"migrations", path.Join("migrations", d.name)} {
		entries, err := fs.ReadDir(fsys, dir)
		if err != nil {
			if dir != "migrations" && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("storage: read %s: %w", dir, err)
		}
		for _, e := range entries {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
				continue
			}
			files[e.Name()] = path.Join(dir, e.Name())
		}
	}
	var out []migration
	seen := map[int]string{}
	for base, p := range files {
		num, name, ok := strings.Cut(strings.TrimSuffix(base, ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("storage: migration %s: name must be NNNN_description.sql", p)
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("storage: migrations %s and %s share version %d", prev, base, v)
		}
		seen[v] = base
		src, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil, fmt.Errorf("storage: read %s: %w", p, err)
		}
		q := d.expand(string(src))
		if i := strings.Index(q, "{{"); i >= 0 {
			return nil, fmt.Errorf("storage: migration %s: unknown token near %q", p, firstLine(q[i:]))
		}
		out = append(out, migration{version: v, name: name, sql: q})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// migrate applies every migration not yet recorded in schema_migrations, all
// in one transaction: a failure leaves the schema exactly as it was.
func migrate(ctx context.Context, db *sql.DB, d *dialect, fsys fs.FS) error {
	ms, err := loadMigrations(fsys, d)
	if err != nil {
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("storage: begin migration: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if d.migrateLock != "" {
		if _, err := tx.ExecContext(ctx, d.migrateLock); err != nil {
			return fmt.Errorf("storage: lock for migration: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at BIGINT NOT NULL
	)`); err != nil {
		return fmt.Errorf("storage: create schema_migrations: %w", err)
	}
	applied := map[int]bool{}
	rows, err := tx.QueryContext(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return fmt.Errorf("storage: read schema_migrations: %w", err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("storage: read schema_migrations: %w", err)
		}
		applied[v] = true
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("storage: read schema_migrations: %w", err)
	}
	for _, m := range ms {
		if applied[m.version] {
			continue
		}
		// Both drivers run a multi-statement string when it has no
		// arguments (pgx then uses the simple protocol).
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("storage: migration %04d_%s: %w", m.version, m.name, err)
		}
		if _, err := tx.ExecContext(ctx, d.rebind(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`),
			m.version, m.name, time.Now().UnixMilli()); err != nil {
			return fmt.Errorf("storage: record migration %04d: %w", m.version, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("storage: commit migrations: %w", err)
	}
	return nil
}
