package media

import (
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// loopbackAPI is a pion API for one test peer: VP8 with NACK/PLI/FIR
// feedback, the simulcast header extensions, loopback UDP only, and exactly
// the interceptors given.
func loopbackAPI(t testing.TB, factories ...interceptor.Factory) *webrtc.API {
	t.Helper()
	m := &webrtc.MediaEngine{}
	fb := []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}}
	c := vp8Codec
	c.RTCPFeedback = fb
	if err := m.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	for _, uri := range []string{sdp.SDESMidURI, sdp.SDESRTPStreamIDURI, sdp.SDESRepairRTPStreamIDURI} {
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: uri}, webrtc.RTPCodecTypeVideo); err != nil {
			t.Fatal(err)
		}
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	reg := &interceptor.Registry{}
	for _, f := range factories {
		reg.Add(f)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(reg))
}

func newPC(t testing.TB, api *webrtc.API) *webrtc.PeerConnection {
	t.Helper()
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// connect runs one offer/answer between two peers with all candidates in
// the descriptions (no trickle).
func connect(t testing.TB, offerer, answerer *webrtc.PeerConnection) {
	t.Helper()
	gather := func(pc *webrtc.PeerConnection, d webrtc.SessionDescription) {
		g := webrtc.GatheringCompletePromise(pc)
		if err := pc.SetLocalDescription(d); err != nil {
			t.Fatal(err)
		}
		select {
		case <-g:
		case <-time.After(10 * time.Second):
			t.Fatal("ICE gathering timed out")
		}
	}
	offer, err := offerer.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gather(offerer, offer)
	if err := answerer.SetRemoteDescription(*offerer.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	answer, err := answerer.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gather(answerer, answer)
	if err := offerer.SetRemoteDescription(*answerer.LocalDescription()); err != nil {
		t.Fatal(err)
	}
}

// simulcastPublisher sends three synthetic VP8 layers and answers PLI with
// a key frame on the layer asked for. Apart from those, it sends only delta
// frames, so every key frame a subscriber sees was requested.
type simulcastPublisher struct {
	pc      *webrtc.PeerConnection
	tracks  [3]*webrtc.TrackLocalStaticRTP
	src     [3]*vp8Source
	needKey [3]atomic.Bool

	mu   sync.Mutex // guards plis
	plis [3][]time.Time

	stop chan struct{}
	wg   sync.WaitGroup
}

var rids = [3]string{"q", "h", "f"}

func newSimulcastPublisher(t *testing.T) *simulcastPublisher {
	p := &simulcastPublisher{pc: newPC(t, loopbackAPI(t)), stop: make(chan struct{})}
	for l := range p.tracks {
		tr, err := webrtc.NewTrackLocalStaticRTP(vp8Codec.RTPCodecCapability, "video", "pub", webrtc.WithRTPStreamID(rids[l]))
		if err != nil {
			t.Fatal(err)
		}
		p.tracks[l] = tr
		p.src[l] = &vp8Source{seq: uint16(7000 * (l + 1)), ts: uint32(l) << 28, pic: uint16(900 * l), tsStep: 1800, marker: byte(l)}
	}
	sender, err := p.pc.AddTrack(p.tracks[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range p.tracks[1:] {
		if err := sender.AddEncoding(tr); err != nil {
			t.Fatal(err)
		}
	}
	for l := range rids {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for {
				pkts, _, err := sender.ReadSimulcastRTCP(rids[l])
				if err != nil {
					return
				}
				for _, pkt := range pkts {
					if _, ok := pkt.(*rtcp.PictureLossIndication); ok {
						p.mu.Lock()
						p.plis[l] = append(p.plis[l], time.Now())
						p.mu.Unlock()
						p.needKey[l].Store(true)
					}
				}
			}
		}()
	}
	t.Cleanup(func() {
		close(p.stop)
		_ = p.pc.Close()
		p.wg.Wait()
	})
	return p
}

// start sends a frame on every layer every 20 ms (two packets each) with
// the mid and rid header extensions pion's simulcast receiver needs.
func (p *simulcastPublisher) start() {
	var midID, ridID uint8
	sender := p.pc.GetSenders()[0]
	for _, x := range sender.GetParameters().HeaderExtensions {
		switch x.URI {
		case sdp.SDESMidURI:
			midID = uint8(x.ID)
		case sdp.SDESRTPStreamIDURI:
			ridID = uint8(x.ID)
		}
	}
	mid := p.pc.GetTransceivers()[0].Mid()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(20 * time.Millisecond) // the frame rate, not synchronisation
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			for l := range p.tracks {
				for _, pkt := range p.src[l].packets(p.needKey[l].Swap(false), 2) {
					_ = pkt.Header.SetExtension(midID, []byte(mid))
					_ = pkt.Header.SetExtension(ridID, []byte(rids[l]))
					// Errors: the connection is closing at the end of a test.
					_ = p.tracks[l].WriteRTP(&pkt)
				}
			}
		}
	}()
}

func (p *simulcastPublisher) pliTimes(l Layer) []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.plis[l])
}

