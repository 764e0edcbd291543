package sfu

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/webrtc/v4"
	pmedia "github.com/pion/webrtc/v4/pkg/media"
	"github.com/prometheus/client_golang/prometheus"
)

const (
	testKey    = "plexus-test-key"
	testSecret = "plexus-test-secret-that-is-long-enough-0123456789"
)

// env is one Server on 127.0.0.1 behind an httptest server, mounted as
// cmd/plexus mounts it.
type env struct {
	srv *Server
	url string // ws://…/livekit/sfu
	hs  *httptest.Server
}

func testLog() *slog.Logger {
	if os.Getenv("PLEXUS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func newEnv(t *testing.T, cfg Config, deps Deps) *env {
	t.Helper()
	cfg.APIKey, cfg.APISecret = testKey, testSecret
	cfg.ListenIP = "127.0.0.1"
	if deps.Logger == nil {
		deps.Logger = testLog()
	}
	srv, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/livekit/sfu/", http.StripPrefix("/livekit/sfu", srv.Handler()))
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		for i := 0; i < 2; i++ { // Close is idempotent
			if err := srv.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
		hs.Close()
	})
	return &env{srv: srv, hs: hs, url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/livekit/sfu"}
}

func token(t *testing.T, secret, room, identity string, grant auth.VideoGrant) string {
	t.Helper()
	grant.RoomJoin, grant.Room = true, room
	at := auth.NewAccessToken(testKey, secret).SetIdentity(identity).SetName(identity).SetVideoGrant(&grant).SetValidFor(time.Hour)
	s, err := at.ToJWT()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func fullGrant() auth.VideoGrant {
	yes := true
	return auth.VideoGrant{CanPublish: &yes, CanSubscribe: &yes, CanPublishData: &yes}
}

// await polls cond until it holds or the deadline passes.
func await(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// client is one lksdk participant with what it observed.
type client struct {
	room         *lksdk.Room
	rtp          atomic.Int64
	mu           sync.Mutex
	data         []string // topic + ":" + payload
	disconnected map[string]bool
	muted        map[string]bool
}

func (e *env) connect(t *testing.T, room, identity string, grant auth.VideoGrant) *client {
	t.Helper()
	c := &client{disconnected: map[string]bool{}, muted: map[string]bool{}}
	cb := &lksdk.RoomCallback{
		OnParticipantDisconnected: func(rp *lksdk.RemoteParticipant) {
			c.mu.Lock()
			c.disconnected[rp.Identity()] = true
			c.mu.Unlock()
		},
		ParticipantCallback: lksdk.ParticipantCallback{
			OnTrackSubscribed: func(track *webrtc.TrackRemote, _ *lksdk.RemoteTrackPublication, _ *lksdk.RemoteParticipant) {
				go func() {
					for {
						if _, _, err := track.ReadRTP(); err != nil {
							return
						}
						c.rtp.Add(1)
					}
				}()
			},
			OnTrackMuted: func(pub lksdk.TrackPublication, rp lksdk.Participant) {
				c.mu.Lock()
				c.muted[rp.Identity()] = true
				c.mu.Unlock()
			},
			OnDataReceived: func(b []byte, p lksdk.DataReceiveParams) {
				c.mu.Lock()
				c.data = append(c.data, p.SenderIdentity+"/"+p.Topic+":"+string(b))
				c.mu.Unlock()
			},
		},
	}
	r, err := lksdk.ConnectToRoomWithToken(e.url, token(t, testSecret, room, identity, grant), cb, lksdk.WithAutoSubscribe(true))
	if err != nil {
		t.Fatalf("%s connect: %v", identity, err)
	}
	c.room = r
	t.Cleanup(r.Disconnect)
	return c
}

func (c *client) has(f func(*client) bool) func() bool {
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return f(c)
	}
}

// publishAudio publishes an Opus track fed with silent frames until the
// test ends.
func publishAudio(t *testing.T, c *client) *lksdk.LocalTrackPublication {
	t.Helper()
	track, err := lksdk.NewLocalSampleTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := c.room.LocalParticipant.PublishTrack(track, &lksdk.TrackPublicationOptions{Name: "mic"})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond) // pacing a real-time source
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				_ = track.WriteSample(pmedia.Sample{Data: []byte{0xf8, 0xff, 0xfe}, Duration: 20 * time.Millisecond}, nil)
			}
		}
	}()
	return pub
}

func TestJoinPublishSubscribeDataLeave(t *testing.T) {
	e := newEnv(t, Config{}, Deps{})
	alice := e.connect(t, "r1", "alice", fullGrant())
	bob := e.connect(t, "r1", "bob", fullGrant())
	await(t, 10*time.Second, "bob sees alice", func() bool { return bob.room.GetParticipantByIdentity("alice") != nil })

	pub := publishAudio(t, alice)
	await(t, 15*time.Second, "bob receives alice's audio", func() bool { return bob.rtp.Load() > 20 })

	if err := alice.room.LocalParticipant.PublishDataPacket(lksdk.UserData([]byte("hello")), lksdk.WithDataPublishTopic("t")); err != nil {
		t.Fatal(err)
	}
	await(t, 10*time.Second, "bob gets the data packet", bob.has(func(c *client) bool {
		return len(c.data) == 1 && c.data[0] == "alice/t:hello"
	}))

	pub.SetMuted(true)
	await(t, 10*time.Second, "bob sees the mute", bob.has(func(c *client) bool { return c.muted["alice"] }))

	st := e.srv.Stats()
	if st.Rooms != 1 || st.Participants != 2 || st.Tracks != 1 || st.ForwardedPackets == 0 {
		t.Errorf("stats = %+v", st)
	}
	if rs := e.srv.Rooms(); len(rs) != 1 || rs[0].Name != "r1" || len(rs[0].Participants) != 2 {
		t.Errorf("rooms = %+v", rs)
	}

	alice.room.Disconnect()
	await(t, 10*time.Second, "bob sees alice leave", bob.has(func(c *client) bool { return c.disconnected["alice"] }))
}

