package federation_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/plexus-chat/plexus/internal/fedtest"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
)

const (
	rtcKey    = "plexus-fed"
	rtcSecret = "fedtest-secret-of-at-least-32-bytes!"
)

// tokenAnswer is the token service's answer.
type tokenAnswer struct {
	Status  int
	Errcode string `json:"errcode"`
	URL     string `json:"url"`
	JWT     string `json:"jwt"`
}

// getToken asks s's token service (POST /livekit/jwt/get_token, MSC4195)
// for c's token for the room's call, with an OpenID token from c's own
// server.
func getToken(t *testing.T, s *fedtest.Server, c *mautrix.Client, room id.RoomID, memberID string) tokenAnswer {
	t.Helper()
	oid, err := c.RequestOpenIDToken(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{
		"room_id": room, "slot_id": "m.call#ROOM", "openid_token": oid,
		"member": map[string]string{"id": memberID, "claimed_user_id": string(c.UserID), "claimed_device_id": string(c.DeviceID)},
	})
	resp, err := http.Post(s.ClientURL+"/livekit/jwt/get_token", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := tokenAnswer{Status: resp.StatusCode}
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("token answer %d %s", resp.StatusCode, b)
	}
	return a
}

func grantsOf(t *testing.T, jwt string) *auth.ClaimGrants {
	t.Helper()
	v, err := auth.ParseAPIToken(jwt)
	if err != nil {
		t.Fatal(err)
	}
	_, g, err := v.Verify(rtcSecret)
	if err != nil {
		t.Fatalf("token does not verify with the configured secret: %v", err)
	}
	return g
}

// TestRTCFederated is a MatrixRTC call across two servers (MSC4195
// multi-SFU): bob of hs2 joins alice's room on hs1, proves who he is to
// hs1's token service with an OpenID token of hs2 (checked through
// federation openid/userinfo) and joins hs1's SFU next to alice; his own
// server gives him a token to publish on its SFU. A user of hs2 who is
// not in the room is refused, and the SFU refuses a forged token.
func TestRTCFederated(t *testing.T) {
	for _, backend := range storagetest.Backends {
		t.Run(backend, func(t *testing.T) { testRTCFederated(t, backend) })
	}
}

