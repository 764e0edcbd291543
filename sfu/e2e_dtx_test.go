package sfu_test

import (
	"bytes"
	"context"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/plexus-chat/plexus/sfu"
	"github.com/plexus-chat/plexus/sfu/internal/sfutest"
)

// dtxTalk and dtxSilent are one cycle of an Opus encoder with DTX: 25
// frames of 20 ms while someone talks, then 5 silence frames 400 ms
// apart, each followed by a gap in the timestamps (RFC 7587 section
// 3.1.3, discontinuous transmission).
const (
	dtxTalk   = 25
	dtxSilent = 5
)

// dtxDuration is how far packet i's timestamp is from the next one's.
func dtxDuration(i int) time.Duration {
	if i%(dtxTalk+dtxSilent) < dtxTalk {
		return 20 * time.Millisecond
	}
	return 400 * time.Millisecond
}

// dtxPayload is packet i: a speech frame of 80 bytes or a 3-byte silence
// frame, after fillFrame's number (never decoded by anyone).
func dtxPayload(i int) []byte {
	n := 3
	if i%(dtxTalk+dtxSilent) < dtxTalk {
		n = 80
	}
	b := make([]byte, 4+n)
	fillFrame(b, i)
	return b
}

// dtxProvider writes dtxPayload(i) with dtxDuration(i) for lksdk, which
// paces its writes by the durations.
type dtxProvider struct {
	i    int
	stop chan struct{}
}

func (p *dtxProvider) NextSample(context.Context) (media.Sample, error) {
	select {
	case <-p.stop:
		return media.Sample{}, io.EOF
	default:
	}
	s := media.Sample{Data: dtxPayload(p.i), Duration: dtxDuration(p.i)}
	p.i++
	return s, nil
}

func (p *dtxProvider) OnBind() error   { return nil }
func (p *dtxProvider) OnUnbind() error { return nil }
func (p *dtxProvider) Close() error    { return nil }

// sentTimestamps records the RTP timestamp of each packet a client
// sends, by the number dtxPayload put in it.
type sentTimestamps struct {
	mu sync.Mutex // guards ts
	ts map[int]uint32
}

func (s *sentTimestamps) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &sentTimestampsInterceptor{s: s}, nil
}

// step is the timestamp distance alice put between packets j and k.
func (s *sentTimestamps) step(j, k int) (uint32, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok1 := s.ts[j]
	b, ok2 := s.ts[k]
	return b - a, ok1 && ok2
}

type sentTimestampsInterceptor struct {
	interceptor.NoOp
	s *sentTimestamps
}

func (i *sentTimestampsInterceptor) BindLocalStream(_ *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		if n, ok := frameNumber(payload); ok {
			i.s.mu.Lock()
			i.s.ts[n] = h.Timestamp
			i.s.mu.Unlock()
		}
		return w.Write(h, payload, a)
	})
}

// TestOpusDTX: an Opus track whose encoder stops for 400 ms at a time
// (DTX) reaches a subscriber with every payload as sent, sequence
// numbers without a hole, and timestamps that keep each gap: the SFU
// must neither fill the silence nor close the gaps, or the receiver's
// jitter buffer would play the comfort noise at the wrong time.
func TestOpusDTX(t *testing.T) {
	h := newHarness(t, sfu.Config{}, sfu.Deps{})
	// The timestamps alice puts on the wire, by packet number: lksdk
	// derives them from its writer's clock, which may stretch a gap.
	sent := &sentTimestamps{ts: map[int]uint32{}}
	alice, err := dial(t, h.url, "dtx", "alice", dialOpts{connOpts: withInterceptors(sent)})
	if err != nil {
		t.Fatal(err)
	}
	track, err := lksdk.NewLocalSampleTrack(webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1;usedtx=1",
	})
	if err != nil {
		t.Fatal(err)
	}
	prov := &dtxProvider{stop: make(chan struct{})}
	done := make(chan struct{})
	if err := track.StartWrite(prov, func() { close(done) }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		close(prov.stop)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	})
	if _, err := alice.room.LocalParticipant.PublishTrack(track, &lksdk.TrackPublicationOptions{
		Name: "mic", Source: livekit.TrackSource_MICROPHONE,
	}); err != nil {
		t.Fatal(err)
	}

	var (
		mu      sync.Mutex // guards pkts
		pkts    []*rtp.Packet
		readers sync.WaitGroup
		silent  atomic.Int64 // silence frames received
	)
	cb := lksdk.NewRoomCallback()
	cb.OnTrackSubscribed = func(tr *webrtc.TrackRemote, _ *lksdk.RemoteTrackPublication, _ *lksdk.RemoteParticipant) {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				pkt, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				if len(pkt.Payload) == 4+3 {
					silent.Add(1)
				}
				mu.Lock()
				pkts = append(pkts, pkt)
				mu.Unlock()
			}
		}()
	}
	tok, err := sfutest.Token(testAPIKey, testAPISecret, "dtx", "bob", nil)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := lksdk.ConnectToRoomWithToken(h.url, tok, cb,
		lksdk.WithAutoSubscribe(true), lksdk.WithLogger(lkLogger()), lksdk.WithConnectTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// Two silences and the talk between them.
	sfutest.Await(t, 20*time.Second, "bob receives two silences", func() bool { return silent.Load() >= 2*dtxSilent })
	bob.Disconnect()
	readers.Wait()

	mu.Lock()
	defer mu.Unlock()
	var gaps, checked int
	for k, pkt := range pkts {
		i, ok := frameNumber(pkt.Payload)
		if !ok || !bytes.Equal(pkt.Payload, dtxPayload(i)) {
			t.Fatalf("packet %d (seq %d): payload %x is not one alice sent", k, pkt.SequenceNumber, pkt.Payload)
		}
		if k == 0 {
			continue
		}
		prev := pkts[k-1]
		j, _ := frameNumber(prev.Payload)
		if i != j+1 {
			t.Errorf("packet %d follows %d: alice's packets in between are missing", i, j)
			continue
		}
		if pkt.SequenceNumber != prev.SequenceNumber+1 {
			t.Errorf("packet %d: sequence number %d after %d", i, pkt.SequenceNumber, prev.SequenceNumber)
		}
		want, ok := sent.step(j, i)
		if !ok {
			t.Fatalf("packet %d or %d was not seen leaving alice", j, i)
		}
		if got := pkt.Timestamp - prev.Timestamp; got != want {
			t.Errorf("packet %d: timestamp %d after %d, a step of %d; alice's step was %d", i, pkt.Timestamp, prev.Timestamp, got, want)
		}
		if dtxDuration(j) > 20*time.Millisecond {
			if want < uint32(0.4*48000) {
				t.Errorf("packet %d: alice's step %d after a silence frame is no DTX gap", i, want)
			}
			gaps++
		}
		checked++
	}
	if gaps < 2*dtxSilent-1 {
		t.Errorf("%d DTX gaps seen in %d packets, want at least %d", gaps, checked, 2*dtxSilent-1)
	}
	t.Logf("%d packets, %d steps checked, %d of them DTX gaps", len(pkts), checked, gaps)
}
