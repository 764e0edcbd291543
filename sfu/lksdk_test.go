package sfu_test

// End-to-end tests of the SFU with LiveKit's own Go SDK (lksdk) as the
// clients and real encoded media (sfu/testdata: VP8 simulcast, Opus): what
// a LiveKit client sees of Plexus's SFU. The harness here (a server on
// loopback behind httptest, clients that record what they receive) is
// shared with world_test.go and bench_test.go.

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	protoLogger "github.com/livekit/protocol/logger"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/plexus-chat/plexus/sfu"
	"github.com/plexus-chat/plexus/sfu/internal/sfutest"
)

const (
	testAPIKey    = "plexus-test-key"
	testAPISecret = "plexus-test-secret-of-a-decent-length"
)

// testLogger is the server's logger in tests: warnings and errors to
// stderr (so a failing run shows the SFU's view), or everything with
// PLEXUS_SFU_DEBUG=1.
func testLogger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("PLEXUS_SFU_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// lkLogger is lksdk's logger: silent unless PLEXUS_SFU_DEBUG is set (its
// default logs every connection step at info).
func lkLogger() protoLogger.Logger {
	if os.Getenv("PLEXUS_SFU_DEBUG") != "" {
		return protoLogger.GetLogger()
	}
	// A zap logger that takes nothing below panic, rather than the
	// discard logger: pion's log calls reach a zap logger through an
	// adapter that checks the level first, while for any other logger
	// it formats every trace line (7 % of the client's CPU in the
	// world-state benchmark, formatting SCTP chunks nobody reads).
	l, err := protoLogger.NewZapLogger(&protoLogger.Config{Level: "panic"})
	if err != nil {
		return protoLogger.GetDiscardLogger()
	}
	return l
}

var (
	fixturesOnce sync.Once
	fixtures     *sfutest.Fixtures
	fixturesErr  error
)

func loadFixtures(tb testing.TB) *sfutest.Fixtures {
	tb.Helper()
	fixturesOnce.Do(func() { fixtures, fixturesErr = sfutest.Load("testdata") })
	if fixturesErr != nil {
		tb.Fatal(fixturesErr)
	}
	return fixtures
}

// harness is one SFU on 127.0.0.1 (ephemeral UDP and TCP ports, loopback
// candidates) mounted under /livekit/sfu as cmd/plexus mounts it.
type harness struct {
	tb  testing.TB
	srv *sfu.Server
	url string // ws://127.0.0.1:port/livekit/sfu, what lksdk is given
	fx  *sfutest.Fixtures
}

func newHarness(tb testing.TB, cfg sfu.Config, deps sfu.Deps) *harness {
	tb.Helper()
	cfg.APIKey, cfg.APISecret = testAPIKey, testAPISecret
	cfg.ListenIP = "127.0.0.1"
	cfg.IncludeLoopback = true
	if deps.Logger == nil {
		deps.Logger = testLogger()
	}
	srv, err := sfu.New(cfg, deps)
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/livekit/sfu/", http.StripPrefix("/livekit/sfu", srv.Handler()))
	hs := httptest.NewServer(mux)
	tb.Cleanup(func() {
		if err := srv.Close(); err != nil {
			tb.Errorf("sfu Close: %v", err)
		}
		hs.Close()
	})
	return &harness{tb: tb, srv: srv, url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/livekit/sfu", fx: loadFixtures(tb)}
}

// received is one data packet as a client got it.
type received struct {
	from, topic string
	payload     []byte
}

// client is an lksdk participant that reads every track it is subscribed
// to and records the events the tests look for.
type client struct {
	identity string
	room     *lksdk.Room

	// mu guards the fields below.
	mu           sync.Mutex
	readers      map[string]*sfutest.TrackReader // "identity/kind" -> latest reader
	pubs         map[string]*lksdk.RemoteTrackPublication
	muted        map[string]bool // track sid -> muted, from OnTrackMuted/OnTrackUnmuted
	gone         map[string]bool // identities seen disconnecting
	data         []received
	reconnected  int
	disconnected bool
}

// connect joins room as identity, auto-subscribing; ledger (may be nil)
// is where subscribed tracks look up send times.
func (h *harness) connect(room, identity string, ledger *sfutest.Ledger) *client {
	h.tb.Helper()
	c, err := dial(h.tb, h.url, room, identity, dialOpts{ledgers: func(string) *sfutest.Ledger { return ledger }})
	if err != nil {
		h.tb.Fatal(err)
	}
	return c
}

// dialOpts adjusts a client.
type dialOpts struct {
	// ledgers gives the ledger a publisher's tracks look send times up
	// in (nil or returning nil: none).
	ledgers func(publisher string) *sfutest.Ledger
	// onData, if set, gets user data packets instead of the client
	// keeping them (a benchmark's thousands a second).
	onData func(from, topic string, payload []byte)
	// connOpts are added to lksdk's connect options (interceptors).
	connOpts []lksdk.ConnectOption
}

// lksdkLogOnce sets lksdk's global logger, which its pion stacks log
// through whatever a room's own logger is.
var lksdkLogOnce sync.Once

// dial joins room at url as identity.
func dial(tb testing.TB, url, room, identity string, opts dialOpts) (*client, error) {
	lksdkLogOnce.Do(func() { lksdk.SetLogger(lkLogger()) })
	ledgers := opts.ledgers
	if ledgers == nil {
		ledgers = func(string) *sfutest.Ledger { return nil }
	}
	c := &client{
		identity: identity,
		readers:  map[string]*sfutest.TrackReader{},
		pubs:     map[string]*lksdk.RemoteTrackPublication{},
		muted:    map[string]bool{},
		gone:     map[string]bool{},
	}
	cb := lksdk.NewRoomCallback()
	cb.OnTrackSubscribed = func(track *webrtc.TrackRemote, pub *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
		r := sfutest.ReadTrack(track, ledgers(rp.Identity()))
		key := rp.Identity() + "/" + string(pub.Kind())
		c.mu.Lock()
		c.readers[key], c.pubs[key] = r, pub
		c.mu.Unlock()
	}
	cb.OnTrackMuted = func(pub lksdk.TrackPublication, _ lksdk.Participant) {
		c.mu.Lock()
		c.muted[pub.SID()] = true
		c.mu.Unlock()
	}
	cb.OnTrackUnmuted = func(pub lksdk.TrackPublication, _ lksdk.Participant) {
		c.mu.Lock()
		c.muted[pub.SID()] = false
		c.mu.Unlock()
	}
	cb.OnParticipantDisconnected = func(rp *lksdk.RemoteParticipant) {
		c.mu.Lock()
		c.gone[rp.Identity()] = true
		c.mu.Unlock()
	}
	cb.OnDataPacket = func(p lksdk.DataPacket, params lksdk.DataReceiveParams) {
		u, ok := p.(*lksdk.UserDataPacket)
		if !ok {
			return
		}
		if opts.onData != nil {
			opts.onData(params.SenderIdentity, u.Topic, u.Payload)
			return
		}
		c.mu.Lock()
		c.data = append(c.data, received{from: params.SenderIdentity, topic: u.Topic, payload: bytes.Clone(u.Payload)})
		c.mu.Unlock()
	}
	cb.OnReconnected = func() {
		c.mu.Lock()
		c.reconnected++
		c.mu.Unlock()
	}
	cb.OnDisconnected = func() {
		c.mu.Lock()
		c.disconnected = true
		c.mu.Unlock()
	}
	tok, err := sfutest.Token(testAPIKey, testAPISecret, room, identity, nil)
	if err != nil {
		return nil, err
	}
	r, err := lksdk.ConnectToRoomWithToken(url, tok, cb, append([]lksdk.ConnectOption{
		lksdk.WithAutoSubscribe(true), lksdk.WithLogger(lkLogger()), lksdk.WithConnectTimeout(10 * time.Second)}, opts.connOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("%s joins %s: %w", identity, room, err)
	}
	c.room = r
	tb.Cleanup(r.Disconnect)
	return c, nil
}

// reader is the latest reader of identity's track of kind, nil if none.
func (c *client) reader(identity string, kind lksdk.TrackKind) *sfutest.TrackReader {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readers[identity+"/"+string(kind)]
}

// publication is identity's remote publication of kind, nil if not subscribed.
func (c *client) publication(identity string, kind lksdk.TrackKind) *lksdk.RemoteTrackPublication {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pubs[identity+"/"+string(kind)]
}

// stats is the latest reader's stats (zero if none yet).
func (c *client) stats(identity string, kind lksdk.TrackKind) sfutest.TrackStats {
	if r := c.reader(identity, kind); r != nil {
		return r.Stats()
	}
	return sfutest.TrackStats{}
}

func (c *client) isMuted(sid string) (muted, known bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	muted, known = c.muted[sid]
	return muted, known
}

func (c *client) sawLeave(identity string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gone[identity]
}

func (c *client) received() []received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]received(nil), c.data...)
}

