package rtc

import (
	"log/slog"
	"testing"

	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/proto"

	"github.com/plexus-chat/plexus/sfu/internal/signal"
)

// FuzzHandleRequest feeds decoded signalling requests to a real
// participant (real peer connections on loopback): whatever a client
// sends must not panic the server.
func FuzzHandleRequest(f *testing.F) {
	for _, req := range []*livekit.SignalRequest{
		{Message: &livekit.SignalRequest_Offer{Offer: &livekit.SessionDescription{Type: "offer", Sdp: "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"}}},
		{Message: &livekit.SignalRequest_Answer{Answer: &livekit.SessionDescription{Type: "answer", Sdp: "v=0"}}},
		{Message: &livekit.SignalRequest_Trickle{Trickle: &livekit.TrickleRequest{CandidateInit: `{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0"}`}}},
		{Message: &livekit.SignalRequest_AddTrack{AddTrack: &livekit.AddTrackRequest{Cid: "c", Type: livekit.TrackType_VIDEO,
			Layers: []*livekit.VideoLayer{{Quality: livekit.VideoQuality_HIGH}, {Quality: 7}}}}},
		{Message: &livekit.SignalRequest_Mute{Mute: &livekit.MuteTrackRequest{Sid: "TR_x", Muted: true}}},
		{Message: &livekit.SignalRequest_Subscription{Subscription: &livekit.UpdateSubscription{TrackSids: []string{"TR_x"}, Subscribe: true}}},
		{Message: &livekit.SignalRequest_TrackSetting{TrackSetting: &livekit.UpdateTrackSettings{TrackSids: []string{"TR_x"}, Width: 1}}},
		{Message: &livekit.SignalRequest_SyncState{SyncState: &livekit.SyncState{}}},
		{Message: &livekit.SignalRequest_PingReq{PingReq: &livekit.Ping{Timestamp: 1}}},
	} {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	log := slog.New(slog.DiscardHandler)
	eng, err := NewEngine(EngineConfig{ListenIP: "127.0.0.1", TCPPort: -1, IncludeLoopback: true, Logger: log})
	if err != nil {
		f.Fatal(err)
	}
	m := NewManager(Config{Engine: eng, Logger: log})
	f.Cleanup(func() {
		m.Close()
		_ = eng.Close()
	})
	r, err := m.room("fuzz", true)
	if err != nil {
		f.Fatal(err)
	}
	p, err := newParticipant(r, &signal.Claims{Identity: "fuzzer", Room: "fuzz", CanPublish: true, CanSubscribe: true, CanPublishData: true}, signal.Params{AutoSubscribe: true})
	if err != nil {
		f.Fatal(err)
	}
	if _, ok, err := r.join(p); !ok || err != nil {
		f.Fatal("join refused")
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req := &livekit.SignalRequest{}
		if proto.Unmarshal(b, req) != nil || req.Message == nil {
			return
		}
		p.HandleRequest(req)
	})
}