// received is one packet as a subscriber saw it.
type received struct {
	seq   uint16
	ts    uint32
	layer byte // the publisher's layer marker
	key   bool
	pic   uint16
	body  string
}

// testSubscriber records every packet of the one track it receives.
type testSubscriber struct {
	pc   *webrtc.PeerConnection
	ssrc atomic.Uint32
	mu   sync.Mutex // guards pkts
	pkts []received
	wg   sync.WaitGroup
}

func newTestSubscriber(t *testing.T, api *webrtc.API) *testSubscriber {
	s := &testSubscriber{pc: newPC(t, api)}
	s.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		s.ssrc.Store(uint32(tr.SSRC()))
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				pkt, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				d, err := parseVP8(pkt.Payload)
				if err != nil || len(pkt.Payload) == 0 {
					continue
				}
				s.mu.Lock()
				s.pkts = append(s.pkts, received{seq: pkt.SequenceNumber, ts: pkt.Timestamp, layer: pkt.Payload[len(pkt.Payload)-1],
					key: d.keyFrame, pic: d.picID, body: string(pkt.Payload[d.hdrLen:])})
				s.mu.Unlock()
			}
		}()
	})
	t.Cleanup(func() {
		_ = s.pc.Close()
		s.wg.Wait()
	})
	return s
}

func (s *testSubscriber) got() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.pkts)
}

// dropper is an interceptor on the SFU's side of a subscriber connection
// that drops the first transmission of every nth packet before SRTP, as a
// lossy network would; retransmissions of the same sequence number pass.
type dropper struct {
	interceptor.NoOp
	every   int
	mu      sync.Mutex // guards seen, n
	seen    map[uint16]bool
	n       int
	dropped atomic.Int64
}

func (d *dropper) NewInterceptor(string) (interceptor.Interceptor, error) { return d, nil }

func (d *dropper) BindLocalStream(_ *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		d.mu.Lock()
		first := !d.seen[h.SequenceNumber]
		d.seen[h.SequenceNumber] = true
		d.n++
		drop := first && d.n%d.every == 0
		d.mu.Unlock()
		if drop {
			d.dropped.Add(1)
			return len(payload), nil
		}
		return w.Write(h, payload, a)
	})
}

