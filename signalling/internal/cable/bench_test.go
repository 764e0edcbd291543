package cable

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/stream"
)

// idleConns is how many connections BenchmarkIdleConnections opens (the
// issue's figure: memory for 10,000 idle connections).
const idleConns = 10_000

// raiseFileLimit lifts the open-file limit to need if it is lower: each
// connection is two descriptors here (both ends are in this process).
// Raising the hard limit needs privileges (root has them); without, the
// soft limit goes as high as the hard one allows.
func raiseFileLimit(tb testing.TB, need uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		tb.Fatal(err)
	}
	if lim.Cur >= need {
		return
	}
	want := syscall.Rlimit{Cur: need, Max: max(lim.Max, need)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		want = syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want)
	}
	if want.Cur < need {
		tb.Skipf("open-file limit %d is below the %d needed", want.Cur, need)
	}
}

// rssMB reads the process's resident set from /proc/self/status.
func rssMB(tb testing.TB) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		tb.Skip("no /proc/self/status: ", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb / 1024
		}
	}
	tb.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// heapAndStacks is the heap and goroutine stacks in use once garbage is
// collected and idle goroutines' stacks have shrunk (the collector halves
// a stack using under a quarter of it, once per cycle).
func heapAndStacks() (heap, stacks int64) {
	for range 8 {
		runtime.GC()
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse), int64(m.StackInuse)
}

// BenchmarkIdleConnections opens idleConns authenticated connections,
// each with a sync channel subscription over the real engine, and
// reports the memory the server holds for them. The clients run in a
// child process (this test binary again, as TestIdleClientProcess), so
// that the process measured holds only the server's halves.
func BenchmarkIdleConnections(b *testing.B) {
	raiseFileLimit(b, idleConns+1000)
	f := newEngineFixture(b, storagetest.SQLite, Config{})
	for i := range idleConns {
		f.user(fmt.Sprint("u", i))
	}
	heap0, stacks0 := heapAndStacks()
	rssBefore := rssMB(b)

	child := exec.Command(os.Args[0], "-test.run=^TestIdleClientProcess$", "-test.v")
	child.Env = append(os.Environ(), idleClientEnv+"="+f.wsURL)
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close() // the child closes its connections and exits
		_ = child.Wait()
	}()
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "ready" {
	}
	if sc.Text() != "ready" {
		b.Fatalf("client process ended before its connections were up: %v", child.Wait())
	}
	opened := time.Since(start)
	if n := f.srv.Connections(); n != idleConns {
		b.Fatalf("%d connections, want %d", n, idleConns)
	}
	heap1, stacks1 := heapAndStacks()
	rss := rssMB(b)
	b.ReportMetric(float64(heap1+stacks1-heap0-stacks0)/idleConns, "bytes/conn")
	b.ReportMetric(float64(stacks1-stacks0)/idleConns, "stack-bytes/conn")
	b.ReportMetric(rss, "MB-RSS")
	b.ReportMetric(rss-rssBefore, "MB-RSS-delta")
	b.ReportMetric(float64(runtime.NumGoroutine())/idleConns, "goroutines/conn")
	b.ReportMetric(float64(idleConns)/opened.Seconds(), "conns/s")
}

// idleClientEnv carries the WebSocket URL to TestIdleClientProcess.
const idleClientEnv = "PLEXUS_CABLE_IDLE_CLIENT_URL"

// TestIdleClientProcess is BenchmarkIdleConnections's client process,
// not a test: it opens idleConns connections as users u0, u1, ...,
// subscribes each to the sync channel, prints "ready" and holds them,
// without reading, until its standard input closes.
func TestIdleClientProcess(t *testing.T) {
	url := os.Getenv(idleClientEnv)
	if url == "" {
		t.Skip("BenchmarkIdleConnections's client process")
	}
	raiseFileLimit(t, idleConns+1000)
	light := websocket.Dialer{Subprotocols: []string{Subprotocol}, ReadBufferSize: 256, WriteBufferSize: 256, HandshakeTimeout: 30 * time.Second}
	sub, _ := json.Marshal(command{Command: cmdSubscribe, Identifier: identifier(map[string]string{"channel": SyncChannel})})
	conns := make([]*websocket.Conn, 0, idleConns)
	for i := range idleConns {
		ws, _, err := light.Dial(url, http.Header{"Authorization": {fmt.Sprint("Bearer tok-u", i)}})
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, ws)
		if err := ws.WriteMessage(websocket.TextMessage, sub); err != nil {
			t.Fatal(err)
		}
		// welcome, confirm_subscription, the initial sync; pings may
		// come between them.
		for seen := 0; seen < 3; {
			_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, msg, err := ws.ReadMessage()
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			if !strings.Contains(string(msg), `"type":"ping"`) {
				seen++
			}
		}
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, ws := range conns {
		ws.Close()
	}
}

