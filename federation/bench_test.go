package federation_test

// Benchmarks for issue 4's figures: events per second between two
// servers, send -> remote client delivery latency, catch-up after a long
// outage, and joining big rooms over federation. Every server is a real
// plexus process (fedtest); the clients speak the Client-Server API over
// loopback HTTP. Each benchmark does a fixed amount of work per run and
// reports its figures with b.ReportMetric, so run them once:
//
//	go test -run '^$' -bench Federation -benchtime 1x ./federation/
//
// All set-up (building plexus, starting servers, registering users) runs
// inside the benchmark functions, so a plain `go test` does none of it.
// With PLEXUS_BENCH_PERF=<folder>, the servers are profiled with
// `perf record -g` during each measured part (see startPerf).

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/federation/internal/transport"
	"github.com/plexus-chat/plexus/internal/fedtest"
	"github.com/plexus-chat/plexus/internal/keyring"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/rooms"
)

// benchAPI is a minimal Client-Server API client: mautrix's generality
// would cost more than the servers under test.
type benchAPI struct {
	base  string
	token string
	user  string
}

var benchHTTP = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

func (a *benchAPI) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	res, err := benchHTTP.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", method, path, res.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

func (a *benchAPI) createRoom(ctx context.Context) (string, error) {
	var r struct {
		RoomID string `json:"room_id"`
	}
	err := a.do(ctx, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat"}, &r)
	return r.RoomID, err
}

// join joins a room, through via when the room is on another server.
func (a *benchAPI) join(ctx context.Context, roomID, via string) error {
	path := "/_matrix/client/v3/join/" + url.PathEscape(roomID)
	if via != "" {
		path += "?server_name=" + url.QueryEscape(via)
	}
	return a.do(ctx, "POST", path, map[string]any{}, nil)
}

// send sends a text message stamped with its send time in microseconds
// (sent_us), from which the receiving side measures delivery latency.
func (a *benchAPI) send(ctx context.Context, roomID, txnID string) (string, error) {
	var r struct {
		EventID string `json:"event_id"`
	}
	body := map[string]any{"msgtype": "m.text", "body": "bench " + txnID, "sent_us": time.Now().UnixMicro()}
	err := a.do(ctx, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/send/m.room.message/"+url.PathEscape(txnID), body, &r)
	return r.EventID, err
}

// parallel runs fn(0..n-1) on workers goroutines and returns the first
// error.
func parallel(n, workers int, fn func(i int) error) error {
	var next atomic.Int64
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					next.Store(int64(n)) // stop handing out work
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// registerMany makes accounts prefix0, prefix1, ... on s concurrently
// (m.login.dummy; the password hash is most of each registration's cost).
func registerMany(b *testing.B, s *fedtest.Server, prefix string, n int) []*benchAPI {
	b.Helper()
	users := make([]*benchAPI, n)
	err := parallel(n, 16, func(i int) error {
		a := &benchAPI{base: s.ClientURL}
		name := fmt.Sprintf("%s%d", prefix, i)
		var r struct {
			AccessToken string `json:"access_token"`
			UserID      string `json:"user_id"`
		}
		if err := a.do(context.Background(), "POST", "/_matrix/client/v3/register", map[string]any{
			"username": name, "password": "pw-" + name, "auth": map[string]string{"type": "m.login.dummy"},
		}, &r); err != nil {
			return err
		}
		a.token, a.user = r.AccessToken, r.UserID
		users[i] = a
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return users
}

// joinAll makes every user join the room, concurrently.
func joinAll(b *testing.B, users []*benchAPI, roomID, via string) {
	b.Helper()
	if err := parallel(len(users), 16, func(i int) error {
		return users[i].join(context.Background(), roomID, via)
	}); err != nil {
		b.Fatal(err)
	}
}

// benchFederation starts hs1 and hs2 on the backend. fedtest builds plexus
// without the race detector here (benchmarks do not run under -race).
func benchFederation(b *testing.B, backend string) *fedtest.Federation {
	b.Helper()
	var opts fedtest.Options
	if backend == storagetest.Postgres {
		opts.Postgres = func(string) string {
			dsn, _ := storagetest.Fresh(b, backend)
			return dsn
		}
	}
	f := fedtest.New(b, opts, "hs1", "hs2")
	f.Start(b)
	return f
}

// syncWatcher long-polls /sync for one user and records the delivery
// latency of every message stamped with sent_us.
type syncWatcher struct {
	mu      sync.Mutex
	lats    []time.Duration
	limited int // timelines cut short: messages in them were not seen

	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

type syncResp struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			Timeline struct {
				Limited bool `json:"limited"`
				Events  []struct {
					Type    string `json:"type"`
					Content struct {
						SentUS int64 `json:"sent_us"`
					} `json:"content"`
				} `json:"events"`
			} `json:"timeline"`
		} `json:"join"`
	} `json:"rooms"`
}

// watchSync does an initial sync (so that everything after it is new)
// and then follows the user's /sync stream until stop.
func watchSync(b *testing.B, a *benchAPI) *syncWatcher {
	b.Helper()
	filter := url.QueryEscape(`{"room":{"timeline":{"limit":1000},"state":{"lazy_load_members":true}},"presence":{"not_types":["*"]}}`)
	var first syncResp
	if err := a.do(context.Background(), "GET", "/_matrix/client/v3/sync?timeout=0&filter="+filter, nil, &first); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &syncWatcher{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		since := first.NextBatch
		for ctx.Err() == nil {
			var r syncResp
			err := a.do(ctx, "GET", "/_matrix/client/v3/sync?timeout=30000&filter="+filter+"&since="+url.QueryEscape(since), nil, &r)
			if err != nil {
				if ctx.Err() == nil {
					w.mu.Lock()
					w.err = err
					w.mu.Unlock()
				}
				return
			}
			now := time.Now().UnixMicro()
			since = r.NextBatch
			w.mu.Lock()
			for _, jr := range r.Rooms.Join {
				if jr.Timeline.Limited {
					w.limited++
				}
				for _, ev := range jr.Timeline.Events {
					if ev.Type == "m.room.message" && ev.Content.SentUS > 0 {
						w.lats = append(w.lats, time.Duration(now-ev.Content.SentUS)*time.Microsecond)
					}
				}
			}
			w.mu.Unlock()
		}
	}()
	b.Cleanup(func() { w.stop() })
	return w
}

// received waits until the user has received n stamped messages.
func (w *syncWatcher) received(b *testing.B, n int, d time.Duration) {
	b.Helper()
	waitFor(b, d, "hs2's client to receive every message", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		switch {
		case w.err != nil:
			b.Fatalf("/sync: %v", w.err)
		case w.limited > 0:
			b.Fatalf("a /sync timeline was limited: messages were skipped")
		}
		return len(w.lats) >= n
	})
}

// stop ends the stream and returns the latencies seen, sorted.
func (w *syncWatcher) stop() []time.Duration {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	slices.Sort(w.lats)
	return w.lats
}

// waitFor polls cond until it holds, failing the benchmark after d.
func waitFor(b *testing.B, d time.Duration, what string, cond func() bool) {
	b.Helper()
	fedtest.Eventually(b, d, what, func() (bool, error) { return cond(), nil })
}

func reportLatency(b *testing.B, lats []time.Duration) {
	if len(lats) == 0 {
		b.Fatal("no latencies recorded")
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(lats[len(lats)/2]), "p50-ms")
	b.ReportMetric(ms(lats[min(len(lats)-1, len(lats)*99/100)]), "p99-ms")
}

// BenchmarkFederationThroughput: 8 users on hs1 send 5,000 messages as
// fast as hs1 takes them, into one room or spread over 100 rooms; a user
// on hs2 in every room follows /sync. events/s is messages over the time
// from the first send until hs2's client has received the last;
// hs1-accept/s is how fast hs1 answered the sends. p50/p99 are the
// delivery latencies under that load (queueing included).
func BenchmarkFederationThroughput(b *testing.B) {
	for _, backend := range storagetest.Backends {
		for _, nRooms := range []int{1, 100} {
			b.Run(fmt.Sprintf("%s/rooms=%d", backend, nRooms), func(b *testing.B) {
				ctx := context.Background()
				setup := time.Now()
				f := benchFederation(b, backend)
				senders := registerMany(b, f.Servers["hs1"], "sender", 8)
				receiver := registerMany(b, f.Servers["hs2"], "receiver", 1)[0]
				roomIDs := make([]string, nRooms)
				for i := range roomIDs {
					id, err := senders[0].createRoom(ctx)
					if err != nil {
						b.Fatal(err)
					}
					roomIDs[i] = id
					joinAll(b, senders[1:], id, "")
				}
				if err := parallel(nRooms, 8, func(i int) error { return receiver.join(ctx, roomIDs[i], "hs1") }); err != nil {
					b.Fatal(err)
				}
				w := watchSync(b, receiver)
				setupTime := time.Since(setup)

				const msgs = 5000
				total := max(b.N, msgs)
				stopPerf := startPerf(b, fmt.Sprintf("throughput-%s-%d", backend, nRooms), f.Servers["hs1"], f.Servers["hs2"])
				b.ResetTimer()
				start := time.Now()
				if err := parallel(total, len(senders), func(i int) error {
					_, err := senders[i%len(senders)].send(ctx, roomIDs[i%nRooms], "t"+strconv.Itoa(i))
					return err
				}); err != nil {
					b.Fatal(err)
				}
				accepted := time.Since(start)
				w.received(b, total, 5*time.Minute)
				elapsed := time.Since(start)
				b.StopTimer()
				stopPerf()
				lats := w.stop()
				b.ReportMetric(float64(total)/elapsed.Seconds(), "events/s")
				b.ReportMetric(float64(total)/accepted.Seconds(), "hs1-accept/s")
				b.ReportMetric(setupTime.Seconds(), "setup-s")
				reportLatency(b, lats)
			})
		}
	}
}

// BenchmarkFederationLatency: one user on hs1 sends 500 messages to one
// room at a steady 50 per second (below the throughput limit, so the
// figure is delivery latency, not queueing); a user on hs2 follows /sync.
// Latency is from just before the client's PUT /send on hs1 to the moment
// hs2's /sync answer carrying the message is decoded.
func BenchmarkFederationLatency(b *testing.B) {
	for _, backend := range storagetest.Backends {
		b.Run(backend, func(b *testing.B) {
			ctx := context.Background()
			f := benchFederation(b, backend)
			sender := registerMany(b, f.Servers["hs1"], "sender", 1)[0]
			receiver := registerMany(b, f.Servers["hs2"], "receiver", 1)[0]
			roomID, err := sender.createRoom(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if err := receiver.join(ctx, roomID, "hs1"); err != nil {
				b.Fatal(err)
			}
			w := watchSync(b, receiver)
			const rate, msgs = 50, 500
			total := max(b.N, msgs)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			var sendErr atomic.Value
			for i := range total {
				// Message i leaves at start + i/rate, each on its own
				// goroutine so a slow answer does not hold back the next.
				time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / rate)))
				wg.Go(func() {
					if _, err := sender.send(ctx, roomID, "l"+strconv.Itoa(i)); err != nil {
						sendErr.Store(err)
					}
				})
			}
			wg.Wait()
			if err, _ := sendErr.Load().(error); err != nil {
				b.Fatal(err)
			}
			w.received(b, total, time.Minute)
			b.StopTimer()
			reportLatency(b, w.stop())
		})
	}
}

