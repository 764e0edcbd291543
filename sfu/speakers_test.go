package sfu

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/webrtc/v4"
	pmedia "github.com/pion/webrtc/v4/pkg/media"
)

// observer is an lksdk participant that records the active speakers and
// connection quality it is told of.
type observer struct {
	room *lksdk.Room

	mu sync.Mutex // guards the fields below
	// speakers is the latest active-speaker list, by identity, loudest
	// first; speakerUpdates counts the callbacks.
	speakers       []string
	levels         map[string]float32
	speakerUpdates int
	quality        map[string]livekit.ConnectionQuality
}

func (e *env) observe(t *testing.T, room, identity string) *observer {
	t.Helper()
	o := &observer{levels: map[string]float32{}, quality: map[string]livekit.ConnectionQuality{}}
	cb := &lksdk.RoomCallback{
		OnActiveSpeakersChanged: func(ps []lksdk.Participant) {
			o.mu.Lock()
			defer o.mu.Unlock()
			o.speakers = o.speakers[:0]
			for _, p := range ps {
				o.speakers = append(o.speakers, p.Identity())
				o.levels[p.Identity()] = p.AudioLevel()
			}
			o.speakerUpdates++
		},
		ParticipantCallback: lksdk.ParticipantCallback{
			OnConnectionQualityChanged: func(u *livekit.ConnectionQualityInfo, p lksdk.Participant) {
				o.mu.Lock()
				o.quality[p.Identity()] = u.GetQuality()
				o.mu.Unlock()
			},
		},
	}
	r, err := lksdk.ConnectToRoomWithToken(e.url, token(t, testSecret, room, identity, fullGrant()), cb, lksdk.WithAutoSubscribe(true))
	if err != nil {
		t.Fatalf("%s connect: %v", identity, err)
	}
	o.room = r
	t.Cleanup(r.Disconnect)
	return o
}

func (o *observer) check(f func(o *observer) bool) func() bool {
	return func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return f(o)
	}
}

// publishSpeech publishes an Opus track whose packets carry the RFC 6464
// audio level in *level (-dBov: 0 loudest, 127 silence), written by
// lksdk's LocalTrack into the header extension the SFU negotiated.
func publishSpeech(t *testing.T, c *client, level *atomic.Uint32) {
	t.Helper()
	track, err := lksdk.NewLocalSampleTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.room.LocalParticipant.PublishTrack(track, &lksdk.TrackPublicationOptions{Name: "mic"}); err != nil {
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
				l := uint8(level.Load())
				_ = track.WriteSample(pmedia.Sample{Data: []byte{0xf8, 0xff, 0xfe}, Duration: 20 * time.Millisecond},
					&lksdk.SampleWriteOptions{AudioLevel: &l})
			}
		}
	}()
}

// TestActiveSpeakersAndQuality: a participant whose packets carry a voice
// level becomes an active speaker for the others (SpeakersChanged) and
// stops being one when its level drops to silence; everyone gets
// connection quality updates.
func TestActiveSpeakersAndQuality(t *testing.T) {
	e := newEnv(t, Config{}, Deps{})
	var level atomic.Uint32
	level.Store(127) // silent at first
	alice := e.connect(t, "r1", "alice", fullGrant())
	bob := e.observe(t, "r1", "bob")
	publishSpeech(t, alice, &level)
	await(t, 15*time.Second, "alice's track is live", func() bool { return e.srv.Stats().DownTracks > 0 })
	bob.mu.Lock()
	for _, s := range bob.speakers {
		if s == "alice" {
			t.Errorf("alice is an active speaker while silent")
		}
	}
	bob.mu.Unlock()

	level.Store(20) // -20 dBov: voice
	await(t, 10*time.Second, "bob sees alice speaking", bob.check(func(o *observer) bool {
		return len(o.speakers) == 1 && o.speakers[0] == "alice"
	}))
	bob.mu.Lock()
	// Linear level of -20 dBov is 0.1.
	if l := bob.levels["alice"]; l < 0.05 || l > 0.2 {
		t.Errorf("alice's level %v, want about 0.1", l)
	}
	bob.mu.Unlock()

	level.Store(127)
	await(t, 10*time.Second, "alice stops being an active speaker", bob.check(func(o *observer) bool {
		return len(o.speakers) == 0
	}))

	// The room's loop reports quality every 5 s; loopback is excellent.
	await(t, 15*time.Second, "bob gets alice's and his own connection quality", bob.check(func(o *observer) bool {
		return o.quality["alice"] == livekit.ConnectionQuality_EXCELLENT && o.quality["bob"] == livekit.ConnectionQuality_EXCELLENT
	}))
}
