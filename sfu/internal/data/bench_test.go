package data

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/proto"
)

// latencySender records, for each world update in the deltas it is
// handed, the time since the sender stamped it (the "t" member of the value, unix µs: a
// world value must be an integer within ±(2^53-1), which nanoseconds
// since 1970 are not).
// Only the recipient's writer goroutine calls it; the samples are read
// after Room.Close has waited for the writers.
type latencySender struct {
	samples []time.Duration
}

var tKey = []byte(`"t":`)

func (s *latencySender) SendData(_ Kind, b []byte) error {
	now := time.Now().UnixMicro()
	for {
		i := bytes.Index(b, tKey)
		if i < 0 {
			return nil
		}
		b = b[i+len(tKey):]
		var t int64
		for len(b) > 0 && b[0] >= '0' && b[0] <= '9' {
			t = t*10 + int64(b[0]-'0')
			b = b[1:]
		}
		s.samples = append(s.samples, time.Duration(now-t)*time.Microsecond)
	}
}

func (*latencySender) Buffered(Kind) uint64 { return 0 }

// worldUpdate is one peer's 200-byte pose update as a client encodes it.
func worldUpdate(b *testing.B, peer int, pad string) []byte {
	now := time.Now()
	payload := `{"ts":` + strconv.FormatInt(now.UnixMilli(), 10) + `,"set":{"avatar/` + strconv.Itoa(peer) +
		`":{"t":` + strconv.FormatInt(now.UnixMicro(), 10) + `,"p":[1250,500,-3750],"q":[0,7071,0,7071],"pad":"` + pad + `"}}}`
	topic := "plexus.world"
	raw, err := proto.Marshal(&livekit.DataPacket{Value: &livekit.DataPacket_User{User: &livekit.UserPacket{Payload: []byte(payload), Topic: &topic}}})
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// padFor returns padding that makes a world update payload 200 bytes.
func padFor(b *testing.B) string {
	probe := worldUpdate(b, 10, "")
	dp := new(livekit.DataPacket)
	if err := proto.Unmarshal(probe, dp); err != nil {
		b.Fatal(err)
	}
	return strings.Repeat("x", max(0, 200-len(dp.GetUser().Payload)))
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkWorldRelay is the figure: 50 peers each send 30 world
// updates a second (200-byte payloads, on the lossy channel) through one
// Room to in-memory recipients, in real time; one iteration is one 1/30 s
// frame in which every peer sends once, spread over the frame. It
// reports the relay latency of each update (Receive called to the
// SendData call of the delta holding it) at p50 and p99, the process CPU
// used as a percentage of one core (the simulated clients' encoding
// included), the deltas written per second and their mean number of
// updates. Run with -benchtime=300x for a ten-second measurement.
func BenchmarkWorldRelay(b *testing.B) {
	const peers, rate = 50, 30
	frame := time.Second / rate
	pad := padFor(b)
	r := NewRoom(Config{}, nil)
	sinks := make([]*latencySender, peers)
	for i := range sinks {
		sinks[i] = &latencySender{}
		r.Join("P"+strconv.Itoa(i), "@peer"+strconv.Itoa(i)+":example.org", sinks[i])
	}
	var errs sync.Map
	frames := b.N
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	var wg sync.WaitGroup
	for p := range peers {
		wg.Go(func() {
			sid := "P" + strconv.Itoa(p)
			offset := frame * time.Duration(p) / peers
			for f := range frames {
				time.Sleep(time.Until(start.Add(time.Duration(f)*frame + offset))) // pacing, not synchronisation
				if err := r.Receive(sid, Lossy, worldUpdate(b, p, pad), true); err != nil {
					errs.Store(err.Error(), true)
				}
			}
		})
	}
	wg.Wait()
	st := r.Stats()
	r.Close()
	wall, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	errs.Range(func(k, _ any) bool { b.Errorf("Receive: %v", k); return true })

	var all []time.Duration
	for _, s := range sinks {
		all = append(all, s.samples...)
	}
	sent := peers * frames * (peers - 1)
	if len(all) == 0 {
		b.Fatal("nothing relayed")
	}
	slices.Sort(all)
	pct := func(q float64) float64 { return float64(all[int(q*float64(len(all)-1))]) / 1e6 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(all[len(all)-1])/1e6, "max-ms")
	b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "cpu-%")
	b.ReportMetric(float64(sent-len(all))/float64(sent)*100, "coalesced-%")
	b.ReportMetric(float64(st.Deltas)/wall.Seconds(), "deltas/s")
	if st.Deltas > 0 {
		b.ReportMetric(float64(st.DeltaEntries)/float64(st.Deltas), "updates/delta")
	}
}

// BenchmarkReceiveFanout measures the cost of one world update relayed to
// 49 recipients, unpaced: the Receive call itself (parse, apply, merge
// into 49 pending deltas).
func BenchmarkReceiveFanout(b *testing.B) {
	const peers = 50
	pad := padFor(b)
	r := NewRoom(Config{Rate: 1e9, Burst: 1e9}, nil)
	defer r.Close()
	for i := range peers {
		r.Join("P"+strconv.Itoa(i), "@peer"+strconv.Itoa(i), &latencySender{})
	}
	raw := worldUpdate(b, 0, pad)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := r.Receive("P0", Lossy, raw, true); err != nil {
			b.Fatal(err)
		}
	}
}