// BenchmarkFederationCatchUp: hs2 is stopped while 8 users on hs1 send
// 10,000 messages into a room hs2 is in; then hs2 starts and its user
// sends one message (which tells hs1 that hs2 is back). catch-up-s is the
// time from starting hs2 until hs2 has placed every event hs1 has; it
// includes the process start (start-s).
func BenchmarkFederationCatchUp(b *testing.B) {
	for _, backend := range storagetest.Backends {
		b.Run(backend, func(b *testing.B) {
			ctx := context.Background()
			setup := time.Now()
			f := benchFederation(b, backend)
			hs1, hs2 := f.Servers["hs1"], f.Servers["hs2"]
			senders := registerMany(b, hs1, "sender", 8)
			bob := registerMany(b, hs2, "bob", 1)[0]
			roomID, err := senders[0].createRoom(ctx)
			if err != nil {
				b.Fatal(err)
			}
			joinAll(b, senders[1:], roomID, "")
			if err := bob.join(ctx, roomID, "hs1"); err != nil {
				b.Fatal(err)
			}
			// hs2 holds the state before bob's join as outliers: its
			// placed events are the join and what follows.
			before := hs2.CountPlaced(b, roomID)
			hs2.Stop(b)
			missed := max(b.N, 10000)
			ids := make([]string, missed)
			if err := parallel(missed, len(senders), func(i int) error {
				id, err := senders[i%len(senders)].send(ctx, roomID, "c"+strconv.Itoa(i))
				ids[i] = id
				return err
			}); err != nil {
				b.Fatal(err)
			}
			setupTime := time.Since(setup)

			b.ResetTimer()
			start := time.Now()
			hs2.Start(b)
			up := time.Since(start)
			stopPerf := startPerf(b, "catchup-"+backend, hs1, hs2)
			if _, err := bob.send(ctx, roomID, "back"); err != nil {
				b.Fatal(err)
			}
			want := before + missed + 1 // and bob's message
			waitFor(b, 10*time.Minute, "hs2 to place every missed event", func() bool { return hs2.CountPlaced(b, roomID) >= want })
			elapsed := time.Since(start)
			b.StopTimer()
			stopPerf()
			g := hs2.Graph(b, roomID)
			for _, id := range ids {
				if _, ok := g.Prevs[id]; !ok {
					b.Fatalf("hs2 has not placed %s", id)
				}
			}
			b.ReportMetric(elapsed.Seconds(), "catch-up-s")
			b.ReportMetric(up.Seconds(), "start-s")
			b.ReportMetric(setupTime.Seconds(), "setup-s")
			b.ReportMetric(float64(missed)/(elapsed-up).Seconds(), "events/s")
		})
	}
}

