package media

import (
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// cpuTime is the process's user+system CPU time so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkForward measures the engine's fan-out: one VP8 receiver, N
// bound down tracks writing to a discarding writer (SRTP and the socket are
// pion's and the kernel's cost, measured by BenchmarkForwardPion). Reported:
// forwarded packets per CPU-second and allocations per received packet.
func BenchmarkForward(b *testing.B) {
	for _, n := range []int{1, 10, 150} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			r := NewReceiver(ReceiverConfig{TrackID: "TR_v", Codec: vp8Codec, Layers: testLayers})
			defer r.Close()
			f := newFeeder(b, r, 111, 222, 333)
			var ws []*captureWriter
			for i := range n {
				d, w := bindDownTrack(b, r, fmt.Sprint("sub", i))
				d.SetRequestedQuality(0)
				w.keep = false
				ws = append(ws, w)
			}
			src := &vp8Source{ssrc: 111, seq: 1}
			for _, raw := range src.frame(b, true, 1) {
				f.feed(0, raw)
			}
			src.pic += 77 // make every subscriber rewrite PictureIDs
			raws := src.frame(b, false, 256)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0, t0 := cpuTime(b), time.Now()
			for i := 0; i < b.N; i++ {
				raw := raws[i%len(raws)]
				seq := src.seq + uint16(i)
				raw[2], raw[3] = byte(seq>>8), byte(seq)
				f.feed(0, raw)
			}
			cpu, wall := cpuTime(b)-cpu0, time.Since(t0)
			b.StopTimer()
			fwd := float64(b.N * n)
			b.ReportMetric(fwd/cpu.Seconds(), "fwd_pkts/cpu_s")
			b.ReportMetric(fwd/wall.Seconds(), "fwd_pkts/s")
			if ws[n-1].n < b.N {
				b.Fatalf("last subscriber got %d of %d", ws[n-1].n, b.N)
			}
		})
	}
}

// BenchmarkForwardPion is the same fan-out through real pion peer
// connections on loopback: SRTP encryption and a UDP send per packet per
// subscriber, as in production. Subscribers count what they receive;
// loss_% is what did not arrive.
func BenchmarkForwardPion(b *testing.B) {
	for _, n := range []int{10, 50} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) { benchPion(b, n) })
	}
}

func benchPion(b *testing.B, n int) {
	r := NewReceiver(ReceiverConfig{TrackID: "TR_v", Codec: vp8Codec, Layers: testLayers})
	defer r.Close()
	f := newFeeder(b, r, 111, 222, 333)
	subs := make([]*countingSubscriber, n)
	for i := range subs {
		subs[i] = newCountingSubscriber(b, r, fmt.Sprint("sub", i))
	}
	src := &vp8Source{ssrc: 111, seq: 1}
	// Until every subscriber's DTLS is up and it has a key frame, send a
	// key frame every 20 ms.
	deadline := time.Now().Add(30 * time.Second)
	for !allReceiving(subs) {
		if time.Now().After(deadline) {
			b.Fatal("subscribers not receiving")
		}
		for _, raw := range src.frame(b, true, 1) {
			f.feed(0, raw)
		}
		time.Sleep(20 * time.Millisecond) // the key frame rate, not synchronisation
	}
	start := make([]int64, n)
	for i, s := range subs {
		start[i] = s.n.Load()
	}
	raws := src.frame(b, false, 256)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, t0 := cpuTime(b), time.Now()
	for i := 0; i < b.N; i++ {
		raw := raws[i%len(raws)]
		seq := src.seq + uint16(i)
		raw[2], raw[3] = byte(seq>>8), byte(seq)
		f.feed(0, raw)
		if i%4 == 3 {
			// Pace like a publisher (~4 packets per ms, a 4 Mbit/s
			// layer) so socket buffers are not what is measured.
			time.Sleep(time.Millisecond)
		}
	}
	cpu, wall := cpuTime(b)-cpu0, time.Since(t0)
	b.StopTimer()
	// The last packets may still be in flight: poll until counts settle.
	var got int64
	for stable := 0; stable < 5; {
		var sum int64
		for i, s := range subs {
			sum += s.n.Load() - start[i]
		}
		if sum == got {
			stable++
		} else {
			stable = 0
		}
		got = sum
		time.Sleep(20 * time.Millisecond)
	}
	fwd := float64(b.N * n)
	b.ReportMetric(fwd/cpu.Seconds(), "fwd_pkts/cpu_s")
	b.ReportMetric(fwd/wall.Seconds(), "fwd_pkts/s")
	b.ReportMetric(100*(1-float64(got)/fwd), "loss_%")
}

func allReceiving(subs []*countingSubscriber) bool {
	for _, s := range subs {
		if s.n.Load() == 0 {
			return false
		}
	}
	return true
}

// countingSubscriber counts the RTP packets of the track it receives.
type countingSubscriber struct {
	n atomic.Int64
}

// newCountingSubscriber connects one subscriber to r through its own
// SFU-side peer connection and DownTrack.
func newCountingSubscriber(b *testing.B, r *Receiver, id string) *countingSubscriber {
	cs := &countingSubscriber{}
	sub := newPC(b, loopbackAPI(b))
	var wg sync.WaitGroup
	sub.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, receiveMTU)
			for {
				if _, _, err := tr.Read(buf); err != nil {
					return
				}
				cs.n.Add(1)
			}
		}()
	})
	out := newPC(b, loopbackAPI(b))
	d, err := NewDownTrack(r, DownTrackConfig{SubscriberID: id, StreamID: "s", TrackID: "TR_v"})
	if err != nil {
		b.Fatal(err)
	}
	d.SetRequestedQuality(0)
	tr, err := out.AddTransceiverFromTrack(d, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		b.Fatal(err)
	}
	d.Start(tr.Sender())
	b.Cleanup(func() {
		d.Close()
		_ = sub.Close()
		wg.Wait()
	})
	connect(b, out, sub)
	return cs
}