// subscribe connects a new subscriber to r through its own "SFU side" peer
// connection with a DownTrack, as the SFU core does.
func subscribe(t *testing.T, r *Receiver, id string, quality Layer, sfuSide ...interceptor.Factory) (*DownTrack, *testSubscriber) {
	t.Helper()
	gen, err := nack.NewGeneratorInterceptor(nack.GeneratorInterval(20 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	sub := newTestSubscriber(t, loopbackAPI(t, gen))
	out := newPC(t, loopbackAPI(t, sfuSide...))
	d, err := NewDownTrack(r, DownTrackConfig{SubscriberID: id, StreamID: "PA_pub|TR_v", TrackID: "TR_v"})
	if err != nil {
		t.Fatal(err)
	}
	d.SetRequestedQuality(quality)
	tr, err := out.AddTransceiverFromTrack(d, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		t.Fatal(err)
	}
	d.Start(tr.Sender())
	t.Cleanup(d.Close)
	connect(t, out, sub.pc)
	return d, sub
}

// checkContinuous asserts that a subscriber's packets have no sequence
// gaps, that each layer change happens at a key frame, and that
// PictureIDs go up by one per frame.
func checkContinuous(t *testing.T, pkts []received) {
	t.Helper()
	// Retransmissions arrive out of order: check in sequence order.
	pkts = slices.Clone(pkts)
	first := pkts[0].seq
	slices.SortStableFunc(pkts, func(a, b received) int { return int(int16(a.seq-first)) - int(int16(b.seq-first)) })
	seqs := make(map[uint16]bool)
	base := pkts[0].seq
	maxOff := 0
	for _, p := range pkts {
		seqs[p.seq] = true
		maxOff = max(maxOff, int(p.seq-base))
	}
	for off := 0; off <= maxOff; off++ {
		if !seqs[base+uint16(off)] {
			t.Fatalf("sequence number %d missing (of %d..%d)", base+uint16(off), base, base+uint16(maxOff))
		}
	}
	if !pkts[0].key {
		t.Fatal("stream does not start with a key frame")
	}
	for i := 1; i < len(pkts); i++ {
		a, b := pkts[i-1], pkts[i]
		if b.layer != a.layer && !b.key {
			t.Fatalf("packet %d: layer %d -> %d without a key frame", i, a.layer, b.layer)
		}
		if b.seq == a.seq+1 && b.ts != a.ts && b.pic != (a.pic+1)&0x7fff {
			t.Fatalf("packet %d: PictureID %d after %d", i, b.pic, a.pic)
		}
	}
}

func TestSimulcastOverPeerConnections(t *testing.T) {
	pub := newSimulcastPublisher(t)
	sfuIn := newPC(t, loopbackAPI(t))
	var (
		mu     sync.Mutex
		r      *Receiver
		layers int
	)
	sfuIn.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		mu.Lock()
		if r == nil {
			r = NewReceiver(ReceiverConfig{
				TrackID: "TR_v", Codec: tr.Codec(), Layers: testLayers,
				RequestKeyFrame: func(ssrc uint32) {
					_ = sfuIn.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
				},
			})
			t.Cleanup(r.Close)
		}
		layers++
		rr := r
		mu.Unlock()
		rr.AddLayer(LayerFromRID(tr.RID()), tr)
	})
	connect(t, pub.pc, sfuIn)
	pub.start()
	waitFor(t, 15*time.Second, "three layers at the SFU", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return layers == 3
	})
	mu.Lock()
	recv := r
	mu.Unlock()
	waitFor(t, 5*time.Second, "all layers active", func() bool {
		s := recv.Stats()
		return s.Layers[0].Active && s.Layers[1].Active && s.Layers[2].Active
	})

	drop := &dropper{every: 15, seen: map[uint16]bool{}}
	d1, sub1 := subscribe(t, recv, "sub1", 2)
	d2, sub2 := subscribe(t, recv, "sub2", 0, drop)

	// sub1 watches f, sub2 q, each from a key frame the SFU requested.
	waitFor(t, 10*time.Second, "both subscribers receiving", func() bool {
		return len(sub1.got()) >= 30 && len(sub2.got()) >= 30
	})
	for _, p := range sub1.got() {
		if p.layer != 2 {
			t.Fatalf("sub1 got layer %d, want f", p.layer)
		}
	}
	for _, p := range sub2.got() {
		if p.layer != 0 {
			t.Fatalf("sub2 got layer %d, want q", p.layer)
		}
	}

	// sub1 asks for LOW: it gets q, switched at a key frame.
	d1.SetRequestedQuality(0)
	waitFor(t, 10*time.Second, "sub1 switched to q", func() bool {
		pkts := sub1.got()
		return len(pkts) > 0 && pkts[len(pkts)-1].layer == 0 && d1.CurrentLayer() == 0
	})
	n := len(sub1.got())
	waitFor(t, 5*time.Second, "more q packets", func() bool { return len(sub1.got()) > n+20 })
	checkContinuous(t, sub1.got())

	// sub2's connection lost every 15th packet; its NACKs were answered
	// from the cache and it has every sequence number.
	waitFor(t, 10*time.Second, "NACKs answered", func() bool {
		return drop.dropped.Load() >= 5 && d2.Stats().NACKsAnswered >= 5
	})
	waitFor(t, 5*time.Second, "sub2 caught up", func() bool { return len(sub2.got()) > 0 })
	pkts2 := sub2.got()
	// The last few may still be in flight; check up to a packet that was
	// sent well before the last drop was repaired.
	checkContinuous(t, pkts2[:len(pkts2)-10])

	// PLI storm from both subscribers: at most one PLI per 500 ms reaches
	// the publisher per layer.
	before := len(pub.pliTimes(0))
	stormStart := time.Now()
	ssrc1, ssrc2 := webrtc.SSRC(sub1.ssrc.Load()), webrtc.SSRC(sub2.ssrc.Load())
	tick := time.NewTicker(10 * time.Millisecond) // the storm's rate
	for range 60 {
		<-tick.C
		_ = sub1.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(ssrc1)}})
		_ = sub2.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(ssrc2)}})
	}
	tick.Stop()
	waitFor(t, 5*time.Second, "a PLI at the publisher", func() bool { return len(pub.pliTimes(0)) > before })
	stormLen := time.Since(stormStart)
	plis := pub.pliTimes(0)
	forwarded := len(plis) - before
	if limit := int(stormLen/keyFrameInterval) + 2; forwarded > limit {
		t.Fatalf("%d PLIs forwarded for 120 in %v (limit %d)", forwarded, stormLen, limit)
	}
	for i := 1; i < len(plis); i++ {
		if gap := plis[i].Sub(plis[i-1]); gap < keyFrameInterval*8/10 {
			t.Fatalf("PLIs %v apart at the publisher", gap)
		}
	}
	if s1 := d1.Stats(); s1.PLIs < 30 {
		t.Fatalf("sub1's down track counted %d PLIs", s1.PLIs)
	}
	t.Logf("sub1 %+v", d1.Stats())
	t.Logf("sub2 %+v dropped %d", d2.Stats(), drop.dropped.Load())
	t.Logf("receiver %+v", recv.Stats())

	// The publisher leaves: the Receiver's tracks end and it is done.
	_ = pub.pc.Close()
	select {
	case <-recv.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("receiver not done after the publisher left")
	}
	recv.Close()
	recv.Close()
	if _, err := NewDownTrack(recv, DownTrackConfig{}); !errors.Is(err, ErrReceiverClosed) {
		t.Fatalf("NewDownTrack on a closed receiver: %v", err)
	}
	if d1.CurrentLayer() != LayerNone || recv.Stats().DownTracks != 0 {
		t.Fatal("down tracks still forwarding after Close")
	}
	// Close waited for the read loops, the housekeeping goroutine and
	// the down tracks' RTCP readers.
	if n := engineGoroutines(); n != 0 {
		t.Fatalf("%d engine goroutines left after Close", n)
	}
}
