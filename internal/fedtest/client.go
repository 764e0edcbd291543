package fedtest

import (
	"context"
	"testing"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// Register makes an account on s through /register (m.login.dummy) and
// returns a logged-in mautrix-go client.
func (s *Server) Register(t testing.TB, name string) *mautrix.Client {
	t.Helper()
	c, err := mautrix.NewClient(s.ClientURL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	c.Log = zerolog.Nop()
	resp, err := c.RegisterDummy(context.Background(), &mautrix.ReqRegister[any]{Username: name, Password: "correct horse " + name})
	if err != nil {
		t.Fatalf("register %s on %s: %v", name, s.Name, err)
	}
	c.UserID, c.AccessToken, c.DeviceID = resp.UserID, resp.AccessToken, resp.DeviceID
	return c
}

// Send sends a text message as c and returns its event ID.
func Send(t testing.TB, c *mautrix.Client, room id.RoomID, text string) string {
	t.Helper()
	resp, err := c.SendText(context.Background(), room, text)
	if err != nil {
		t.Fatalf("%s sending %q: %v", c.UserID, text, err)
	}
	return resp.EventID.String()
}