func TestForgedTokenRefused(t *testing.T) {
	e := newEnv(t, Config{}, Deps{})
	forged := token(t, "not-the-secret-not-the-secret-not-the-secret", "r1", "mallory", fullGrant())
	good := token(t, testSecret, "r1", "alice", fullGrant())
	for _, tc := range []struct {
		name, path, tok string
		want            int
	}{
		{"validate forged", "/rtc/validate", forged, http.StatusUnauthorized},
		{"validate good", "/rtc/validate", good, http.StatusOK},
		{"rtc forged", "/rtc", forged, http.StatusUnauthorized},
		{"validate missing", "/rtc/validate", "", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", e.hs.URL+"/livekit/sfu"+tc.path+"?access_token="+tc.tok, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tc.want)
			}
			if tc.want == http.StatusOK && string(body) != "success" {
				t.Fatalf("body %q", body)
			}
		})
	}
	_, err := lksdk.ConnectToRoomWithToken(e.url, forged, &lksdk.RoomCallback{})
	if err == nil || !strings.Contains(err.Error(), "unauthorized") {
		t.Fatalf("lksdk with a forged token: err = %v", err)
	}
}

func TestSilentClientIsDropped(t *testing.T) {
	e := newEnv(t, Config{PingInterval: 50 * time.Millisecond, PingTimeout: 300 * time.Millisecond, ReconnectGrace: 100 * time.Millisecond}, Deps{})
	// A raw client that reads its JoinResponse and then nothing: it never
	// answers the server's WebSocket pings (gorilla answers them only
	// while reading) and sends no pings of its own.
	_, join := e.raw(t, "r1", "silent")
	if join.GetPingTimeout() != 0 { // whole seconds in the protocol
		t.Fatalf("ping timeout %d", join.GetPingTimeout())
	}
	await(t, 10*time.Second, "the silent participant is gone", func() bool { return e.srv.Stats().Participants == 0 })
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, Config{}, Deps{Metrics: reg})
	e.connect(t, "r1", "alice", fullGrant())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			got[mf.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	if got["plexus_sfu_participants"] != 1 || got["plexus_sfu_rooms"] != 1 {
		t.Fatalf("metrics %v", got)
	}
	if _, ok := got["plexus_sfu_forwarded_packets"]; !ok {
		t.Fatalf("no forwarded packets metric in %v", got)
	}
}

// TestLeaveLeavesNoGoroutines joins, publishes, subscribes and leaves a
// few times: once everyone has left and the room closed, the process is
// back to the goroutines it had after the first such round (which starts
// what lives for the process: pion's and lksdk's shared workers).
func TestLeaveLeavesNoGoroutines(t *testing.T) {
	// lksdk's Disconnect does not always get its LeaveRequest out before
	// closing the socket; such a participant is removed after the
	// reconnect grace.
	e := newEnv(t, Config{EmptyTimeout: 100 * time.Millisecond, ReconnectGrace: 100 * time.Millisecond}, Deps{})
	round := func() {
		alice := e.connect(t, "r1", "alice", fullGrant())
		bob := e.connect(t, "r1", "bob", fullGrant())
		track, err := lksdk.NewLocalSampleTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := alice.room.LocalParticipant.PublishTrack(track, &lksdk.TrackPublicationOptions{Name: "mic"}); err != nil {
			t.Fatal(err)
		}
		await(t, 15*time.Second, "bob receives alice's audio", func() bool {
			_ = track.WriteSample(pmedia.Sample{Data: []byte{0xf8, 0xff, 0xfe}, Duration: 20 * time.Millisecond}, nil)
			return bob.rtp.Load() > 5
		})
		if err := alice.room.LocalParticipant.PublishDataPacket(lksdk.UserData([]byte("x")), lksdk.WithDataPublishTopic("t")); err != nil {
			t.Fatal(err)
		}
		await(t, 10*time.Second, "bob gets the data", bob.has(func(c *client) bool { return len(c.data) > 0 }))
		alice.room.Disconnect()
		bob.room.Disconnect()
		await(t, 10*time.Second, "the room closes", func() bool { return len(e.srv.Rooms()) == 0 })

	}
	round()
	settled := func() int {
		n := runtime.NumGoroutine()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond) // sampling until the count stops falling
			m := runtime.NumGoroutine()
			if m >= n {
				return m
			}
			n = m
		}
		return n
	}
	base := settled()
	for i := 0; i < 3; i++ {
		round()
	}
	deadline := time.Now().Add(15 * time.Second)
	for runtime.NumGoroutine() > base+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after three more rounds, %d after the first:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
