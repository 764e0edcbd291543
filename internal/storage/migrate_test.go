package storage

import (
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
)

func TestLoadMigrations(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	tests := []struct {
		name    string
		fs      fstest.MapFS
		want    []string // version:sql, in order
		wantErr string
	}{
		{
			name: "ordered by number, tokens expanded",
			fs: fstest.MapFS{
				"migrations/0002_b.sql": file("B {{BLOB}}"),
				"migrations/0001_a.sql": file("A {{INT_PK}}"),
				"migrations/README":     file("ignored"),
			},
			want: []string{"1:A INTEGER PRIMARY KEY", "2:B BLOB"},
		},
		{
			name: "per-backend file replaces the shared one and adds others",
			fs: fstest.MapFS{
				"migrations/0001_a.sql":          file("shared"),
				"migrations/sqlite/0001_a.sql":   file("sqlite only"),
				"migrations/sqlite/0003_c.sql":   file("sqlite extra"),
				"migrations/postgres/0001_a.sql": file("postgres only"),
			},
			want: []string{"1:sqlite only", "3:sqlite extra"},
		},
		{
			name:    "bad name",
			fs:      fstest.MapFS{"migrations/init.sql": file("x")},
			wantErr: "NNNN_description",
		},
		{
			name: "duplicate version",
			fs: fstest.MapFS{
				"migrations/0001_a.sql": file("x"),
				"migrations/0001_b.sql": file("y"),
			},
			wantErr: "share version",
		},
		{
			name:    "unknown token",
			fs:      fstest.MapFS{"migrations/0001_a.sql": file("x {{NOPE}}")},
			wantErr: "unknown token",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ms, err := loadMigrations(tc.fs, sqliteDialect)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range ms {
				got = append(got, strconv.Itoa(m.version)+":"+m.sql)
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("migrations = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestEmbeddedMigrationsExpand checks the shipped schema for both backends.
func TestEmbeddedMigrationsExpand(t *testing.T) {
	for _, d := range []*dialect{sqliteDialect, postgresDialect} {
		ms, err := loadMigrations(migrationFS, d)
		if err != nil {
			t.Fatalf("%s: %v", d.name, err)
		}
		if len(ms) == 0 || ms[0].version != 1 {
			t.Fatalf("%s: migrations %v do not start at 1", d.name, ms)
		}
	}
}
