package sfutest

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

// PublisherOptions says what a Publisher sends.
type PublisherOptions struct {
	Audio bool // the Opus clip as a microphone track
	Video bool // the VP8 clip as a three-layer simulcast camera track
	// Ledger, if set, gets every packet's send time (for latency).
	Ledger *Ledger
	Logger *slog.Logger
}

// Publisher sends the fixtures over an lksdk room's local participant in
// real time, looping the clip, and answers PLI/FIR for a simulcast layer
// by sending that layer's next frame from the all-key-frame file, as an
// encoder would. Muted publications send nothing, as a muted client's.
type Publisher struct {
	fx     *Fixtures
	ledger *Ledger
	log    *slog.Logger

	// AudioPub and VideoPub are the publications (nil if not sent).
	AudioPub, VideoPub *lksdk.LocalTrackPublication

	audio *lksdk.LocalTrack
	video [3]*lksdk.LocalTrack

	keyWanted   [3]atomic.Bool  // a key frame request is pending for the layer
	keyRequests [3]atomic.Int64 // PLI/FIR received per layer
	keysSent    [3]atomic.Int64 // key frames sent in answer
	packets     atomic.Int64    // RTP packets written (all tracks)

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// Publish publishes the tracks opts asks for on room and starts sending.
func Publish(room *lksdk.Room, fx *Fixtures, opts PublisherOptions) (*Publisher, error) {
	p := &Publisher{fx: fx, ledger: opts.Ledger, log: opts.Logger, stop: make(chan struct{})}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	lp := room.LocalParticipant
	if opts.Audio {
		t, err := lksdk.NewLocalTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2})
		if err != nil {
			return nil, fmt.Errorf("sfutest: audio track: %w", err)
		}
		pub, err := lp.PublishTrack(t, &lksdk.TrackPublicationOptions{Name: "mic", Source: livekit.TrackSource_MICROPHONE})
		if err != nil {
			return nil, fmt.Errorf("sfutest: publish audio: %w", err)
		}
		p.audio, p.AudioPub = t, pub
	}
	if opts.Video {
		quality := [3]livekit.VideoQuality{livekit.VideoQuality_LOW, livekit.VideoQuality_MEDIUM, livekit.VideoQuality_HIGH}
		bitrate := [3]uint32{150_000, 500_000, 1_500_000}
		tracks := make([]*lksdk.LocalTrack, 0, 3)
		simulcastID := fmt.Sprintf("sim-%p", p)
		for i, clip := range fx.Video {
			layer := i
			var t *lksdk.LocalTrack
			t, err := lksdk.NewLocalTrack(
				webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
				lksdk.WithSimulcast(simulcastID, &livekit.VideoLayer{
					Quality: quality[i], Width: uint32(clip.Width), Height: uint32(clip.Height), Bitrate: bitrate[i],
				}),
				lksdk.WithRTCPHandler(func(pkt rtcp.Packet) { p.onRTCP(layer, pkt) }),
			)
			if err != nil {
				return nil, fmt.Errorf("sfutest: video layer %d: %w", i, err)
			}
			p.video[i] = t
			tracks = append(tracks, t)
		}
		pub, err := lp.PublishSimulcastTrack(tracks, &lksdk.TrackPublicationOptions{
			Name: "camera", Source: livekit.TrackSource_CAMERA,
			VideoWidth: fx.Video[2].Width, VideoHeight: fx.Video[2].Height,
		})
		if err != nil {
			return nil, fmt.Errorf("sfutest: publish video: %w", err)
		}
		p.VideoPub = pub
	}
	if p.audio != nil {
		p.wg.Add(1)
		go p.sendAudio()
	}
	if p.VideoPub != nil {
		p.wg.Add(1)
		go p.sendVideo()
	}
	return p, nil
}