// BenchmarkFederationJoin: rooms on hs1 with 1,000 and 10,000 joined
// members (local users of hs1, registered once and joined concurrently
// over the client API; setup-register-s and setup-join-s say how long
// that took). For each size two servers join the room for the first
// time, one with full-state joins (--federation-partial-joins=off) and one
// with partial-state joins (the default):
//
//   - full-join-N-s: a user of the full-state server completes POST /join:
//     make_join, send_join (full state), checking and storing the room;
//   - partial-join-N-s: the same on the partial-state server: send_join
//     with omit_members, the room stored without its members, POST /join
//     answered; the user can send and receive from then on;
//   - partial-complete-N-s: from the same start until the partial-state
//     server has fetched and stored the full state in the background (its
//     copy of the room holds every member);
//   - send_join-{full,partial}-{ms,MB}: the resident's side alone: make_join
//     plus send_join v2 with and without omit_members for a fresh user,
//     signed with the joining server's key from this process, and the size
//     of the answer.
//
// Registering 10,000 accounts costs 10,000 argon2id hashes, so set-up
// takes minutes; the timer runs over all of it (ns/op is not a figure
// here) so that the framework never runs it twice.
func BenchmarkFederationJoin(b *testing.B) {
	for _, backend := range storagetest.Backends {
		b.Run(backend, func(b *testing.B) {
			benchJoin(b, backend)
		})
	}
}

