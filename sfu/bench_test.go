package sfu_test

// The SFU's figures (make bench): a 720p simulcast publisher with audio to
// 10, 50 and 150 subscribers; a 25-participant audio-only room; world
// state relay among 50 peers. The SFU runs in a child process (this test
// binary again, as TestSFUServerProcess) so that its CPU time, read from
// /proc/<pid>/stat, is the server's alone; the lksdk clients run here.
// Both share the machine's cores, as a load tester on the same host would.

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	lksdk "github.com/livekit/server-sdk-go/v2"

	"github.com/plexus-chat/plexus/internal/gcpolicy"
	"github.com/plexus-chat/plexus/internal/latency"
	"github.com/plexus-chat/plexus/sfu"
	"github.com/plexus-chat/plexus/sfu/internal/sfutest"
)

// serverEnv tells TestSFUServerProcess it is a benchmark's server.
const serverEnv = "PLEXUS_SFU_BENCH_SERVER"

// benchWindow is how long a benchmark measures once everyone receives
// (PLEXUS_SFU_BENCH_SECONDS overrides).
func benchWindow() time.Duration {
	if s, err := strconv.Atoi(os.Getenv("PLEXUS_SFU_BENCH_SECONDS")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 15 * time.Second
}

// TestSFUServerProcess is the benchmarks' server process, not a test: it
// runs an SFU on 127.0.0.1, prints "url <ws url>", serves until its
// standard input closes, then prints "stats <Stats as Go syntax>". Each
// line "relay" on its standard input prints "relay <p50 ns> <p99 ns>
// <count>": the world relay latency since the previous "relay" line.
func TestSFUServerProcess(t *testing.T) {
	if os.Getenv(serverEnv) == "" {
		t.Skip("the SFU benchmarks' server process")
	}
	// Errors only: at 150 subscribers the warnings of connections
	// closing at the end would bury the figures.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	if os.Getenv("PLEXUS_SFU_DEBUG") != "" {
		log = testLogger()
	}
	// The collector paced as plexus serve paces it.
	gcpolicy.Apply(os.Getenv)
	h := newHarness(t, sfu.Config{}, sfu.Deps{Logger: log})
	fmt.Println("url", h.url)
	var mark latency.Dist
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "relay" {
			now := h.srv.Stats().WorldRelay
			d := now.Since(&mark)
			mark = now
			fmt.Println("relay", int64(d.Quantile(0.5)), int64(d.Quantile(0.99)), d.Count())
		}
	}
	fmt.Printf("stats %+v\n", h.srv.Stats())
}

// child is a process running this test binary again as one test: the
// benchmarks' server or probe. It is told commands on its standard
// input, one a line, and answers on its standard output.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

// startChild runs the test named test with env added to the environment.
func startChild(b *testing.B, test string, env []string, args ...string) *child {
	b.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^" + test + "$"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	return &child{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
}

// tell sends a command line.
func (c *child) tell(b *testing.B, cmd string) {
	b.Helper()
	if _, err := io.WriteString(c.stdin, cmd+"\n"); err != nil {
		b.Fatalf("%s: %v", c.cmd.Args[1], err)
	}
}

// ask tells cmd (nothing if empty) and returns the rest of the first
// line that starts with prefix.
func (c *child) ask(b *testing.B, cmd, prefix string) string {
	b.Helper()
	if cmd != "" {
		c.tell(b, cmd)
	}
	for c.out.Scan() {
		if rest, ok := strings.CutPrefix(c.out.Text(), prefix); ok {
			return rest
		}
	}
	b.Fatalf("%s ended before %q: %v", c.cmd.Args[1], prefix, c.out.Err())
	return ""
}

// serverProcess is a running child SFU.
type serverProcess struct {
	*child
	url string
}

func startServer(b *testing.B) *serverProcess {
	b.Helper()
	raiseFileLimit(b, 8192)
	// The clients' process too: as the server's, its garbage is pion's
	// copies of every packet, and its collector competes with the
	// server for the same cores.
	gcpolicy.Apply(os.Getenv)
	var args []string
	// PLEXUS_SFU_BENCH_PROFILE, _MEMPROFILE and _TRACE name files for
	// the server's CPU profile, memory profile and execution trace.
	for env, flag := range map[string]string{
		"PLEXUS_SFU_BENCH_PROFILE":    "cpuprofile",
		"PLEXUS_SFU_BENCH_MEMPROFILE": "memprofile",
		"PLEXUS_SFU_BENCH_TRACE":      "trace",
	} {
		if file := os.Getenv(env); file != "" {
			args = append(args, "-test."+flag+"="+file)
		}
	}
	s := &serverProcess{child: startChild(b, "TestSFUServerProcess", []string{serverEnv + "=1"}, args...)}
	b.Cleanup(func() { s.stop(b) })
	s.url = s.ask(b, "", "url ")
	return s
}

