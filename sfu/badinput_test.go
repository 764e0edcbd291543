package sfu

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"google.golang.org/protobuf/proto"
)

// rawClient is a signalling client without an SDK, for sending what no
// SDK would.
type rawClient struct {
	t  *testing.T
	ws *websocket.Conn
}

func (e *env) raw(t *testing.T, room, identity string) (*rawClient, *livekit.JoinResponse) {
	t.Helper()
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token(t, testSecret, room, identity, fullGrant()))
	ws, _, err := websocket.DefaultDialer.Dial(e.url+"/rtc?protocol=16&auto_subscribe=0", h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	c := &rawClient{t: t, ws: ws}
	res, err := c.read()
	if err != nil {
		t.Fatal(err)
	}
	if res.GetJoin() == nil {
		t.Fatalf("first message %v, want a JoinResponse", res)
	}
	return c, res.GetJoin()
}

func (c *rawClient) read() (*livekit.SignalResponse, error) {
	_ = c.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := c.ws.ReadMessage()
	if err != nil {
		return nil, err
	}
	res := &livekit.SignalResponse{}
	return res, proto.Unmarshal(b, res)
}

func (c *rawClient) sendRaw(b []byte) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawClient) send(req *livekit.SignalRequest) {
	c.t.Helper()
	b, err := proto.Marshal(req)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(b)
}

// expect reads until a message satisfying ok arrives.
func (c *rawClient) expect(what string, ok func(*livekit.SignalResponse) bool) *livekit.SignalResponse {
	c.t.Helper()
	for {
		res, err := c.read()
		if err != nil {
			c.t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok(res) {
			return res
		}
	}
}

func requestError(reason livekit.RequestResponse_Reason) func(*livekit.SignalResponse) bool {
	return func(r *livekit.SignalResponse) bool {
		return r.GetRequestResponse() != nil && r.GetRequestResponse().GetReason() == reason
	}
}

func TestBadInputAffectsOnlyTheSender(t *testing.T) {
	e := newEnv(t, Config{}, Deps{})
	alice := e.connect(t, "r1", "alice", fullGrant())
	bob := e.connect(t, "r1", "bob", fullGrant())
	publishAudio(t, alice)
	await(t, 15*time.Second, "bob receives audio", func() bool { return bob.rtp.Load() > 10 })

	mallory, join := e.raw(t, "r1", "mallory")
	if len(join.GetOtherParticipants()) != 2 || !join.GetSubscriberPrimary() || join.GetPingInterval() != 10 {
		t.Fatalf("join response: %v", join)
	}

	for _, tc := range []struct {
		name string
		send func()
		want func(*livekit.SignalResponse) bool
	}{
		{"garbage protobuf", func() { mallory.sendRaw([]byte{0xff, 0xff, 0xff, 0x01, 0x02}) }, requestError(livekit.RequestResponse_INVALID_REQUEST)},
		{"empty request", func() { mallory.sendRaw(nil) }, requestError(livekit.RequestResponse_INVALID_REQUEST)},
		{"malformed offer SDP", func() {
			mallory.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Offer{Offer: &livekit.SessionDescription{Type: "offer", Sdp: "v=0\r\nthis is not sdp"}}})
		}, requestError(livekit.RequestResponse_INVALID_REQUEST)},
		{"answer without an offer", func() {
			mallory.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Answer{Answer: &livekit.SessionDescription{Type: "answer", Sdp: "v=0"}}})
		}, requestError(livekit.RequestResponse_INVALID_REQUEST)},
		{"mute of an unknown track", func() {
			mallory.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Mute{Mute: &livekit.MuteTrackRequest{Sid: "TR_nope", Muted: true}}})
		}, requestError(livekit.RequestResponse_NOT_FOUND)},
		{"subscription to an unknown track", func() {
			mallory.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Subscription{Subscription: &livekit.UpdateSubscription{TrackSids: []string{"TR_nope"}, Subscribe: true}}})
		}, requestError(livekit.RequestResponse_NOT_FOUND)},
		{"settings for a track not subscribed", func() {
			mallory.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_TrackSetting{TrackSetting: &livekit.UpdateTrackSettings{TrackSids: []string{"TR_nope"}}}})
		}, requestError(livekit.RequestResponse_NOT_FOUND)},
		{"malformed candidate", func() {
			mallory.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_Trickle{Trickle: &livekit.TrickleRequest{CandidateInit: "{nope"}}})
		}, requestError(livekit.RequestResponse_INVALID_REQUEST)},
		{"add track without a cid", func() {
			mallory.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_AddTrack{AddTrack: &livekit.AddTrackRequest{Type: livekit.TrackType_AUDIO}}})
		}, requestError(livekit.RequestResponse_INVALID_REQUEST)},
		{"ping", func() {
			mallory.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_PingReq{PingReq: &livekit.Ping{Timestamp: 42}}})
		}, func(r *livekit.SignalResponse) bool { return r.GetPongResp().GetLastPingTimestamp() == 42 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.send()
			mallory.expect(tc.name, tc.want)
		})
	}

	// A client that keeps sending garbage is closed.
	for i := 0; i < 40; i++ {
		if err := mallory.ws.WriteMessage(websocket.BinaryMessage, []byte{0xff}); err != nil {
			break
		}
	}
	sawLeave := false
	for {
		res, err := mallory.read()
		if err != nil {
			if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
				t.Fatal("the flooding client was not closed")
			}
			break
		}
		sawLeave = sawLeave || res.GetLeave() != nil
	}
	if !sawLeave {
		t.Error("the flooding client got no LeaveRequest before the close")
	}

	// Oversized and flooding data packets are refused for the sender
	// alone.
	big := bytes.Repeat([]byte("x"), 20*1024)
	if err := alice.room.LocalParticipant.PublishDataPacket(lksdk.UserData(big), lksdk.WithDataPublishTopic("big")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2000; i++ {
		_ = alice.room.LocalParticipant.PublishDataPacket(lksdk.UserData([]byte("flood")), lksdk.WithDataPublishTopic("flood"), lksdk.WithDataPublishReliable(false))
	}
	await(t, 10*time.Second, "the flood is refused", func() bool { return e.srv.Stats().DataRefused > 1 })
	// Let the sender's bucket refill, then a normal packet goes through.
	await(t, 10*time.Second, "a normal packet after the flood", func() bool {
		_ = alice.room.LocalParticipant.PublishDataPacket(lksdk.UserData([]byte("ok")), lksdk.WithDataPublishTopic("after"))
		bob.mu.Lock()
		defer bob.mu.Unlock()
		for _, d := range bob.data {
			if d == "alice/after:ok" {
				return true
			}
		}
		return false
	})
	bob.mu.Lock()
	for _, d := range bob.data {
		if strings.HasPrefix(d, "alice/big:") {
			t.Errorf("an oversized packet was relayed")
		}
	}
	bob.mu.Unlock()

	// The room is unaffected: media still flows to bob.
	n := bob.rtp.Load()
	await(t, 10*time.Second, "audio keeps flowing", func() bool { return bob.rtp.Load() > n+10 })
}