func benchJoin(b *testing.B, backend string) {
	ctx := context.Background()
	sizes := []int{1000, 10000}
	// hs2 and hs3 join the 1,000-member room, hs4 and hs5 the other; the
	// even ones with full-state joins.
	opts := fedtest.Options{ServerArgs: map[string][]string{
		"hs2": {"--federation-partial-joins=off"},
		"hs4": {"--federation-partial-joins=off"},
	}}
	if backend == storagetest.Postgres {
		opts.Postgres = func(string) string {
			dsn, _ := storagetest.Fresh(b, backend)
			return dsn
		}
	}
	f := fedtest.New(b, opts, "hs1", "hs2", "hs3", "hs4", "hs5")
	f.Start(b)
	hs1 := f.Servers["hs1"]
	t0 := time.Now()
	users := registerMany(b, hs1, "m", sizes[len(sizes)-1])
	b.ReportMetric(time.Since(t0).Seconds(), "setup-register-s")
	b.Logf("registered %d users in %v", len(users), time.Since(t0))
	members := func(s *fedtest.Server, roomID string) int {
		n := 0
		for k := range s.Graph(b, roomID).State {
			if strings.HasPrefix(k, "m.room.member\x00") {
				n++
			}
		}
		return n
	}
	for i, size := range sizes {
		fullServer := f.Servers[fmt.Sprintf("hs%d", 2*i+2)]
		partialServer := f.Servers[fmt.Sprintf("hs%d", 2*i+3)]
		t1 := time.Now()
		roomID, err := users[0].createRoom(ctx)
		if err != nil {
			b.Fatal(err)
		}
		joinAll(b, users[1:size], roomID, "")
		b.ReportMetric(time.Since(t1).Seconds(), fmt.Sprintf("setup-join-%d-s", size))
		b.Logf("%d members joined in %v", size, time.Since(t1))

		for _, js := range []struct {
			server *fedtest.Server
			mode   string
		}{{fullServer, "full"}, {partialServer, "partial"}} {
			joiner := registerMany(b, js.server, "joiner", 1)[0]
			stopPerf := startPerf(b, fmt.Sprintf("join-%s-%s-%d", js.mode, backend, size), hs1, js.server)
			start := time.Now()
			if err := joiner.join(ctx, roomID, "hs1"); err != nil {
				b.Fatal(err)
			}
			joined := time.Since(start)
			b.ReportMetric(joined.Seconds(), fmt.Sprintf("%s-join-%d-s", js.mode, size))
			b.Logf("%d members: %s-state join through the client API in %v", size, js.mode, joined)
			if js.mode == "full" {
				stopPerf()
				if n := members(js.server, roomID); n != size+1 {
					b.Fatalf("%s's copy has %d members after a full-state join, want %d", js.server.Name, n, size+1)
				}
				continue
			}
			fedtest.Eventually(b, 10*time.Minute, "the partial-state room to be completed", func() (bool, error) {
				return !js.server.PartialState(b, roomID), nil
			})
			complete := time.Since(start)
			stopPerf()
			// Both joiners are members by now: compare with the resident.
			if n, want := members(js.server, roomID), members(hs1, roomID); n != want {
				b.Fatalf("%s's copy has %d members after completing its state, hs1's %d", js.server.Name, n, want)
			}
			b.ReportMetric(complete.Seconds(), fmt.Sprintf("partial-complete-%d-s", size))
			b.Logf("%d members: partial-state room completed %v after the join began", size, complete)
		}

		sj := newSendJoiner(b, f, fullServer.Name)
		for _, omit := range []bool{false, true} {
			name := "full"
			if omit {
				name = "partial"
			}
			d, size2, state, chain := sj.join(b, roomID, fmt.Sprintf("@sj_%s:%s", name, fullServer.Name), omit)
			b.ReportMetric(d.Seconds()*1000, fmt.Sprintf("send_join-%s-%d-ms", name, size))
			b.ReportMetric(float64(size2)/1e6, fmt.Sprintf("send_join-%s-%d-MB", name, size))
			b.Logf("%d members: send_join %s: %v, %d bytes, %d state events, %d auth chain events", size, name, d, size2, state, chain)
		}
	}
}

