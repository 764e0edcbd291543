package rtc

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/pion/webrtc/v4"

	"github.com/plexus-chat/plexus/sfu/internal/signal"
)

// testManager is a Manager over a real engine on loopback.
func testManager(t *testing.T, cfg Config) *Manager {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	eng, err := NewEngine(EngineConfig{ListenIP: "127.0.0.1", TCPPort: -1, IncludeLoopback: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Engine, cfg.Logger = eng, log
	m := NewManager(cfg)
	t.Cleanup(func() {
		m.Close()
		_ = eng.Close()
	})
	return m
}

// joinRoom adds a participant without a signalling connection: what the
// server sends it waits in p.early.
func joinRoom(t *testing.T, m *Manager, room string, claims signal.Claims) (*Participant, error) {
	t.Helper()
	claims.Room = room
	r, err := m.room(room, true)
	if err != nil {
		t.Fatal(err)
	}
	p, err := newParticipant(r, &claims, signal.Params{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := r.join(p); err != nil || !ok {
		p.close(nil)
		if err == nil {
			err = errors.New("room closing")
		}
		return nil, err
	}
	return p, nil
}

// takeEarly returns and clears what was sent to p.
func takeEarly(p *Participant) []*livekit.SignalResponse {
	p.mu.Lock()
	defer p.mu.Unlock()
	msgs := p.early
	p.early = nil
	return msgs
}

func lastRequestResponse(t *testing.T, p *Participant) *livekit.RequestResponse {
	t.Helper()
	var rr *livekit.RequestResponse
	for _, m := range takeEarly(p) {
		if x := m.GetRequestResponse(); x != nil {
			rr = x
		}
	}
	return rr
}

func TestAddTrackIsBounded(t *testing.T) {
	m := testManager(t, Config{})
	p, err := joinRoom(t, m, "r", signal.Claims{Identity: "a", CanPublish: true, Sources: []string{"microphone", "camera"}})
	if err != nil {
		t.Fatal(err)
	}
	layers := func(n int) []*livekit.VideoLayer {
		var ls []*livekit.VideoLayer
		for i := 0; i < n; i++ {
			ls = append(ls, &livekit.VideoLayer{Quality: livekit.VideoQuality(i % 3), Width: 1280, Height: 720})
		}
		return ls
	}
	for _, tc := range []struct {
		name string
		req  *livekit.AddTrackRequest
		want livekit.RequestResponse_Reason // OK = published
	}{
		{"camera with three layers", &livekit.AddTrackRequest{Cid: "v", Type: livekit.TrackType_VIDEO, Source: livekit.TrackSource_CAMERA, Layers: layers(3)}, livekit.RequestResponse_OK},
		{"a thousand layers", &livekit.AddTrackRequest{Cid: "v2", Type: livekit.TrackType_VIDEO, Source: livekit.TrackSource_CAMERA, Layers: layers(1000)}, livekit.RequestResponse_INVALID_REQUEST},
		{"many codec layers", &livekit.AddTrackRequest{Cid: "v3", Type: livekit.TrackType_VIDEO, Source: livekit.TrackSource_CAMERA,
			SimulcastCodecs: []*livekit.SimulcastCodec{{Codec: "vp8", Cid: "x", Layers: layers(4)}}}, livekit.RequestResponse_INVALID_REQUEST},
		{"a huge name", &livekit.AddTrackRequest{Cid: "a", Type: livekit.TrackType_AUDIO, Source: livekit.TrackSource_MICROPHONE, Name: strings.Repeat("n", 100_000)}, livekit.RequestResponse_INVALID_REQUEST},
		{"a source the token does not allow", &livekit.AddTrackRequest{Cid: "s", Type: livekit.TrackType_VIDEO, Source: livekit.TrackSource_SCREEN_SHARE}, livekit.RequestResponse_NOT_ALLOWED},
		{"an allowed source", &livekit.AddTrackRequest{Cid: "m", Type: livekit.TrackType_AUDIO, Source: livekit.TrackSource_MICROPHONE}, livekit.RequestResponse_OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.HandleRequest(&livekit.SignalRequest{Message: &livekit.SignalRequest_AddTrack{AddTrack: tc.req}})
			msgs := takeEarly(p)
			if len(msgs) != 1 {
				t.Fatalf("%d answers", len(msgs))
			}
			if tc.want == livekit.RequestResponse_OK {
				if msgs[0].GetTrackPublished() == nil {
					t.Fatalf("answer %v, want TrackPublished", msgs[0])
				}
				return
			}
			if got := msgs[0].GetRequestResponse().GetReason(); got != tc.want {
				t.Fatalf("answer %v, want %v", msgs[0], tc.want)
			}
		})
	}
}

func TestRemoteCandidatesAreBounded(t *testing.T) {
	m := testManager(t, Config{})
	p, err := joinRoom(t, m, "r", signal.Claims{Identity: "a", CanPublish: true, CanSubscribe: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10*maxRemoteCandidates; i++ {
		for _, target := range []livekit.SignalTarget{livekit.SignalTarget_PUBLISHER, livekit.SignalTarget_SUBSCRIBER} {
			c := fmt.Sprintf(`{"candidate":"candidate:%d 1 udp 1 127.0.0.1 %d typ host","sdpMid":"0","sdpMLineIndex":0}`, i, 1000+i)
			p.HandleRequest(&livekit.SignalRequest{Message: &livekit.SignalRequest_Trickle{Trickle: &livekit.TrickleRequest{CandidateInit: c, Target: target}}})
		}
	}
	p.mu.Lock()
	pub, sub := len(p.pubCands), len(p.subCands)
	p.mu.Unlock()
	if pub != maxRemoteCandidates || sub != maxRemoteCandidates {
		t.Fatalf("held %d publisher and %d subscriber candidates, want %d each", pub, sub, maxRemoteCandidates)
	}
}

func TestOfferWithTooManyMediaSections(t *testing.T) {
	m := testManager(t, Config{})
	p, err := joinRoom(t, m, "r", signal.Claims{Identity: "a", CanPublish: true})
	if err != nil {
		t.Fatal(err)
	}
	// A real offer from a pion client with many audio transceivers.
	client, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for i := 0; i < maxMediaSections+1; i++ {
		if _, err := client.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := client.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	p.HandleRequest(&livekit.SignalRequest{Message: &livekit.SignalRequest_Offer{Offer: &livekit.SessionDescription{Type: "offer", Sdp: offer.SDP}}})
	rr := lastRequestResponse(t, p)
	if rr.GetReason() != livekit.RequestResponse_INVALID_REQUEST || !strings.Contains(rr.GetMessage(), "media sections") {
		t.Fatalf("answer %v", rr)
	}
	if n := len(p.pub.GetTransceivers()); n != 0 {
		t.Fatalf("the refused offer made %d transceivers", n)
	}
}

func TestParticipantLimits(t *testing.T) {
	m := testManager(t, Config{MaxParticipants: 2, MaxTotalParticipants: 3})
	claims := func(id string) signal.Claims { return signal.Claims{Identity: id, CanSubscribe: true} }
	if _, err := joinRoom(t, m, "r1", claims("a")); err != nil {
		t.Fatal(err)
	}
	b, err := joinRoom(t, m, "r1", claims("b"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := joinRoom(t, m, "r1", claims("c")); !errors.Is(err, errRoomFull) {
		t.Fatalf("a third participant in a room of two: %v", err)
	}
	// The same identity again replaces its participant: not a new one.
	if _, err := joinRoom(t, m, "r1", claims("b")); err != nil {
		t.Fatalf("a reconnecting identity in a full room: %v", err)
	}
	if _, err := joinRoom(t, m, "r2", claims("d")); err != nil {
		t.Fatal(err)
	}
	if _, err := joinRoom(t, m, "r2", claims("e")); !errors.Is(err, errServerFull) {
		t.Fatalf("a fourth participant on a server of three: %v", err)
	}
	// Leaving frees the place.
	b.room.leave(m.existingRoom("r1").byIdentityFor("b"), livekit.DisconnectReason_CLIENT_INITIATED, false)
	if _, err := joinRoom(t, m, "r2", claims("e")); err != nil {
		t.Fatalf("after a leave: %v", err)
	}
	if n := m.participants.Load(); n != 3 {
		t.Fatalf("%d participants counted, want 3", n)
	}
}

func (r *Room) byIdentityFor(id string) *Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byIdentity[id]
}

func TestRoomCreateGrant(t *testing.T) {
	m := testManager(t, Config{RequireRoomCreate: true})
	if _, err := m.room("r", false); !errors.Is(err, errNoRoom) {
		t.Fatalf("a room without roomCreate: %v", err)
	}
	if _, err := m.room("r", true); err != nil {
		t.Fatal(err)
	}
	if _, err := m.room("r", false); err != nil {
		t.Fatalf("joining the live room without roomCreate: %v", err)
	}
}

// connectPublisher negotiates p's publisher connection with a pion
// client over loopback, trickling the server's candidates from p.early.
func connectPublisher(t *testing.T, p *Participant, client *webrtc.PeerConnection) {
	t.Helper()
	offer, err := client.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(client)
	if err := client.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	p.HandleRequest(&livekit.SignalRequest{Message: &livekit.SignalRequest_Offer{Offer: &livekit.SessionDescription{
		Type: "offer", Sdp: client.LocalDescription().SDP,
	}}})
	connected := make(chan struct{})
	client.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		if s == webrtc.ICEConnectionStateConnected {
			select {
			case <-connected:
			default:
				close(connected)
			}
		}
	})
	deadline := time.After(15 * time.Second)
	for answered := false; ; {
		for _, m := range takeEarly(p) {
			switch {
			case m.GetAnswer() != nil:
				if err := client.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.GetAnswer().GetSdp()}); err != nil {
					t.Fatal(err)
				}
				answered = true
			case m.GetTrickle() != nil && answered:
				c, err := parseCandidate(m.GetTrickle().GetCandidateInit())
				if err == nil {
					_ = client.AddICECandidate(c)
				}
			}
		}
		select {
		case <-connected:
			return
		case <-deadline:
			t.Fatal("the publisher connection did not connect")
		case <-time.After(10 * time.Millisecond): // polling p.early, which has no notification
		}
	}
}

func TestDataChannelsAreBounded(t *testing.T) {
	m := testManager(t, Config{})
	p, err := joinRoom(t, m, "r", signal.Claims{Identity: "a", CanPublish: true, CanPublishData: true})
	if err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	client, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	const n = 3 * maxDataChannels
	closed := make(chan string, n)
	for i := 0; i < n; i++ {
		dc, err := client.CreateDataChannel(fmt.Sprintf("ch%d", i), nil)
		if err != nil {
			t.Fatal(err)
		}
		dc.OnClose(func() { closed <- dc.Label() })
	}
	connectPublisher(t, p, client)
	deadline := time.After(15 * time.Second)
	for got := 0; got < n-maxDataChannels; got++ {
		select {
		case <-closed:
		case <-deadline:
			t.Fatalf("%d of the %d channels over the limit closed", got, n-maxDataChannels)
		}
	}
	p.mu.Lock()
	count := p.dataChannels
	p.mu.Unlock()
	if count != n {
		t.Fatalf("%d channels seen, want %d", count, n)
	}
}
