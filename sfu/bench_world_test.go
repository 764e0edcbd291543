package sfu_test

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	lksdk "github.com/livekit/server-sdk-go/v2"

	"github.com/plexus-chat/plexus/internal/latency"
	"github.com/plexus-chat/plexus/sfu/internal/sfutest"
)

// The world benchmark's load: each peer sets its own key worldRate times
// a second with worldSize-byte updates on the lossy channel.
const (
	worldPeers  = 50
	worldProbes = 2 // of the peers, in a process of their own
	worldRate   = 30
	worldSize   = 200
)

// probeEnv gives TestSFUWorldProbeProcess the server's URL.
const probeEnv = "PLEXUS_SFU_BENCH_PROBE"

// sendWorld sets key on c's room worldRate times a second until stop
// closes, counting in sent the updates lksdk took. Each value is
// {"t":<send time, unix µs>,"pad":"x..."}, the whole message worldSize
// bytes. Independent devices tick at their own phase, so the first
// update waits a random part of a period: started in one loop, 50
// tickers would fire together, 50 updates in the same instant every
// frame, a burst no real room sees.
func sendWorld(c *client, key string, stop <-chan struct{}, sent *atomic.Int64) {
	phase := time.NewTimer(rand.N(time.Second / worldRate))
	select {
	case <-stop:
		phase.Stop()
		return
	case <-phase.C:
	}
	tick := time.NewTicker(time.Second / worldRate)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		now := time.Now()
		head := fmt.Sprintf(`{"ts":%d,"set":{%q:{"t":%d,"pad":"`, now.UnixMilli(), key, now.UnixMicro())
		msg := head + strings.Repeat("x", max(0, worldSize-len(head)-4)) + `"}}}`
		if c.room.LocalParticipant.PublishDataPacket(lksdk.UserData([]byte(msg)),
			lksdk.WithDataPublishTopic(worldTopic), lksdk.WithDataPublishReliable(false)) == nil {
			sent.Add(1)
		}
	}
}

// worldStamps calls fn with the writer and send time of each entry of a
// world delta from sendWorld's peers. The server's deltas are canonical
// JSON, each entry {"by":"<identity>","ts":<ms>,"value":{"pad":"...",
// "t":<µs>}}: the numbers are found rather than the JSON parsed, tens of
// thousands of times a second. (Microseconds: canonical JSON's integers
// stop at 2^53.)
func worldStamps(payload []byte, fn func(by []byte, sentMicros int64)) {
	for {
		i := bytes.Index(payload, []byte(`"by":"`))
		if i < 0 {
			return
		}
		payload = payload[i+6:]
		j := bytes.IndexByte(payload, '"')
		if j < 0 {
			return
		}
		by := payload[:j]
		k := bytes.Index(payload, []byte(`"t":`))
		if k < 0 {
			return
		}
		payload = payload[k+4:]
		e := bytes.IndexAny(payload, ",}")
		if e < 0 {
			return
		}
		if sent, err := strconv.ParseInt(string(payload[:e]), 10, 64); err == nil {
			fn(by, sent)
		}
	}
}

// TestSFUWorldProbeProcess is BenchmarkWorldState50's probe, not a test:
// two of the benchmark's peers in a process of their own, so that the
// time from one's update to its arrival at the other passes through the
// server and two clients that, unlike the 48 in the benchmark's process,
// do not share a Go runtime with 96 other peer connections. It joins
// both, prints "ready", and reads its standard input: "start" starts
// the updates, "mark" starts a window, "report" prints "probe <p50 ns>
// <p99 ns> <samples> <updates sent>" for the window; it ends at EOF.
func TestSFUWorldProbeProcess(t *testing.T) {
	url := os.Getenv(probeEnv)
	if url == "" {
		t.Skip("the world benchmark's probe process")
	}
	var h latency.Histogram
	clients := make([]*client, worldProbes)
	for i := range clients {
		self := fmt.Sprint("probe", i)
		onData := func(_, topic string, payload []byte) {
			if topic != worldTopic+".delta" {
				return
			}
			now := time.Now().UnixMicro()
			worldStamps(payload, func(by []byte, sent int64) {
				if bytes.HasPrefix(by, []byte("probe")) && string(by) != self {
					h.Record(time.Duration(now-sent) * time.Microsecond)
				}
			})
		}
		c, err := dial(t, url, "world", self, dialOpts{onData: onData})
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = c
	}
	fmt.Println("ready")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sent atomic.Int64
	var mark latency.Dist
	var sent0 int64
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "start":
			for i, c := range clients {
				wg.Go(func() { sendWorld(c, fmt.Sprint("probe", i, "/pose"), stop, &sent) })
			}
		case "mark":
			mark, sent0 = h.Snapshot(), sent.Load()
		case "report":
			d := h.Snapshot().Since(&mark)
			fmt.Println("probe", int64(d.Quantile(0.5)), int64(d.Quantile(0.99)), d.Count(), sent.Load()-sent0)
		}
	}
	close(stop)
	wg.Wait()
	for _, c := range clients {
		c.room.Disconnect()
	}
}

// probeProcess is a running TestSFUWorldProbeProcess.
type probeProcess struct{ *child }

func startProbe(b *testing.B, url string) *probeProcess {
	b.Helper()
	p := &probeProcess{startChild(b, "TestSFUWorldProbeProcess", []string{probeEnv + "=" + url})}
	b.Cleanup(func() { p.close(b) })
	p.ask(b, "", "ready")
	return p
}

// close ends the probe process and waits for it (idempotent).
func (p *probeProcess) close(b *testing.B) {
	if p.stdin == nil {
		return
	}
	p.stdin.Close()
	p.stdin = nil
	if err := p.cmd.Wait(); err != nil {
		b.Errorf("probe process: %v", err)
	}
}