// BenchmarkFanout measures send -> delivery latency over the WebSocket:
// N users subscribed to one room's channel, one sender storing messages
// at a fixed rate through the room service; each message carries its
// send time and every subscriber notes when it arrives.
//
// The subscribers run in a child process (this test binary again, as
// TestFanoutClientProcess), as real clients run outside the server: in
// one process their reader goroutines would wait in the server's run
// queue behind its work (Go polls the network only when it has nothing
// else to run), and their garbage would be collected at the server's
// expense. The two processes share the machine's cores either way.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		for _, rate := range []int{100, 1000} {
			b.Run(fmt.Sprintf("subscribers=%d/rate=%d", n, rate), func(b *testing.B) {
				fanout(b, n, rate, 2*time.Second)
			})
		}
	}
}

func fanout(b *testing.B, n, rate int, d time.Duration) {
	raiseFileLimit(b, uint64(n+1000))
	f := newEngineFixture(b, storagetest.SQLite, Config{})
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("@s%d:hs1", i)
		f.user(fmt.Sprint("s", i))
	}
	// The members join concurrently, so the room worker batches them.
	room := f.newRoom("@sender:hs1")
	var wg sync.WaitGroup
	work := make(chan string)
	for range 16 {
		wg.Go(func() {
			for u := range work {
				c := cjson.Obj().With("membership", cjson.Str("join"))
				if _, err := f.rooms.Append(f.ctx, room, rooms.LocalEvent{Type: "m.room.member", StateKey: &u, Sender: rooms.UserID(u), Content: c}); err != nil {
					b.Error(err)
				}
			}
		})
	}
	for _, u := range users {
		work <- u
	}
	close(work)
	wg.Wait()
	f.caughtUp()
	head, err := f.db.MaxStreamPos(f.ctx)
	if err != nil {
		b.Fatal(err)
	}
	since := stream.Token{Events: head, Aux: f.db.AuxPos()}.String()
	id := identifier(map[string]string{"channel": RoomChannel, "room_id": string(room), "since": since})
	count := rate * int(d/time.Second)

	child := exec.Command(os.Args[0], "-test.run=^TestFanoutClientProcess$")
	child.Env = append(os.Environ(), fanoutClientEnv+"="+fanoutJob{
		URL: f.wsURL, Subscribers: n, Messages: count, Identifier: id, Deadline: time.Now().Add(d + 2*time.Minute),
	}.encode())
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close() // the child closes its connections and exits
		_ = child.Wait()
	}()
	out := bufio.NewReader(stdout)
	for {
		line, err := out.ReadString('\n')
		if err != nil {
			b.Fatalf("client process ended before its subscriptions were up: %v", child.Wait())
		}
		if line == "ready\n" {
			break
		}
	}
	if got := f.srv.Connections(); got != n {
		b.Fatalf("%d connections, want %d", got, n)
	}

	framesBefore := value(f.srv.metrics.messagesSent)
	cpuBefore := cpuTime(b)
	b.ResetTimer()
	tick := time.NewTicker(time.Second / time.Duration(rate))
	var sends sync.WaitGroup
	for range count {
		<-tick.C
		sends.Go(func() {
			body := strconv.FormatInt(time.Now().UnixNano(), 10)
			c := cjson.Obj().With("msgtype", cjson.Str("m.text")).With("body", cjson.Str(body))
			if _, err := f.rooms.Append(f.ctx, room, rooms.LocalEvent{Type: "m.room.message", Sender: "@sender:hs1", Content: c}); err != nil {
				b.Error(err)
			}
		})
	}
	tick.Stop()
	sends.Wait()
	// The child writes its latencies once every subscriber has had every
	// message (or its connection failed).
	var total uint64
	if err := binary.Read(out, binary.LittleEndian, &total); err != nil {
		b.Fatalf("client process: %v (%v)", err, child.Wait())
	}
	latencies := make([]time.Duration, total)
	if err := binary.Read(out, binary.LittleEndian, latencies); err != nil {
		b.Fatalf("client process: %v (%v)", err, child.Wait())
	}
	b.StopTimer()
	cpu := cpuTime(b) - cpuBefore
	frames := value(f.srv.metrics.messagesSent) - framesBefore

	if len(latencies) != n*count {
		b.Fatalf("%d deliveries, want %d", len(latencies), n*count)
	}
	slices.Sort(latencies)
	ms := func(q float64) float64 {
		return float64(latencies[int(q*float64(len(latencies)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(ms(0.50), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
	b.ReportMetric(ms(1), "max-ms")
	// How many deliveries share a frame: each frame the server writes
	// carries every event since the subscription's last one.
	b.ReportMetric(float64(len(latencies))/frames, "deliveries/frame")
	// The server's CPU time (this process: the room service, the
	// syncer and the connections; the clients are the child's), which
	// unlike the latencies hardly depends on what else the machine runs.
	b.ReportMetric(float64(cpu.Microseconds())/float64(len(latencies)), "server-cpu-us/delivery")
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fanoutClientEnv carries a fanoutJob to TestFanoutClientProcess.
const fanoutClientEnv = "PLEXUS_CABLE_FANOUT_CLIENT"

// fanoutJob is what the fan-out client process does: connect as users
// s0 ... s<Subscribers-1>, subscribe each to Identifier and read until
// each has seen Messages bodies.
type fanoutJob struct {
	URL         string
	Subscribers int
	Messages    int
	Identifier  string
	Deadline    time.Time
}

func (j fanoutJob) encode() string {
	b, _ := json.Marshal(j)
	return string(b)
}

// bodyKey precedes a message body in a frame: the identifier is a JSON
// string inside the frame, so its own quotes are escaped and cannot
// match.
var bodyKey = []byte(`"body":"`)

// TestFanoutClientProcess is BenchmarkFanout's client process, not a
// test. Once every subscription is confirmed it prints "ready"; when
// every subscriber has its messages it writes the latencies to standard
// output (a little-endian uint64 count, then that many int64
// nanoseconds) and waits for standard input to close.
func TestFanoutClientProcess(t *testing.T) {
	env := os.Getenv(fanoutClientEnv)
	if env == "" {
		t.Skip("BenchmarkFanout's client process")
	}
	var job fanoutJob
	if err := json.Unmarshal([]byte(env), &job); err != nil {
		t.Fatal(err)
	}
	raiseFileLimit(t, uint64(job.Subscribers+1000))
	light := websocket.Dialer{Subprotocols: []string{Subprotocol}, ReadBufferSize: 4096, WriteBufferSize: 1024, HandshakeTimeout: 30 * time.Second}
	sub, _ := json.Marshal(command{Command: cmdSubscribe, Identifier: job.Identifier})
	conns := make([]*websocket.Conn, 0, job.Subscribers)
	defer func() {
		for _, ws := range conns {
			ws.Close()
		}
	}()
	for i := range job.Subscribers {
		ws, _, err := light.Dial(job.URL, http.Header{"Authorization": {fmt.Sprint("Bearer tok-s", i)}})
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, ws)
		if err := ws.WriteMessage(websocket.TextMessage, sub); err != nil {
			t.Fatal(err)
		}
		// welcome, then the confirmation; pings may come between.
		for confirmed := false; !confirmed; {
			_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, msg, err := ws.ReadMessage()
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			var fr frame
			if err := json.Unmarshal(msg, &fr); err != nil {
				t.Fatalf("connection %d: frame %s: %v", i, msg, err)
			}
			switch fr.Type {
			case "welcome", "ping":
			case "confirm_subscription":
				confirmed = true
			default:
				t.Fatalf("connection %d: frame %s", i, msg)
			}
		}
	}
	fmt.Println("ready")

	var (
		mu        sync.Mutex // guards latencies
		latencies = make([]int64, 0, job.Subscribers*job.Messages)
		received  sync.WaitGroup
	)
	for _, ws := range conns {
		received.Go(func() {
			local := make([]int64, 0, job.Messages)
			_ = ws.SetReadDeadline(job.Deadline)
			// Each frame is read into one reused buffer, and scanned for
			// the bodies (send times in nanoseconds) rather than decoded:
			// the clients share the server's cores.
			buf := make([]byte, 0, 4096)
			for len(local) < job.Messages {
				raw, err := readFrame(ws, buf[:0])
				if err != nil {
					t.Errorf("reading: %v", err)
					break
				}
				buf = raw[:0]
				now := time.Now().UnixNano()
				for rest := raw; ; {
					i := bytes.Index(rest, bodyKey)
					if i < 0 {
						break
					}
					rest = rest[i+len(bodyKey):]
					j := bytes.IndexByte(rest, '"')
					if ns, err := strconv.ParseInt(string(rest[:j]), 10, 64); err == nil {
						local = append(local, now-ns)
					}
				}
			}
			mu.Lock()
			latencies = append(latencies, local...)
			mu.Unlock()
		})
	}
	received.Wait()
	w := bufio.NewWriter(os.Stdout)
	_ = binary.Write(w, binary.LittleEndian, uint64(len(latencies)))
	_ = binary.Write(w, binary.LittleEndian, latencies)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// readFrame reads the next message into buf, growing it as needed.
func readFrame(ws *websocket.Conn, buf []byte) ([]byte, error) {
	_, r, err := ws.NextReader()
	if err != nil {
		return buf, err
	}
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, cap(buf))
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