// AsksKeyFrame reports whether pkt is a PLI or FIR for the stream ssrc:
// what an encoder answers with a key frame.
func AsksKeyFrame(pkt rtcp.Packet, ssrc uint32) bool {
	switch pkt := pkt.(type) {
	case *rtcp.PictureLossIndication:
		return pkt.MediaSSRC == ssrc
	case *rtcp.FullIntraRequest:
		for _, e := range pkt.FIR {
			if e.SSRC == ssrc {
				return true
			}
		}
	}
	return false
}

// onRTCP runs on lksdk's RTCP reader for layer's track.
func (p *Publisher) onRTCP(layer int, pkt rtcp.Packet) {
	if AsksKeyFrame(pkt, uint32(p.video[layer].SSRC())) {
		p.keyRequests[layer].Add(1)
		p.keyWanted[layer].Store(true)
	}
}

// KeyFrameRequests is how many PLI/FIR the publisher got for layer (0 low).
func (p *Publisher) KeyFrameRequests(layer int) int64 { return p.keyRequests[layer].Load() }

// KeyFramesSent is how many key frames it sent for layer in answer.
func (p *Publisher) KeyFramesSent(layer int) int64 { return p.keysSent[layer].Load() }

// PacketsSent is the number of RTP packets written so far.
func (p *Publisher) PacketsSent() int64 { return p.packets.Load() }

// Close stops sending (idempotent, waits for the senders); the room stays.
func (p *Publisher) Close() {
	p.closeOnce.Do(func() { close(p.stop) })
	p.wg.Wait()
}

// pace calls send(i) for i = 0, 1, ... every d from now, on schedule (not
// drifting), until Close.
func (p *Publisher) pace(d time.Duration, send func(i int)) {
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		send(i)
		t.Reset(time.Until(start.Add(time.Duration(i+1) * d)))
	}
}

func (p *Publisher) sendAudio() {
	defer p.wg.Done()
	clip := p.fx.Audio
	pk := rtp.NewPacketizer(1200, 0, 0, &codecs.OpusPayloader{}, rtp.NewRandomSequencer(), 48000)
	samples := uint32(clip.FrameDuration.Seconds() * 48000)
	level := uint8(20) // -20 dBov: speaking (RFC 6464)
	opts := &lksdk.SampleWriteOptions{AudioLevel: &level}
	p.pace(clip.FrameDuration, func(i int) {
		if p.AudioPub.IsMuted() {
			pk.SkipSamples(samples)
			return
		}
		p.write(p.audio, false, pk.Packetize(clip.Packets[i%len(clip.Packets)], samples), opts)
	})
}

func (p *Publisher) sendVideo() {
	defer p.wg.Done()
	var pks [3]rtp.Packetizer
	for i := range pks {
		pks[i] = rtp.NewPacketizer(1200, 0, 0, &codecs.VP8Payloader{EnablePictureID: true}, rtp.NewRandomSequencer(), 90000)
	}
	d := p.fx.Video[0].FrameDuration
	samples := uint32(d.Seconds() * 90000)
	p.pace(d, func(i int) {
		muted := p.VideoPub.IsMuted()
		for l, clip := range p.fx.Video {
			if muted {
				pks[l].SkipSamples(samples)
				continue
			}
			frame := clip.Frames[i%len(clip.Frames)]
			if p.keyWanted[l].Swap(false) {
				frame = clip.Key[i%len(clip.Key)]
				p.keysSent[l].Add(1)
			}
			p.write(p.video[l], true, pks[l].Packetize(frame, samples), nil)
		}
	})
}

func (p *Publisher) write(t *lksdk.LocalTrack, vp8 bool, pkts []*rtp.Packet, opts *lksdk.SampleWriteOptions) {
	if !t.IsBound() {
		return
	}
	for _, pkt := range pkts {
		if p.ledger != nil {
			if fp, ok := p.ledger.Fingerprint(vp8, pkt.Payload); ok {
				p.ledger.Sent(fp, time.Now())
			}
		}
		if err := t.WriteRTP(pkt, opts); err != nil {
			p.log.Debug("sfutest: write RTP", "err", err)
		}
		p.packets.Add(1)
	}
}
