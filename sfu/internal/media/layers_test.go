package media

import (
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// A publisher whose streams all claim one layer (hostile or duplicate
// RIDs, or a new SSRC for a layer) gets one read loop per layer: each
// new track replaces the layer's previous one.
func TestOneReadLoopPerLayer(t *testing.T) {
	pub := newPC(t, loopbackAPI(t))
	sfuIn := newPC(t, loopbackAPI(t))
	var locals []*webrtc.TrackLocalStaticRTP
	for _, id := range []string{"a", "b", "c"} {
		tr, err := webrtc.NewTrackLocalStaticRTP(vp8Codec.RTPCodecCapability, id, "pub")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pub.AddTrack(tr); err != nil {
			t.Fatal(err)
		}
		locals = append(locals, tr)
	}
	var (
		mu      sync.Mutex
		remotes []*webrtc.TrackRemote
	)
	sfuIn.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		mu.Lock()
		remotes = append(remotes, tr)
		mu.Unlock()
	})
	connect(t, pub, sfuIn)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for seq := uint16(0); ; seq++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for _, l := range locals {
				_ = l.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 900}, Payload: vp8Payload(seq, 0, 0, true, seq%50 == 0, 100)})
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
	})
	waitFor(t, 15*time.Second, "three tracks at the SFU", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(remotes) == 3
	})
	r := NewReceiver(ReceiverConfig{TrackID: "TR_v", Codec: vp8Codec})
	t.Cleanup(r.Close)
	for _, tr := range remotes {
		r.AddLayer(0, tr)
		r.AddLayer(0, tr) // the same track twice is one track
	}
	loops := func() int {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.loops
	}
	waitFor(t, 10*time.Second, "the replaced read loops to end", func() bool { return loops() == 1 })
	n := r.Stats().Packets
	waitFor(t, 10*time.Second, "the last track to be read", func() bool { return r.Stats().Packets > n+10 })
	r.mu.Lock()
	last := r.reading[0]
	r.mu.Unlock()
	if last != remotes[2] {
		t.Fatal("layer 0 is not read from the newest track")
	}
	select {
	case <-r.Done():
		t.Fatal("the Receiver finished while a layer was being read")
	default:
	}
}