func testRTCFederated(t *testing.T, backend string) {
	ctx := context.Background()
	opts := fedtest.Options{Args: []string{"--sfu-api-key", rtcKey, "--sfu-api-secret", rtcSecret}}
	if backend == storagetest.Postgres {
		opts.Postgres = func(string) string {
			dsn, _ := storagetest.Fresh(t, backend)
			return dsn
		}
	}
	f := fedtest.New(t, opts, "hs1", "hs2")
	f.Start(t)
	hs1, hs2 := f.Servers["hs1"], f.Servers["hs2"]
	alice := register(t, hs1, "alice")
	bob := register(t, hs2, "bob")
	charlie := register(t, hs2, "charlie")
	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Call"})
	if err != nil {
		t.Fatal(err)
	}
	room := created.RoomID
	if _, err := bob.JoinRoom(ctx, room.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1"}}); err != nil {
		t.Fatal(err)
	}

	// hs1 learns of bob's join asynchronously: until then it answers 403.
	var remote tokenAnswer
	fedtest.Eventually(t, 20*time.Second, "hs1 to give bob a token", func() (bool, error) {
		remote = getToken(t, hs1, bob, room, "bob-1")
		if remote.Status == http.StatusForbidden {
			return false, fmt.Errorf("still %d %s", remote.Status, remote.Errcode)
		}
		return true, nil
	})
	if remote.Status != http.StatusOK {
		t.Fatalf("bob's token from hs1: %d %s", remote.Status, remote.Errcode)
	}
	g := grantsOf(t, remote.JWT)
	if g.Video.RoomCreate || !g.Video.GetCanPublish() || !g.Video.GetCanSubscribe() || !g.Video.RoomJoin {
		t.Fatalf("a remote user's grants on hs1: %+v", g.Video)
	}
	home := getToken(t, hs2, bob, room, "bob-1")
	if home.Status != http.StatusOK {
		t.Fatalf("bob's token from hs2: %d %s", home.Status, home.Errcode)
	}
	if hg := grantsOf(t, home.JWT); !hg.Video.GetCanPublish() || hg.Video.Room != g.Video.Room || hg.Identity != g.Identity {
		t.Fatalf("bob's grants on his own server: %+v (identity %s, want %s)", hg.Video, hg.Identity, g.Identity)
	}
	local := getToken(t, hs1, alice, room, "alice-1")
	if local.Status != http.StatusOK || !grantsOf(t, local.JWT).Video.GetCanPublish() {
		t.Fatalf("alice's token: %d %s", local.Status, local.Errcode)
	}
	if a := getToken(t, hs1, charlie, room, "c"); a.Status != http.StatusForbidden || a.Errcode != "M_FORBIDDEN" {
		t.Fatalf("charlie, not in the room: %d %s", a.Status, a.Errcode)
	}

	// Both join hs1's SFU and see each other; alice publishes there and
	// bob, a remote user on hs1, receives her audio.
	aliceRecv, bobRecv := &rtpCounter{}, &rtpCounter{}
	// A remote user cannot start the call on hs1's SFU: the room is not
	// running until one of hs1's own users joins.
	if r, err := lksdk.ConnectToRoomWithToken(remote.URL, remote.JWT, &lksdk.RoomCallback{}); err == nil {
		r.Disconnect()
		t.Fatal("bob, a remote user, started a room on hs1's SFU")
	}
	aliceRoom, err := lksdk.ConnectToRoomWithToken(local.URL, local.JWT, &lksdk.RoomCallback{}, lksdk.WithAutoSubscribe(false))
	if err != nil {
		t.Fatalf("alice joining hs1's SFU at %s: %v", local.URL, err)
	}
	defer aliceRoom.Disconnect()
	bobRoom, err := lksdk.ConnectToRoomWithToken(remote.URL, remote.JWT, bobRecv.callback(), lksdk.WithAutoSubscribe(true))
	if err != nil {
		t.Fatalf("bob joining hs1's SFU: %v", err)
	}
	defer bobRoom.Disconnect()
	fedtest.Eventually(t, 20*time.Second, "alice and bob to see each other", func() (bool, error) {
		a, b := aliceRoom.GetRemoteParticipants(), bobRoom.GetRemoteParticipants()
		if len(a) != 1 || len(b) != 1 {
			return false, fmt.Errorf("alice sees %d, bob sees %d", len(a), len(b))
		}
		return true, nil
	})
	publishAudio(t, aliceRoom)
	fedtest.Eventually(t, 20*time.Second, "bob to receive alice's audio on hs1's SFU", bobRecv.from(grantsOf(t, local.JWT).Identity, 20))

	// MSC4195 multi-SFU: bob publishes to his own server's SFU, and alice
	// gets a token from hs2's token service (a remote user there, proven
	// through federation, who may join the running room but not start it)
	// and receives his audio on it.
	if home.URL == local.URL {
		t.Fatalf("hs1 and hs2 name the same SFU %s", home.URL)
	}
	bobHome, err := lksdk.ConnectToRoomWithToken(home.URL, home.JWT, &lksdk.RoomCallback{}, lksdk.WithAutoSubscribe(false))
	if err != nil {
		t.Fatalf("bob joining hs2's SFU at %s: %v", home.URL, err)
	}
	defer bobHome.Disconnect()
	publishAudio(t, bobHome)
	var away tokenAnswer
	fedtest.Eventually(t, 20*time.Second, "hs2 to give alice a token", func() (bool, error) {
		away = getToken(t, hs2, alice, room, "alice-1")
		if away.Status == http.StatusForbidden {
			return false, fmt.Errorf("still %d %s", away.Status, away.Errcode)
		}
		return true, nil
	})
	if away.Status != http.StatusOK || away.URL != home.URL {
		t.Fatalf("alice's token from hs2: %d %s for %s", away.Status, away.Errcode, away.URL)
	}
	if ag := grantsOf(t, away.JWT); ag.Video.RoomCreate || !ag.Video.GetCanPublish() || !ag.Video.GetCanSubscribe() || ag.Video.Room != grantsOf(t, home.JWT).Video.Room {
		t.Fatalf("alice's grants on hs2: %+v", ag.Video)
	}
	aliceAway, err := lksdk.ConnectToRoomWithToken(away.URL, away.JWT, aliceRecv.callback(), lksdk.WithAutoSubscribe(true))
	if err != nil {
		t.Fatalf("alice joining hs2's SFU: %v", err)
	}
	defer aliceAway.Disconnect()
	fedtest.Eventually(t, 20*time.Second, "alice to receive bob's audio on hs2's SFU", aliceRecv.from(grantsOf(t, home.JWT).Identity, 20))
	// And, as when everyone shares the oldest member's SFU, she may
	// publish there: bob hears her on his own server's SFU.
	bobHeard := &rtpCounter{}
	bobListen, err := lksdk.ConnectToRoomWithToken(home.URL, getToken(t, hs2, bob, room, "bob-2").JWT, bobHeard.callback(), lksdk.WithAutoSubscribe(true))
	if err != nil {
		t.Fatalf("bob's second device joining hs2's SFU: %v", err)
	}
	defer bobListen.Disconnect()
	publishAudio(t, aliceAway)
	fedtest.Eventually(t, 20*time.Second, "bob to receive alice's audio on hs2's SFU", bobHeard.from(grantsOf(t, away.JWT).Identity, 20))

	// A token signed with another secret is refused.
	forged, err := auth.NewAccessToken(rtcKey, "not-the-secret-but-32-bytes-long!!").
		SetVideoGrant(&auth.VideoGrant{RoomJoin: true, Room: g.Video.Room}).SetIdentity("mallory").ToJWT()
	if err != nil {
		t.Fatal(err)
	}
	if r, err := lksdk.ConnectToRoomWithToken(local.URL, forged, &lksdk.RoomCallback{}); err == nil {
		r.Disconnect()
		t.Fatal("the SFU accepted a forged token")
	}
}