func (c *client) wasDisconnected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.disconnected
}

func (c *client) reconnects() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reconnected
}

// hasData reports whether c got a packet on topic with payload.
func (c *client) hasData(topic, payload string) bool {
	for _, d := range c.received() {
		if d.topic == topic && string(d.payload) == payload {
			return true
		}
	}
	return false
}

// awaitMedia waits until c receives from identity: audio packets and a
// VP8 key frame (of some layer) followed by more video.
func (c *client) awaitMedia(tb testing.TB, identity string, timeout time.Duration) {
	tb.Helper()
	err := sfutest.AwaitErr(timeout, func() bool {
		a, v := c.stats(identity, lksdk.TrackKindAudio), c.stats(identity, lksdk.TrackKindVideo)
		return a.Packets >= 25 && v.KeyFrames >= 1 && v.Packets >= 30
	})
	if err != nil {
		tb.Fatalf("%s receives %s's audio and video: %v; audio %+v, video %+v", c.identity, identity, err,
			c.stats(identity, lksdk.TrackKindAudio), c.stats(identity, lksdk.TrackKindVideo))
	}
}

// awaitWidth waits until the latest VP8 key frame c received of identity's
// video is width pixels wide: the layer it is forwarded changed to that one
// (the SFU switches layers only at key frames).
func (c *client) awaitWidth(tb testing.TB, identity string, width int, timeout time.Duration) {
	tb.Helper()
	err := sfutest.AwaitErr(timeout, func() bool {
		return c.stats(identity, lksdk.TrackKindVideo).Width == width
	})
	if err != nil {
		tb.Fatalf("%s receives a key frame %d px wide: %v; video %+v", c.identity, width, err, c.stats(identity, lksdk.TrackKindVideo))
	}
}