// startPerf records the servers' CPU profiles (perf record -g) during a
// benchmark's measured part, if PLEXUS_BENCH_PERF names a folder: the
// files are <server>-<tag>.data there. The returned func stops perf.
func startPerf(b *testing.B, tag string, servers ...*fedtest.Server) func() {
	dir := os.Getenv("PLEXUS_BENCH_PERF")
	if dir == "" {
		return func() {}
	}
	var cmds []*exec.Cmd
	for _, s := range servers {
		out := filepath.Join(dir, s.Name+"-"+tag+".data")
		cmd := exec.Command("perf", "record", "-g", "-F", "499", "-o", out, "-p", strconv.Itoa(s.PID()))
		if err := cmd.Start(); err != nil {
			b.Fatalf("perf: %v", err)
		}
		cmds = append(cmds, cmd)
	}
	// perf attaches within milliseconds; there is no wait for it, so the
	// measured times stay the same with or without profiling.
	return func() {
		for _, cmd := range cmds {
			_ = cmd.Process.Signal(os.Interrupt)
			_ = cmd.Wait()
		}
	}
}

// sendJoiner speaks make_join/send_join to hs1 as another server of the
// federation: it signs requests and the join event with that server's
// key, which hs1 fetches from it as it would for its own requests.
type sendJoiner struct {
	client *transport.Client
	rooms  *rooms.Service
}