// rtpCounter counts the RTP packets a participant receives, by the
// identity of the publishing participant.
type rtpCounter struct {
	mu sync.Mutex // guards n
	n  map[string]int
}

func (c *rtpCounter) callback() *lksdk.RoomCallback {
	return &lksdk.RoomCallback{ParticipantCallback: lksdk.ParticipantCallback{
		OnTrackSubscribed: func(track *webrtc.TrackRemote, _ *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
			go func() {
				for {
					if _, _, err := track.ReadRTP(); err != nil {
						return
					}
					c.mu.Lock()
					if c.n == nil {
						c.n = map[string]int{}
					}
					c.n[rp.Identity()]++
					c.mu.Unlock()
				}
			}()
		},
	}}
}

// from is a condition for fedtest.Eventually: at least min packets from
// the participant with the LiveKit identity.
func (c *rtpCounter) from(identity string, min int) func() (bool, error) {
	return func() (bool, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.n[identity] >= min {
			return true, nil
		}
		return false, fmt.Errorf("received %v", c.n)
	}
}

// publishAudio publishes an Opus track on r, fed with 20 ms frames until
// the test ends.
func publishAudio(t *testing.T, r *lksdk.Room) {
	t.Helper()
	track, err := lksdk.NewLocalSampleTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.LocalParticipant.PublishTrack(track, &lksdk.TrackPublicationOptions{Name: "mic"}); err != nil {
		t.Fatalf("publish: %v", err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond) // pacing a real-time source
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				_ = track.WriteSample(media.Sample{Data: []byte{0xf8, 0xff, 0xfe}, Duration: 20 * time.Millisecond}, nil)
			}
		}
	}()
}
