package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
)

func TestUserAdd(t *testing.T) {
	for _, backend := range storagetest.Backends {
		t.Run(backend, func(t *testing.T) {
			dsn, dir := storagetest.Fresh(t, backend)
			store := []string{"--data", dir}
			if dsn != "" {
				store = []string{"--db", dsn}
			}
			args := func(a ...string) []string { return append(append([]string{"user", "add"}, a...), store...) }
			tests := []struct {
				name       string
				args       []string
				wantCode   int
				wantStdout []string
				wantStderr []string
			}{
				{"with password", args("Alice", "--password", "pw", "--server-name", "example.org"), exitOK,
					[]string{"created @alice:example.org\n"}, nil},
				{"taken", args("alice", "--password", "x", "--server-name", "example.org"), exitFailure,
					nil, []string{"M_USER_IN_USE"}},
				{"generated password, name after flags", append([]string{"user", "add", "--admin", "--server-name=example.org"}, append(store, "bob")...), exitOK,
					[]string{"created @bob:example.org\n", "password: "}, nil},
				{"invalid name", args("a b", "--password", "x"), exitFailure, nil, []string{"M_INVALID_USERNAME"}},
				{"no name", args(), exitUsage, nil, []string{"want exactly one NAME", "Usage: plexus user add"}},
				{"two names", args("carl", "dora"), exitUsage, nil, []string{"want exactly one NAME"}},
				{"unknown flag", args("carl", "--colour"), exitUsage, nil, []string{"-colour"}},
				{"bad server name", args("carl", "--server-name", "bad name"), exitUsage, nil, []string{"--server-name"}},
				{"bad db", []string{"user", "add", "carl", "--db", "mysql://x"}, exitUsage, nil, []string{"--db"}},
				{"help", []string{"user", "add", "-h"}, exitOK, []string{"Usage: plexus user add"}, nil},
				{"no subcommand", []string{"user"}, exitUsage, nil, []string{"add"}},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					var stdout, stderr bytes.Buffer
					code := run(context.Background(), stdio{&stdout, &stderr}, tc.args)
					if code != tc.wantCode {
						t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, stdout.String(), stderr.String())
					}
					for _, w := range tc.wantStdout {
						if !strings.Contains(stdout.String(), w) {
							t.Errorf("stdout %q lacks %q", stdout.String(), w)
						}
					}
					for _, w := range tc.wantStderr {
						if !strings.Contains(stderr.String(), w) {
							t.Errorf("stderr %q lacks %q", stderr.String(), w)
						}
					}
				})
			}

			// The accounts are in the database, with hashed passwords and
			// the admin flag.
			db, err := storage.Open(context.Background(), dsn, dir)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for _, c := range []struct {
				user  string
				admin bool
			}{{"@alice:example.org", false}, {"@bob:example.org", true}} {
				var hash string
				var admin bool
				err := db.View(context.Background(), func(tx *storage.Tx) error {
					return tx.QueryRow(context.Background(), `SELECT password_hash, is_admin FROM users WHERE user_id = ?`, c.user).Scan(&hash, &admin)
				})
				if err != nil {
					t.Fatalf("%s: %v", c.user, err)
				}
				if !strings.HasPrefix(hash, "$argon2id$") || admin != c.admin {
					t.Errorf("%s: hash %q admin %v, want an argon2id hash and admin %v", c.user, hash, admin, c.admin)
				}
			}
		})
	}
}
