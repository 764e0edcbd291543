package rtcauth

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
)

// onBackends runs f against a fresh SQLite and PostgreSQL database.
func onBackends(t *testing.T, f func(t *testing.T, db *storage.DB)) {
	if os.Getenv(storagetest.EnvPostgres) == "" {
		t.Setenv(storagetest.EnvPostgres, "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	}
	for _, backend := range storagetest.Backends {
		t.Run(backend, func(t *testing.T) {
			dsn, dir := storagetest.Fresh(t, backend)
			if dir == "" {
				dir = t.TempDir()
			}
			db, err := storage.Open(context.Background(), dsn, dir)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			f(t, db)
		})
	}
}

func countRows(t *testing.T, db *storage.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.View(context.Background(), func(tx *storage.Tx) error {
		return tx.QueryRow(context.Background(), q, args...).Scan(&n)
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestServiceFieldLimits posts get_token and sfu/get requests to a real
// token service on loopback: fields over their limit are refused before
// anything is verified or stored.
func TestServiceFieldLimits(t *testing.T) {
	onBackends(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		openid := NewOpenIDStore(db, nil)
		svc, err := New(Config{ServerName: "hs", APIKey: "key", APISecret: "secret"}, Deps{
			OpenID: openid, Store: NewStore(db),
			Membership: func(context.Context, string, string) (string, error) { return "join", nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		svc.Register(mux)
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		tok, err := openid.Issue(ctx, "@a:hs")
		if err != nil {
			t.Fatal(err)
		}
		long := strings.Repeat("x", maxIDBytes+1)
		fits := strings.Repeat("x", maxIDBytes)
		getToken := func(memberID, slot string) map[string]any {
			return map[string]any{"room_id": "!r:hs", "slot_id": slot,
				"openid_token": map[string]any{"access_token": tok, "matrix_server_name": "hs"},
				"member":       map[string]any{"id": memberID, "claimed_user_id": "@a:hs", "claimed_device_id": "D"}}
		}
		legacy := func(device string) map[string]any {
			return map[string]any{"room": "!r:hs", "device_id": device,
				"openid_token": map[string]any{"access_token": tok, "matrix_server_name": "hs"}}
		}
		tests := []struct {
			name, path string
			body       map[string]any
			status     int
		}{
			{"member id at the limit", "/get_token", getToken(fits, "m.call#ROOM"), http.StatusOK},
			{"member id over the limit", "/get_token", getToken(long, "m.call#ROOM"), http.StatusBadRequest},
			{"slot over the limit", "/get_token", getToken("m", long), http.StatusBadRequest},
			{"legacy device over the limit", "/sfu/get", legacy(long), http.StatusBadRequest},
			{"legacy device", "/sfu/get", legacy("D"), http.StatusOK},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := countRows(t, db, `SELECT COUNT(*) FROM rtc_identities`)
				b, _ := json.Marshal(tt.body)
				res, err := http.Post(srv.URL+Prefix+tt.path, "application/json", bytes.NewReader(b))
				if err != nil {
					t.Fatal(err)
				}
				var e struct {
					ErrCode string `json:"errcode"`
				}
				_ = json.NewDecoder(res.Body).Decode(&e)
				res.Body.Close()
				if res.StatusCode != tt.status {
					t.Fatalf("status %d (%s), want %d", res.StatusCode, e.ErrCode, tt.status)
				}
				stored := countRows(t, db, `SELECT COUNT(*) FROM rtc_identities`) - before
				if tt.status != http.StatusOK && (e.ErrCode != "M_BAD_JSON" || stored != 0) {
					t.Fatalf("errcode %q, %d rows stored; want M_BAD_JSON and none", e.ErrCode, stored)
				}
			})
		}
	})
}

// TestStorePrunesIdentities records more identities for one user than
// the store keeps: the oldest, and the LiveKit rooms left without any
// identity, are forgotten; other users' rows are not touched.
func TestStorePrunesIdentities(t *testing.T) {
	onBackends(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		st := NewStore(db)
		at := time.UnixMilli(1_000_000)
		grant := func(user string, i int) Grant {
			slot := fmt.Sprintf("m.call#%d", i)
			return Grant{LKRoom: RoomAlias("!r:hs", slot), RoomID: "!r:hs", SlotID: slot,
				Identity: fmt.Sprintf("id-%s-%d", user, i), UserID: user, DeviceID: "D"}
		}
		// Bob shares the first slot's LiveKit room: it must survive.
		if err := st.Record(ctx, grant("@b:hs", 0), at); err != nil {
			t.Fatal(err)
		}
		const extra = 5
		for i := range maxIdentitiesPerUser + extra {
			at = at.Add(time.Second)
			if err := st.Record(ctx, grant("@a:hs", i), at); err != nil {
				t.Fatal(err)
			}
		}
		if n := countRows(t, db, `SELECT COUNT(*) FROM rtc_identities WHERE user_id = ?`, "@a:hs"); n != maxIdentitiesPerUser {
			t.Fatalf("%d identities of @a:hs kept, want %d", n, maxIdentitiesPerUser)
		}
		for i := range maxIdentitiesPerUser + extra {
			g := grant("@a:hs", i)
			u, err := st.User(ctx, g.LKRoom, g.Identity)
			if err != nil {
				t.Fatal(err)
			}
			room, err := st.Room(ctx, g.LKRoom)
			if err != nil {
				t.Fatal(err)
			}
			gone := i < extra
			if (u == "") != gone {
				t.Fatalf("identity %d: user %q, want forgotten=%v", i, u, gone)
			}
			if wantRoom := !gone || i == 0; (room != "") != wantRoom {
				t.Fatalf("LiveKit room of slot %d: %q, want kept=%v", i, room, wantRoom)
			}
		}
		if u, err := st.User(ctx, grant("@b:hs", 0).LKRoom, grant("@b:hs", 0).Identity); err != nil || u != "@b:hs" {
			t.Fatalf("bob's identity: %q %v", u, err)
		}
	})
}

// TestServiceBoundsRemoteChecks holds every OpenID check at another
// server open: once MaxRemoteChecks are in flight, the next request is
// turned away with 429 at once instead of opening another connection,
// and the held ones still complete.
func TestServiceBoundsRemoteChecks(t *testing.T) {
	onBackends(t, func(t *testing.T, db *storage.DB) {
		const max = 2
		release := make(chan struct{})
		started := make(chan struct{}, max+1)
		svc, err := New(Config{ServerName: "hs", APIKey: "key", APISecret: "secret", MaxRemoteChecks: max}, Deps{
			OpenID: NewOpenIDStore(db, nil), Store: NewStore(db),
			Membership: func(context.Context, string, string) (string, error) { return "join", nil },
			Remote: func(ctx context.Context, server, token string) (string, error) {
				started <- struct{}{}
				select {
				case <-release:
				case <-ctx.Done():
				}
				return "@b:" + server, nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		svc.Register(mux)
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		post := func() int {
			b, _ := json.Marshal(map[string]any{"room": "!r:hs", "device_id": "D",
				"openid_token": map[string]any{"access_token": "t", "matrix_server_name": "other.example"}})
			// A bounded wait: without the bound the request would hang
			// until release.
			c := &http.Client{Timeout: 5 * time.Second}
			res, err := c.Post(srv.URL+Prefix+"/sfu/get", "application/json", bytes.NewReader(b))
			if err != nil {
				return 0
			}
			res.Body.Close()
			return res.StatusCode
		}
		statuses := make(chan int, max)
		for range max {
			go func() { statuses <- post() }()
		}
		timeout := time.After(10 * time.Second)
		for i := range max {
			select {
			case <-started:
			case <-timeout:
				t.Fatalf("%d checks in flight, want %d", i, max)
			}
		}
		if got := post(); got != http.StatusTooManyRequests {
			t.Fatalf("request over the bound: %d, want 429", got)
		}
		select {
		case <-started:
			t.Fatalf("a check over the bound was started")
		default:
		}
		close(release)
		for range max {
			if got := <-statuses; got != http.StatusOK {
				t.Fatalf("held request: %d, want 200", got)
			}
		}
		// The bound is free again.
		if got := post(); got != http.StatusOK {
			t.Fatalf("request after release: %d, want 200", got)
		}
	})
}