func newSendJoiner(b *testing.B, f *fedtest.Federation, as string) *sendJoiner {
	b.Helper()
	key, err := keyring.Load(f.Servers[as].DataDir)
	if err != nil {
		b.Fatal(err)
	}
	pem, err := os.ReadFile(f.CAFile())
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		b.Fatal("no certificates in the federation's CA file")
	}
	client, err := transport.NewClient(transport.Config{
		ServerName: as, KeyID: key.KeyID(), Key: key.PrivateKey(),
		Resolve: map[string]string{"hs1": f.Servers["hs1"].FedAddr}, RootCAs: pool, Timeout: 5 * time.Minute,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Close() })
	// A room service of our own, only for Complete (hashing and signing
	// the template as that server); its store is never written.
	db, err := storage.Open(context.Background(), "", b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	svc, err := rooms.New(rooms.Config{Signer: rooms.Signer{Server: rooms.ServerName(as), KeyID: key.KeyID(), Key: key.PrivateKey()}}, rooms.Deps{Store: db})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { svc.Close() })
	return &sendJoiner{client: client, rooms: svc}
}

// join runs make_join and send_join v2 for userID and returns the time
// both took, the size of the send_join answer and its event counts.
func (s *sendJoiner) join(b *testing.B, roomID, userID string, omitMembers bool) (time.Duration, int, int, int) {
	b.Helper()
	ctx := context.Background()
	vers := url.Values{}
	for _, v := range rooms.SupportedVersions() {
		vers.Add("ver", v)
	}
	start := time.Now()
	var made struct {
		RoomVersion string          `json:"room_version"`
		Event       json.RawMessage `json:"event"`
	}
	if err := s.client.Do(ctx, "hs1", "GET", "/_matrix/federation/v1/make_join/"+url.PathEscape(roomID)+"/"+url.PathEscape(userID)+"?"+vers.Encode(), nil, &made); err != nil {
		b.Fatal(err)
	}
	ev, err := s.rooms.Complete(made.RoomVersion, made.Event)
	if err != nil {
		b.Fatal(err)
	}
	path := "/_matrix/federation/v2/send_join/" + url.PathEscape(roomID) + "/" + url.PathEscape(string(ev.ID()))
	if omitMembers {
		path += "?omit_members=true"
	}
	var raw json.RawMessage
	if err := s.client.Do(ctx, "hs1", "PUT", path, json.RawMessage(ev.JSON()), &raw); err != nil {
		b.Fatal(err)
	}
	d := time.Since(start)
	var resp struct {
		State          []json.RawMessage `json:"state"`
		AuthChain      []json.RawMessage `json:"auth_chain"`
		MembersOmitted bool              `json:"members_omitted"`
	}
	if err := json.Unmarshal(raw, &resp); err != nil {
		b.Fatal(err)
	}
	if resp.MembersOmitted != omitMembers {
		b.Fatal(errors.New("members_omitted does not match the request"))
	}
	return d, len(raw), len(resp.State), len(resp.AuthChain)
}