// relayLatency returns the server's world relay latency p50 and p99
// since the previous call, and the number of changes they cover.
func (s *serverProcess) relayLatency(b *testing.B) (p50, p99 time.Duration, n uint64) {
	v := s.ask(b, "relay", "relay ")
	if _, err := fmt.Sscan(v, &p50, &p99, &n); err != nil {
		b.Fatalf("relay line %q: %v", v, err)
	}
	return p50, p99, n
}

// cpu is the server's CPU time so far.
func (s *serverProcess) cpu(b *testing.B) time.Duration {
	d, err := sfutest.ProcessCPU(s.cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// stop ends the server and logs its Stats (idempotent).
func (s *serverProcess) stop(b *testing.B) {
	if s.stdin == nil {
		return
	}
	b.StopTimer()
	s.stdin.Close()
	s.stdin = nil
	for s.out.Scan() {
		if st, ok := strings.CutPrefix(s.out.Text(), "stats "); ok {
			b.Logf("server stats: %s", st)
			break
		}
	}
	// The rest is the server's Close with everyone still connected.
	start := time.Now()
	for s.out.Scan() {
	}
	_ = s.cmd.Wait()
	b.Logf("server shut down in %v", time.Since(start).Round(time.Millisecond))
}

func raiseFileLimit(tb testing.TB, need uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		tb.Fatal(err)
	}
	if lim.Cur >= need {
		return
	}
	lim.Cur = min(need, lim.Max)
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}

// dialAll joins n clients named prefix0.. to room, 8 at a time, and
// returns them with the time each started joining.
func dialAll(b *testing.B, url, room, prefix string, n int, opts dialOpts) ([]*client, []time.Time) {
	b.Helper()
	clients := make([]*client, n)
	started := make([]time.Time, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	var failed atomic.Value
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			started[i] = time.Now()
			c, err := dial(b, url, room, fmt.Sprint(prefix, i), opts)
			if err != nil {
				failed.Store(err)
				return
			}
			clients[i] = c
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	return clients, started
}

// mediaFigures are the counts a media benchmark takes at the start and end
// of its window.
type mediaFigures struct {
	packets, expected, unique int64
}

func collect(readers []*sfutest.TrackReader) mediaFigures {
	var f mediaFigures
	for _, r := range readers {
		s := r.Stats()
		f.packets += s.Packets
		f.expected += s.Expected
		f.unique += s.Unique
	}
	return f
}

// measureMedia runs the window over readers and reports the media figures.
func measureMedia(b *testing.B, srv *serverProcess, readers []*sfutest.TrackReader) {
	for _, r := range readers {
		r.Latencies(true) // discard the warm-up
	}
	self0, _ := sfutest.ProcessCPU(os.Getpid())
	cpu0, f0, t0 := srv.cpu(b), collect(readers), time.Now()
	w := benchWindow()
	deadline := time.NewTimer(w)
	<-deadline.C
	cpu1, f1, t1 := srv.cpu(b), collect(readers), time.Now()
	self1, _ := sfutest.ProcessCPU(os.Getpid())
	var lat []time.Duration
	for _, r := range readers {
		lat = append(lat, r.Latencies(false)...)
	}
	wall, cpu := t1.Sub(t0).Seconds(), (cpu1 - cpu0).Seconds()
	pkts := float64(f1.packets - f0.packets)
	expected := float64(f1.expected - f0.expected)
	lost := expected - float64(f1.unique-f0.unique)
	b.ReportMetric(100*cpu/wall, "server_cpu_%")
	// The clients' CPU: when it nears the machine's cores, the clients,
	// not the SFU, limit the figure.
	b.ReportMetric(100*(self1-self0).Seconds()/wall, "client_cpu_%")
	b.ReportMetric(pkts/wall, "fwd_pkts/s")
	if cpu > 0 {
		b.ReportMetric(pkts/cpu, "fwd_pkts/s/core")
		b.ReportMetric(cpu/(pkts/1000), "cpu_s/1000pkts")
	}
	if expected > 0 {
		b.ReportMetric(100*lost/expected, "loss_%")
	}
	b.ReportMetric(ms(sfutest.Percentile(lat, 50)), "p50_ms")
	b.ReportMetric(ms(sfutest.Percentile(lat, 99)), "p99_ms")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkSimulcast: one publisher (Opus + 720p/360p/180p VP8 simulcast)
// to N subscribers. Latency is publisher send to subscriber arrival over
// loopback, both clients' pion stacks included: an upper bound on what the
// SFU adds.
func BenchmarkSimulcast(b *testing.B) {
	for _, n := range []int{10, 50, 150} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			fx := loadFixtures(b)
			srv := startServer(b)
			ledger := sfutest.NewLedger()
			pubc, err := dial(b, srv.url, "bench", "publisher", dialOpts{})
			if err != nil {
				b.Fatal(err)
			}
			p, err := sfutest.Publish(pubc.room, fx, sfutest.PublisherOptions{Audio: true, Video: true, Ledger: ledger})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(p.Close)
			subs, started := dialAll(b, srv.url, "bench", "sub", n,
				dialOpts{ledgers: func(string) *sfutest.Ledger { return ledger }})
			var readers []*sfutest.TrackReader
			var firstAudio, firstVideo []time.Duration
			for i, s := range subs {
				if err := sfutest.AwaitErr(60*time.Second, func() bool {
					a, v := s.stats("publisher", lksdk.TrackKindAudio), s.stats("publisher", lksdk.TrackKindVideo)
					return a.Packets > 0 && v.KeyFrames > 0
				}); err != nil {
					b.Fatalf("%s: no media: %v", s.identity, err)
				}
				a, v := s.stats("publisher", lksdk.TrackKindAudio), s.stats("publisher", lksdk.TrackKindVideo)
				firstAudio = append(firstAudio, a.FirstPacket.Sub(started[i]))
				firstVideo = append(firstVideo, v.FirstKeyFrame.Sub(started[i]))
				readers = append(readers, s.reader("publisher", lksdk.TrackKindAudio), s.reader("publisher", lksdk.TrackKindVideo))
			}
			// Warm up until the bandwidth estimates let every subscriber
			// have the 720p layer, which the figure is about.
			if err := sfutest.AwaitErr(30*time.Second, func() bool {
				for _, s := range subs {
					if s.stats("publisher", lksdk.TrackKindVideo).Width != 1280 {
						return false
					}
				}
				return true
			}); err != nil {
				b.Logf("not every subscriber reached the 720p layer: %v", err)
			}
			b.ResetTimer()
			measureMedia(b, srv, readers)
			srv.stop(b) // its Stats while everyone is still there
			b.ReportMetric(float64(n), "subscribers")
			b.ReportMetric(ms(sfutest.Percentile(firstAudio, 50)), "join_to_audio_p50_ms")
			b.ReportMetric(ms(sfutest.Percentile(firstVideo, 50)), "join_to_video_p50_ms")
			b.ReportMetric(ms(sfutest.Percentile(firstVideo, 99)), "join_to_video_p99_ms")
			widths := map[int]int{}
			for _, s := range subs {
				widths[s.stats("publisher", lksdk.TrackKindVideo).Width]++
			}
			b.Logf("subscribers per forwarded layer width: %v; publisher key frame requests q/h/f %d/%d/%d",
				widths, p.KeyFrameRequests(0), p.KeyFrameRequests(1), p.KeyFrameRequests(2))
		})
	}
}