func TestGrantsAreEnforced(t *testing.T) {
	e := newEnv(t, Config{}, Deps{})
	no, yes := false, true
	listener := e.connect(t, "r1", "listener", auth.VideoGrant{CanPublish: &no, CanPublishData: &no, CanSubscribe: &yes})
	bob := e.connect(t, "r1", "bob", fullGrant())

	// No publish grant: AddTrack is refused.
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token(t, testSecret, "r1", "viewer", auth.VideoGrant{CanPublish: &no, CanSubscribe: &yes}))
	ws, _, err := websocket.DefaultDialer.Dial(e.url+"/rtc", h)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	viewer := &rawClient{t: t, ws: ws}
	viewer.expect("join", func(r *livekit.SignalResponse) bool { return r.GetJoin() != nil })
	viewer.send(&livekit.SignalRequest{Message: &livekit.SignalRequest_AddTrack{AddTrack: &livekit.AddTrackRequest{Cid: "c", Type: livekit.TrackType_AUDIO}}})
	viewer.expect("add track refused", requestError(livekit.RequestResponse_NOT_ALLOWED))

	// No publish-data grant: the packet is refused, nothing relayed.
	if err := listener.room.LocalParticipant.PublishDataPacket(lksdk.UserData([]byte("psst")), lksdk.WithDataPublishTopic("t")); err != nil {
		t.Fatal(err)
	}
	await(t, 10*time.Second, "the packet is refused", func() bool { return e.srv.Stats().DataRefused > 0 })
	if err := bob.room.LocalParticipant.PublishDataPacket(lksdk.UserData([]byte("hi")), lksdk.WithDataPublishTopic("t")); err != nil {
		t.Fatal(err)
	}
	await(t, 10*time.Second, "bob's packet arrives", listener.has(func(c *client) bool { return len(c.data) > 0 }))
	bob.mu.Lock()
	defer bob.mu.Unlock()
	if len(bob.data) != 0 {
		t.Errorf("bob got %q from a participant without the publish-data grant", bob.data)
	}
}
