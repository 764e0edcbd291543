package rtcauth

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
)

func TestOpenIDStore(t *testing.T) {
	if os.Getenv(storagetest.EnvPostgres) == "" {
		t.Setenv(storagetest.EnvPostgres, "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	}
	for _, backend := range storagetest.Backends {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			dsn, dir := storagetest.Fresh(t, backend)
			if dir == "" {
				dir = t.TempDir()
			}
			db, err := storage.Open(ctx, dsn, dir)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			now := time.UnixMilli(1_000_000_000)
			o := NewOpenIDStore(db, func() time.Time { return now })
			unknown := func(tok string) {
				t.Helper()
				var me *mxerr.MatrixError
				if _, err := o.User(ctx, tok); !errors.As(err, &me) || me.Code != mxerr.CodeUnknownToken || me.HTTPStatus() != 401 {
					t.Fatalf("token %.8q: %v, want 401 M_UNKNOWN_TOKEN", tok, err)
				}
			}
			var toks []string
			for range maxOpenIDPerUser + 1 {
				tok, err := o.Issue(ctx, "@a:hs")
				if err != nil {
					t.Fatal(err)
				}
				toks = append(toks, tok)
				now = now.Add(time.Second)
			}
			unknown(toks[0]) // the oldest was retired
			for _, tok := range toks[1:] {
				if u, err := o.User(ctx, tok); err != nil || u != "@a:hs" {
					t.Fatalf("got %q %v", u, err)
				}
			}
			other, err := o.Issue(ctx, "@b:hs")
			if err != nil {
				t.Fatal(err)
			}
			unknown("")
			unknown(other + "x")
			now = now.Add(OpenIDLifetime)
			unknown(other) // expired
			if _, err := o.Issue(ctx, "@c:hs"); err != nil {
				t.Fatal(err)
			}
			var rows int
			if err := db.View(ctx, func(tx *storage.Tx) error {
				return tx.QueryRow(ctx, `SELECT COUNT(*) FROM openid_tokens`).Scan(&rows)
			}); err != nil || rows != 1 {
				t.Fatalf("%d rows after expiry (%v), want 1", rows, err)
			}
		})
	}
}
