package sfu

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"

	"github.com/plexus-chat/plexus/sfu/internal/signal"
)

// With RequireRoomCreate (cmd/plexus's setting), a token without the
// roomCreate grant joins a live room but cannot start one: the token
// service gives roomCreate to its own server's users alone.
func TestRoomCreateGrantRequired(t *testing.T) {
	e := newEnv(t, Config{RequireRoomCreate: true}, Deps{})
	guest := fullGrant()
	if r, err := lksdk.ConnectToRoomWithToken(e.url, token(t, testSecret, "r1", "guest", guest), &lksdk.RoomCallback{}); err == nil {
		r.Disconnect()
		t.Fatal("a token without roomCreate started a room")
	}
	if n := len(e.srv.Rooms()); n != 0 {
		t.Fatalf("%d rooms after a refused join", n)
	}
	// SDKs ask /rtc/validate why a connect failed: 404, as livekit-server
	// answers for a room it may not create.
	resp, err := http.Get("http" + strings.TrimPrefix(e.url, "ws") + "/rtc/validate?access_token=" + token(t, testSecret, "r1", "guest", guest))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("validate: %d, want 404", resp.StatusCode)
	}
	host := fullGrant()
	host.RoomCreate = true
	h := e.connect(t, "r1", "host", host)
	g := e.connect(t, "r1", "guest", guest)
	await(t, 10*time.Second, "the guest sees the host", func() bool { return g.room.GetParticipantByIdentity("host") != nil })
	await(t, 10*time.Second, "the host sees the guest", func() bool { return h.room.GetParticipantByIdentity("guest") != nil })
}

// A participant with the hidden grant is in nobody else's view: not in
// JoinResponses or updates, and its tracks are not forwarded to anyone.
func TestHiddenParticipantIsNotSeen(t *testing.T) {
	e := newEnv(t, Config{}, Deps{})
	bob := e.connect(t, "r1", "bob", fullGrant())
	hiddenGrant := fullGrant()
	hiddenGrant.Hidden = true
	hidden := e.connect(t, "r1", "hidden", hiddenGrant)
	await(t, 10*time.Second, "the hidden participant sees bob", func() bool { return hidden.room.GetParticipantByIdentity("bob") != nil })
	publishAudio(t, hidden)
	await(t, 15*time.Second, "the hidden participant's track is live", func() bool { return e.srv.Stats().Tracks == 1 })
	// carol's arrival reaches bob after anything about the hidden
	// participant would have.
	carol := e.connect(t, "r1", "carol", fullGrant())
	await(t, 10*time.Second, "bob sees carol", func() bool { return bob.room.GetParticipantByIdentity("carol") != nil })
	for _, c := range []*client{bob, carol} {
		if c.room.GetParticipantByIdentity("hidden") != nil {
			t.Errorf("%s sees the hidden participant", c.room.LocalParticipant.Identity())
		}
	}
	if st := e.srv.Stats(); st.DownTracks != 0 || st.Participants != 3 {
		t.Fatalf("stats %+v: the hidden participant's track is forwarded", st)
	}
	if n := bob.rtp.Load() + carol.rtp.Load(); n != 0 {
		t.Fatalf("%d packets of the hidden participant's audio received", n)
	}
}

// Every participant is sent a fresh token with its grants now and then,
// so that a resume after the first token expired is still admitted.
func TestTokensAreRefreshed(t *testing.T) {
	e := newEnv(t, Config{TokenRefreshInterval: 50 * time.Millisecond, TokenRefreshTTL: 3 * time.Minute}, Deps{})
	c, _ := e.raw(t, "r1", "alice")
	res := c.expect("a refreshed token", func(r *livekit.SignalResponse) bool { return r.GetRefreshToken() != "" })
	claims, err := signal.Verify(res.GetRefreshToken(), testKey, testSecret)
	if err != nil {
		t.Fatal(err)
	}
	if claims.Identity != "alice" || claims.Room != "r1" || !claims.CanPublish || !claims.CanSubscribe || !claims.CanPublishData || claims.Hidden {
		t.Fatalf("refreshed claims %+v", claims)
	}
	v, err := auth.ParseAPIToken(res.GetRefreshToken())
	if err != nil {
		t.Fatal(err)
	}
	rc, _, err := v.Verify(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	if left := time.Until(rc.ExpiresAt.Time); left < 2*time.Minute || left > 3*time.Minute {
		t.Fatalf("the refreshed token expires in %v", left)
	}
}
