package signalling_test

import (
	"context"
	"crypto/ed25519"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"

	"github.com/plexus-chat/plexus/internal/server"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling"
)

// testServer is a whole client side (storage, room service, feed,
// signalling and the HTTP server) on a loopback port.
type testServer struct {
	URL  string
	Name string
	Sig  *signalling.Signalling
	DB   *storage.DB
}

func startServer(t testing.TB, backend string, mutate ...func(*signalling.Config)) *testServer {
	t.Helper()
	return startServerWith(t, backend, func(cfg *signalling.Config, _ *signalling.Deps) {
		for _, m := range mutate {
			m(cfg)
		}
	})
}

// startServerWith is startServer with set adjusting both the
// configuration and the collaborators (a clock, status sources, an
// OpenID verifier) before signalling is built.
func startServerWith(t testing.TB, backend string, set func(*signalling.Config, *signalling.Deps)) *testServer {
	t.Helper()
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
	const name = "hs1.test"
	feed, err := signalling.NewFeed(ctx, signalling.FeedConfig{ServerName: name}, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { feed.Close() })
	_, key, _ := ed25519.GenerateKey(nil)
	roomSvc, err := rooms.New(rooms.Config{Signer: rooms.Signer{Server: name, KeyID: "ed25519:t", Key: key}},
		rooms.Deps{Store: db, Listener: feed})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { roomSvc.Close() })
	cfg := signalling.Config{
		ServerName:               name,
		Registration:             signalling.RegistrationOpen,
		RegistrationSharedSecret: "s3cret",
		DataDir:                  dir,
		CookieKey:                make([]byte, 32),
		TURN: signalling.TURNConfig{
			Secret: []byte("turn-secret"),
			URIs:   []string{"turn:127.0.0.1:3478?transport=udp"},
		},
	}
	deps := signalling.Deps{DB: db, Rooms: roomSvc, Feed: feed}
	set(&cfg, &deps)
	sig, err := signalling.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sig.Close() })
	if err := sig.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Listen: "127.0.0.1:0"}, server.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	server.RegisterVersions(srv)
	sig.Register(srv)
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return &testServer{URL: "http://" + srv.Addr().String(), Name: name, Sig: sig, DB: db}
}

// register makes an account through /register (m.login.dummy) and
// returns a logged-in client.
func register(t *testing.T, srv *testServer, name string) *mautrix.Client {
	t.Helper()
	ctx := context.Background()
	c, err := mautrix.NewClient(srv.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	c.Log = zerolog.Nop()
	resp, err := c.RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: name, Password: "correct horse " + name, InitialDeviceDisplayName: name + "'s test"})
	if err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	c.UserID, c.AccessToken, c.DeviceID = resp.UserID, resp.AccessToken, resp.DeviceID
	return c
}

// rawRequest sends body (a JSON document, or none if empty) with c's
// access token and returns the status and the response body.
func rawRequest(t *testing.T, c *mautrix.Client, method, url, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.AccessToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}
