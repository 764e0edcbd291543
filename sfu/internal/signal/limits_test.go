package signal

import (
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
)

// claimsJoiner records the claims Join was given and refuses the join.
type claimsJoiner struct{ got chan *Claims }

func (j *claimsJoiner) Join(_ *Conn, claims *Claims, _ Params) (Session, error) {
	j.got <- claims
	return nil, errors.New("recorded")
}

func TestQueryAttributesNeedTheGrant(t *testing.T) {
	j := &claimsJoiner{got: make(chan *Claims, 4)}
	hs := httptest.NewServer(NewHandler(key, secret, j, ConnConfig{}, slog.New(slog.DiscardHandler)))
	t.Cleanup(hs.Close)
	yes := true
	plain := mint(t, key, secret, &auth.VideoGrant{RoomJoin: true, Room: "r"}, "alice", time.Hour)
	meta := mint(t, key, secret, &auth.VideoGrant{RoomJoin: true, Room: "r", CanUpdateOwnMetadata: &yes}, "alice", time.Hour)
	attrs := base64.URLEncoding.EncodeToString([]byte(`{"role":"admin","empty":""}`))
	for _, tc := range []struct {
		name, path, tok string
		want            int
	}{
		{"validate without the grant", "/rtc/validate", plain, http.StatusUnauthorized},
		{"validate with the grant", "/rtc/validate", meta, http.StatusOK},
		{"join without the grant", "/rtc", plain, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Get(hs.URL + tc.path + "?attributes=" + attrs + "&access_token=" + tc.tok)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("%d %q, want %d", resp.StatusCode, b, tc.want)
			}
		})
	}
	select {
	case c := <-j.got:
		t.Fatalf("a join without the grant reached the joiner with %v", c.Attributes)
	default:
	}

	// With the grant, the attributes reach the joiner, empty values
	// dropped.
	ws := dialURL(t, "ws"+strings.TrimPrefix(hs.URL, "http")+"/rtc?attributes="+attrs+"&access_token="+meta)
	defer ws.Close()
	select {
	case c := <-j.got:
		if c.Attributes["role"] != "admin" || len(c.Attributes) != 1 {
			t.Fatalf("attributes %v", c.Attributes)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the join did not reach the joiner")
	}
}

func TestSendBoundsQueuedBytes(t *testing.T) {
	// No writer runs: everything sent stays queued, as for a client
	// that stopped reading.
	cfg := ConnConfig{QueueBytes: 1 << 20}
	cfg.defaults()
	c := &Conn{cfg: cfg, log: slog.New(slog.DiscardHandler), wake: make(chan struct{}, 1), writerDone: make(chan struct{})}
	big := &livekit.SignalResponse{Message: &livekit.SignalResponse_Offer{Offer: &livekit.SessionDescription{
		Type: "offer", Sdp: strings.Repeat("x", 300<<10),
	}}}
	var err error
	sent := 0
	for ; sent < 10 && err == nil; sent++ {
		err = c.Send(big)
	}
	if !errors.Is(err, ErrClosed) || sent != 4 {
		t.Fatalf("after %d sends of 300 KiB into a 1 MiB queue: %v", sent, err)
	}
	if err := c.Send(&livekit.SignalResponse{Message: &livekit.SignalResponse_Pong{Pong: 1}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("a send after the overflow: %v", err)
	}
}

func dialURL(t *testing.T, u string) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

func TestClaimsCarryRestrictiveGrants(t *testing.T) {
	g := &auth.VideoGrant{RoomJoin: true, Room: "r", RoomCreate: true}
	g.SetCanPublishSources([]livekit.TrackSource{livekit.TrackSource_MICROPHONE})
	c, err := Verify(mint(t, key, secret, g, "alice", time.Hour), key, secret)
	if err != nil {
		t.Fatal(err)
	}
	if !c.CanCreateRoom || !c.CanPublishSource(livekit.TrackSource_MICROPHONE) || c.CanPublishSource(livekit.TrackSource_CAMERA) {
		t.Fatalf("claims %+v", c)
	}
	c, err = Verify(mint(t, key, secret, &auth.VideoGrant{RoomJoin: true, Room: "r"}, "alice", time.Hour), key, secret)
	if err != nil {
		t.Fatal(err)
	}
	if c.CanCreateRoom || !c.CanPublishSource(livekit.TrackSource_SCREEN_SHARE) {
		t.Fatalf("claims %+v", c)
	}
}