// report returns the probe's latency p50 and p99 and sample count since
// "mark", and the updates it sent.
func (p *probeProcess) report(b *testing.B) (p50, p99 time.Duration, n, sent int64) {
	line := p.ask(b, "report", "probe ")
	if _, err := fmt.Sscan(line, &p50, &p99, &n, &sent); err != nil {
		b.Fatalf("probe line %q: %v", line, err)
	}
	return p50, p99, n, sent
}

// BenchmarkWorldState50: 50 peers each setting its own key of the world
// 30 times a second with 200-byte updates on the lossy channel. Three
// latencies, each from an update's send time (in its value) to the
// arrival of the delta carrying it:
//
//   - relay: in the server, from the update's arrival in the relay to the
//     write of the delta (sfu.Stats.WorldRelay);
//   - probe: between the two peers of the probe process, end to end;
//   - all: at the 48 peers of this process, end to end, from any sender:
//     their peer connections share one Go runtime, 96 of them, whose
//     queueing adds to both ends.
func BenchmarkWorldState50(b *testing.B) {
	local := worldPeers - worldProbes
	srv := startServer(b)
	probe := startProbe(b, srv.url)
	var (
		mu       sync.Mutex // guards lat
		lat      []time.Duration
		measure  atomic.Bool
		received atomic.Int64 // updates, counted per delta entry
		deltas   atomic.Int64
	)
	onData := func(_, topic string, payload []byte) {
		if topic != worldTopic+".delta" {
			return
		}
		now := time.Now().UnixMicro()
		var ds []time.Duration
		worldStamps(payload, func(_ []byte, sent int64) {
			ds = append(ds, time.Duration(now-sent)*time.Microsecond)
		})
		received.Add(int64(len(ds)))
		deltas.Add(1)
		if measure.Load() {
			mu.Lock()
			lat = append(lat, ds...)
			mu.Unlock()
		}
	}
	joined := time.Now()
	clients, _ := dialAll(b, srv.url, "world", "peer", local, dialOpts{onData: onData})
	b.Logf("%d peers joined in %v", local, time.Since(joined).Round(time.Millisecond))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sent atomic.Int64
	for i, c := range clients {
		wg.Go(func() { sendWorld(c, fmt.Sprint("peer", i, "/pose"), stop, &sent) })
	}
	probe.tell(b, "start")
	stopSenders := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	defer stopSenders()
	if err := sfutest.AwaitErr(30*time.Second, func() bool { return received.Load() > int64(local*(worldPeers-1)) }); err != nil {
		b.Fatalf("world updates do not flow: %v", err)
	}
	b.ResetTimer()
	measure.Store(true)
	self0, _ := sfutest.ProcessCPU(os.Getpid())
	srv.relayLatency(b) // from here
	probe.tell(b, "mark")
	cpu0, sent0, recv0, t0 := srv.cpu(b), sent.Load(), received.Load(), time.Now()
	deltas0 := deltas.Load()
	timer := time.NewTimer(benchWindow())
	<-timer.C
	cpu1, sent1, recv1, t1 := srv.cpu(b), sent.Load(), received.Load(), time.Now()
	relay50, relay99, relayN := srv.relayLatency(b)
	probe50, probe99, probeN, probeSent := probe.report(b)
	deltas1 := deltas.Load()
	self1, _ := sfutest.ProcessCPU(os.Getpid())
	measure.Store(false)
	b.StopTimer()
	stopSenders() // while the server is up: lksdk's sends wait for open channels
	mu.Lock()
	samples := lat
	lat = nil
	mu.Unlock()
	wall := t1.Sub(t0).Seconds()
	// What this process's peers should receive: every update but their
	// own, the probes' included.
	want := float64(sent1-sent0)*float64(local-1) + float64(probeSent)*float64(local)
	b.ReportMetric(100*(cpu1-cpu0).Seconds()/wall, "server_cpu_%")
	b.ReportMetric(100*(self1-self0).Seconds()/wall, "client_cpu_%")
	b.ReportMetric(float64(sent1-sent0+probeSent)/wall, "updates_sent/s")
	b.ReportMetric(float64(recv1-recv0)/wall, "deliveries/s")
	// Data channel messages this process's peers received: one delta
	// carries every update pending for that peer when it is written.
	b.ReportMetric(float64(deltas1-deltas0)/wall, "deltas/s")
	if want > 0 {
		// An update superseded by a newer one of its key before its
		// delta was written is merged away by design; this is the share
		// that arrived as sent.
		b.ReportMetric(100*float64(recv1-recv0)/want, "delivered_%")
	}
	if cpu := (cpu1 - cpu0).Seconds(); recv1 > recv0 {
		// Per delivery at this process's peers, the probes' not counted
		// (theirs cost the server too: a slight overstatement).
		b.ReportMetric(1e6*cpu/float64(recv1-recv0), "server_cpu_us/delivery")
	}
	b.ReportMetric(ms(relay50), "relay_p50_ms")
	b.ReportMetric(ms(relay99), "relay_p99_ms")
	b.ReportMetric(ms(probe50), "probe_p50_ms")
	b.ReportMetric(ms(probe99), "probe_p99_ms")
	b.ReportMetric(ms(sfutest.Percentile(samples, 50)), "all_p50_ms")
	b.ReportMetric(ms(sfutest.Percentile(samples, 99)), "all_p99_ms")
	b.Logf("latency samples: relay %d changes, probe %d, all %d", relayN, probeN, len(samples))
	probe.close(b)
	srv.stop(b)
}