// BenchmarkAudioRoom25: 25 participants each publishing Opus and
// subscribed to the 24 others (600 forwarded streams).
func BenchmarkAudioRoom25(b *testing.B) {
	const n = 25
	fx := loadFixtures(b)
	srv := startServer(b)
	ledgers := map[string]*sfutest.Ledger{}
	for i := range n {
		ledgers[fmt.Sprint("p", i)] = sfutest.NewLedger()
	}
	clients, started := dialAll(b, srv.url, "audio", "p", n,
		dialOpts{ledgers: func(id string) *sfutest.Ledger { return ledgers[id] }})
	for _, c := range clients {
		p, err := sfutest.Publish(c.room, fx, sfutest.PublisherOptions{Audio: true, Ledger: ledgers[c.identity]})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(p.Close)
	}
	var readers []*sfutest.TrackReader
	var firstAudio []time.Duration
	for i, c := range clients {
		for j, other := range clients {
			if i == j {
				continue
			}
			if err := sfutest.AwaitErr(60*time.Second, func() bool {
				return c.stats(other.identity, lksdk.TrackKindAudio).Packets > 0
			}); err != nil {
				b.Fatalf("%s gets no audio from %s: %v", c.identity, other.identity, err)
			}
			readers = append(readers, c.reader(other.identity, lksdk.TrackKindAudio))
		}
		// Join to first audio: the latest joiner's view of the room.
		firstAudio = append(firstAudio, c.stats(clients[0].identity, lksdk.TrackKindAudio).FirstPacket.Sub(started[i]))
	}
	b.ResetTimer()
	measureMedia(b, srv, readers)
	srv.stop(b)
	b.ReportMetric(float64(len(readers)), "streams")
	b.ReportMetric(ms(sfutest.Percentile(firstAudio[1:], 50)), "join_to_audio_p50_ms")
}