// TestCall is one call as the issue describes it: a publisher's Opus audio
// and three-layer VP8 simulcast reach three subscribers; a subscriber asks
// for a lower layer (by quality, then by dimensions) and gets it; mute,
// data packets, a signal reconnect (a resume), a full reconnect and a
// leave behave as lksdk expects.
// The steps share one room (joining four clients is the slow part) and run
// in order; data first, since it needs no media.
func TestCall(t *testing.T) {
	h := newHarness(t, sfu.Config{}, sfu.Deps{})
	ledger := sfutest.NewLedger()
	alice := h.connect("call", "alice", nil)
	p, err := sfutest.Publish(alice.room, h.fx, sfutest.PublisherOptions{Audio: true, Video: true, Ledger: ledger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	bob := h.connect("call", "bob", ledger)
	carol := h.connect("call", "carol", ledger)
	dave := h.connect("call", "dave", ledger)
	subs := []*client{bob, carol, dave}

	t.Run("data packets with topic and destinations", func(t *testing.T) {
		lp := alice.room.LocalParticipant
		if err := lp.PublishDataPacket(lksdk.UserData([]byte("for bob")), lksdk.WithDataPublishTopic("chat"),
			lksdk.WithDataPublishReliable(true), lksdk.WithDataPublishDestination([]string{"bob"})); err != nil {
			t.Fatal(err)
		}
		if err := lp.PublishDataPacket(lksdk.UserData([]byte("for all")), lksdk.WithDataPublishTopic("chat"),
			lksdk.WithDataPublishReliable(true)); err != nil {
			t.Fatal(err)
		}
		for _, s := range subs {
			sfutest.Await(t, 5*time.Second, s.identity+" gets alice's broadcast", func() bool { return s.hasData("chat", "for all") })
		}
		// Reliable packets keep their order, so by now carol and dave
		// would have the one for bob had it been sent to them.
		if !bob.hasData("chat", "for bob") {
			t.Error("bob did not get the packet addressed to him")
		}
		for _, s := range []*client{carol, dave} {
			if s.hasData("chat", "for bob") {
				t.Errorf("%s got the packet addressed to bob", s.identity)
			}
		}
		for _, d := range bob.received() {
			if d.topic == "chat" && d.from != "alice" {
				t.Errorf("packet from %q, want alice", d.from)
			}
		}
		// Lossy too, and from a subscriber back to the publisher.
		if err := bob.room.LocalParticipant.PublishDataPacket(lksdk.UserData([]byte("lossy hello")),
			lksdk.WithDataPublishTopic("t"), lksdk.WithDataPublishReliable(false)); err != nil {
			t.Fatal(err)
		}
		sfutest.Await(t, 5*time.Second, "alice gets bob's lossy packet", func() bool { return alice.hasData("t", "lossy hello") })
	})

	// The media steps build on each other: stop at the first failure.
	step := func(name string, f func(t *testing.T)) {
		t.Helper()
		if !t.Run(name, f) {
			t.FailNow()
		}
	}
	step("audio and simulcast video reach three subscribers", func(t *testing.T) {
		for _, s := range subs {
			s.awaitMedia(t, "alice", 20*time.Second)
		}
		// Nothing limits them (no requested size, loopback bandwidth):
		// LiveKit forwards the top layer.
		for _, s := range subs {
			s.awaitWidth(t, "alice", 1280, 20*time.Second)
		}
		for _, s := range subs {
			for _, kind := range []lksdk.TrackKind{lksdk.TrackKindAudio, lksdk.TrackKindVideo} {
				st := s.stats("alice", kind)
				if st.Lost()*100 > st.Expected {
					t.Errorf("%s: %s lost %d of %d packets", s.identity, kind, st.Lost(), st.Expected)
				}
			}
			lat := s.reader("alice", lksdk.TrackKindVideo).Latencies(false)
			t.Logf("%s: video latency p50 %v p99 %v over %d packets", s.identity,
				sfutest.Percentile(lat, 50), sfutest.Percentile(lat, 99), len(lat))
			if len(lat) == 0 {
				t.Errorf("%s: no packet matched a sent one (payload altered?)", s.identity)
			}
		}
	})

	step("a subscriber asks for the low layer and gets it", func(t *testing.T) {
		pub := bob.publication("alice", lksdk.TrackKindVideo)
		if pub == nil {
			t.Fatal("bob has no video publication from alice")
		}
		if err := pub.SetVideoQuality(livekit.VideoQuality_LOW); err != nil {
			t.Fatal(err)
		}
		bob.awaitWidth(t, "alice", 320, 10*time.Second)
		// The switch needed a key frame of the low layer, which the SFU
		// asked the publisher for (the regular GOP is 2 s).
		if p.KeyFrameRequests(0) == 0 || p.KeyFramesSent(0) == 0 {
			t.Errorf("publisher got %d key frame requests for the low layer, sent %d key frames",
				p.KeyFrameRequests(0), p.KeyFramesSent(0))
		}
		// The others are unaffected: more top-layer key frames reach carol.
		k := carol.stats("alice", lksdk.TrackKindVideo).KeyFrames
		sfutest.Await(t, 10*time.Second, "carol gets another key frame", func() bool {
			return carol.stats("alice", lksdk.TrackKindVideo).KeyFrames > k
		})
		if w := carol.stats("alice", lksdk.TrackKindVideo).Width; w != 1280 {
			t.Errorf("carol's video switched to %d px with bob's request", w)
		}
	})

	step("a subscriber's video size picks the layer", func(t *testing.T) {
		pub := carol.publication("alice", lksdk.TrackKindVideo)
		if pub == nil {
			t.Fatal("carol has no video publication from alice")
		}
		pub.SetVideoDimensions(640, 360)
		carol.awaitWidth(t, "alice", 640, 10*time.Second)
		// And back up: bob asks for the top quality again.
		if err := bob.publication("alice", lksdk.TrackKindVideo).SetVideoQuality(livekit.VideoQuality_HIGH); err != nil {
			t.Fatal(err)
		}
		bob.awaitWidth(t, "alice", 1280, 10*time.Second)
	})

	step("mute", func(t *testing.T) {
		sid := p.VideoPub.SID()
		p.VideoPub.SetMuted(true)
		for _, s := range subs {
			sfutest.Await(t, 5*time.Second, s.identity+" sees alice's video muted", func() bool {
				m, ok := s.isMuted(sid)
				return ok && m
			})
		}
		before := dave.stats("alice", lksdk.TrackKindVideo)
		p.VideoPub.SetMuted(false)
		for _, s := range subs {
			sfutest.Await(t, 5*time.Second, s.identity+" sees alice's video unmuted", func() bool {
				m, ok := s.isMuted(sid)
				return ok && !m
			})
		}
		// Forwarding resumes, at a key frame.
		sfutest.Await(t, 10*time.Second, "dave's video resumes with a key frame", func() bool {
			s := dave.stats("alice", lksdk.TrackKindVideo)
			return s.KeyFrames > before.KeyFrames && s.Packets > before.Packets+30
		})
	})

	step("signal reconnect resumes", func(t *testing.T) {
		dave.room.Simulate(lksdk.SimulateSignalReconnect)
		sfutest.Await(t, 15*time.Second, "dave reconnects", func() bool { return dave.reconnects() >= 1 })
		a, v := dave.stats("alice", lksdk.TrackKindAudio), dave.stats("alice", lksdk.TrackKindVideo)
		sfutest.Await(t, 10*time.Second, "dave's media continues after the reconnect", func() bool {
			a2, v2 := dave.stats("alice", lksdk.TrackKindAudio), dave.stats("alice", lksdk.TrackKindVideo)
			return a2.Packets > a.Packets+25 && v2.Packets > v.Packets+30
		})
		if err := alice.room.LocalParticipant.PublishDataPacket(lksdk.UserData([]byte("after reconnect")),
			lksdk.WithDataPublishTopic("chat"), lksdk.WithDataPublishReliable(true)); err != nil {
			t.Fatal(err)
		}
		sfutest.Await(t, 5*time.Second, "dave gets data after the reconnect", func() bool { return dave.hasData("chat", "after reconnect") })
		if dave.sawLeave("alice") || dave.wasDisconnected() {
			t.Error("dave's reconnect was not a resume: he saw alice leave or was disconnected")
		}
	})

	step("full reconnect joins again", func(t *testing.T) {
		// A leave asking to reconnect: lksdk drops both peer
		// connections and joins again, as after a server restart.
		before := dave.reconnects()
		oldAudio, oldVideo := dave.reader("alice", lksdk.TrackKindAudio), dave.reader("alice", lksdk.TrackKindVideo)
		dave.room.Simulate(lksdk.SimulateLeaveRequestFullReconnect)
		sfutest.Await(t, 20*time.Second, "dave joins again", func() bool { return dave.reconnects() > before })
		sfutest.Await(t, 10*time.Second, "alice sees dave leave", func() bool { return alice.sawLeave("dave") })
		// New peer connections: new tracks, read from zero.
		sfutest.Await(t, 15*time.Second, "dave gets alice's media on the new connections", func() bool {
			a, v := dave.reader("alice", lksdk.TrackKindAudio), dave.reader("alice", lksdk.TrackKindVideo)
			if a == nil || v == nil || a == oldAudio || v == oldVideo {
				return false
			}
			as, vs := a.Stats(), v.Stats()
			return as.Packets > 25 && vs.Packets > 30 && vs.KeyFrames > 0
		})
		if err := alice.room.LocalParticipant.PublishDataPacket(lksdk.UserData([]byte("after full reconnect")),
			lksdk.WithDataPublishTopic("chat"), lksdk.WithDataPublishReliable(true)); err != nil {
			t.Fatal(err)
		}
		sfutest.Await(t, 5*time.Second, "dave gets data after the full reconnect", func() bool {
			return dave.hasData("chat", "after full reconnect")
		})
		if dave.wasDisconnected() {
			t.Error("lksdk gave up: dave was disconnected")
		}
	})

	step("leave", func(t *testing.T) {
		bob.room.Disconnect()
		for _, s := range []*client{alice, carol, dave} {
			sfutest.Await(t, 5*time.Second, s.identity+" sees bob leave", func() bool { return s.sawLeave("bob") })
		}
		// The others keep their media.
		v := carol.stats("alice", lksdk.TrackKindVideo)
		sfutest.Await(t, 5*time.Second, "carol's video continues", func() bool {
			return carol.stats("alice", lksdk.TrackKindVideo).Packets > v.Packets+30
		})
	})
}

// TestNACKUnderLoss drops 5 % of the video packets the SFU sends a
// subscriber, each on its first transmission only (an interceptor on the
// SFU's subscriber peer connection): the subscriber's NACKs must be
// answered from the SFU's packet cache until it has (nearly) every
// sequence number.
func TestNACKUnderLoss(t *testing.T) {
	loss := &sfutest.Loss{Every: 20}
	h := newHarness(t, sfu.Config{SubscriberInterceptors: []interceptor.Factory{loss}}, sfu.Deps{})
	alice := h.connect("lossy", "alice", nil)
	p, err := sfutest.Publish(alice.room, h.fx, sfutest.PublisherOptions{Video: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	bob := h.connect("lossy", "bob", nil)
	sfutest.Await(t, 30*time.Second, "bob receives 600 video packets", func() bool {
		return bob.stats("alice", lksdk.TrackKindVideo).Packets >= 600
	})
	r := bob.reader("alice", lksdk.TrackKindVideo)
	// Spare the newest 100 packets: their retransmissions may be on the way.
	const spare = 100
	sfutest.Await(t, 10*time.Second, "bob's gaps are filled by retransmissions", func() bool {
		s := r.Stats()
		return r.Missing(spare)*1000 <= s.Expected // under 0.1 % missing
	})
	s := r.Stats()
	nacks, seqs := loss.NACKs()
	t.Logf("dropped %d, NACKs %d for %d packets, resent %d, missing %d of %d, duplicates %d",
		loss.Dropped(), nacks, seqs, loss.Resent(), r.Missing(spare), s.Expected, s.Duplicates)
	if loss.Dropped() < 20 {
		t.Fatalf("only %d packets dropped: the loss interceptor is not on the video path", loss.Dropped())
	}
	if nacks == 0 {
		t.Error("bob sent no NACK")
	}
	if loss.Resent()*10 < loss.Dropped()*8 {
		t.Errorf("the SFU resent %d of %d dropped packets", loss.Resent(), loss.Dropped())
	}
}
