package signalling_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// api is a minimal Client-Server API client for benchmarks: mautrix's
// generality costs more than the server under test.
type api struct {
	base  string
	token string
	user  string
	hc    *http.Client
}

func (a *api) do(method, path string, body any, out any) error {
	return a.doCtx(context.Background(), method, path, body, out)
}

func (a *api) doCtx(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func benchUser(b *testing.B, base string, hc *http.Client, name string) *api {
	b.Helper()
	a := &api{base: base, hc: hc}
	var r struct {
		AccessToken string `json:"access_token"`
		UserID      string `json:"user_id"`
	}
	if err := a.do("POST", "/_matrix/client/v3/register", map[string]any{
		"username": name, "password": "pw-" + name, "auth": map[string]string{"type": "m.login.dummy"},
	}, &r); err != nil {
		b.Fatal(err)
	}
	a.token, a.user = r.AccessToken, r.UserID
	return a
}

func newBenchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2048, MaxConnsPerHost: 0}}
}

// plexusProc is a `plexus serve` child process: the benchmarks measure
// its CPU time apart from the load generator's.
type plexusProc struct {
	url string
	cmd *exec.Cmd
}

// startPlexus builds bin/plexus into a temporary folder and serves on a
// free loopback port with rate limits off, TURN and metrics off.
func startPlexus(b *testing.B) *plexusProc {
	b.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		b.Fatal(err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	dir := b.TempDir()
	bin := filepath.Join(dir, "plexus")
	build := exec.Command("go", "build", "-tags", "goolm", "-o", bin, "./cmd/plexus")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "serve", "--listen", addr, "--data", filepath.Join(dir, "data"),
		"--turn-listen", "", "--sfu=off", "--federation-listen", "", "--metrics-listen", "off", "--rate-limits=off", "--log-level", "error")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &plexusProc{url: "http://" + addr, cmd: cmd}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.url + "/_matrix/client/versions")
		if err == nil {
			resp.Body.Close()
			return p
		}
		if time.Now().After(deadline) {
			b.Fatalf("plexus did not start: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // polling for the listener, with a deadline
	}
}

// cpu is the child's user+system CPU time so far, from /proc.
func (p *plexusProc) cpu(b *testing.B) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the parenthesised command name; utime and stime are the
	// 14th and 15th fields, in clock ticks (100 per second on Linux).
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}

// BenchmarkSyncDelivery measures send -> delivery latency over long-poll
// /sync: N members of one room each hold a /sync open; one sender sends
// at a fixed rate; each message carries its send time. The server is a
// child process, so cpu-s/1k-msgs is the server's alone.
func BenchmarkSyncDelivery(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			srv := startPlexus(b)
			hc := newBenchClient()
			sender := benchUser(b, srv.url, hc, "sender")
			var room struct {
				RoomID string `json:"room_id"`
			}
			if err := sender.do("POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat"}, &room); err != nil {
				b.Fatal(err)
			}
			members := make([]*api, n)
			var wg sync.WaitGroup
			for i := range members {
				wg.Go(func() {
					members[i] = benchUser(b, srv.url, hc, fmt.Sprintf("m%d", i))
					if err := members[i].do("POST", "/_matrix/client/v3/join/"+url.PathEscape(room.RoomID), map[string]any{}, nil); err != nil {
						b.Error(err)
					}
				})
			}
			wg.Wait()
			for _, rate := range []int{100, 1000} {
				b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
					benchDelivery(b, srv, sender, members, room.RoomID, rate)
				})
			}
		})
	}
}

func benchDelivery(b *testing.B, srv *plexusProc, sender *api, members []*api, roomID string, rate int) {
	n := len(members)
	total := max(b.N, 2*rate)
	var (
		mu      sync.Mutex
		lats    []time.Duration
		got     atomic.Int64
		limited atomic.Int64 // syncs whose timeline was cut short
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	ready := make(chan struct{}, n)
	for _, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var since string
			first := true
			for ctx.Err() == nil {
				q := "/_matrix/client/v3/sync?timeout=30000&filter=" + url.QueryEscape(`{"room":{"timeline":{"limit":1000}}}`)
				if since != "" {
					q += "&since=" + url.QueryEscape(since)
				}
				var r struct {
					NextBatch string `json:"next_batch"`
					Rooms     struct {
						Join map[string]struct {
							Timeline struct {
								Events    []benchEvent `json:"events"`
								Limited   bool         `json:"limited"`
								PrevBatch string       `json:"prev_batch"`
							} `json:"timeline"`
						} `json:"join"`
					} `json:"rooms"`
				}
				if err := m.doCtx(ctx, "GET", q, nil, &r); err != nil {
					if ctx.Err() == nil {
						b.Error(err)
					}
					return
				}
				now := time.Now().UnixMicro()
				prevSince := since
				since = r.NextBatch
				if first {
					// The initial sync: from here on, everything is new.
					first = false
					ready <- struct{}{}
					continue
				}
				note := func(evs []benchEvent, at int64) {
					for _, ev := range evs {
						if ev.Type == "m.room.message" && ev.Content.Sent > 0 {
							mu.Lock()
							lats = append(lats, time.Duration(at-ev.Content.Sent)*time.Microsecond)
							mu.Unlock()
							got.Add(1)
						}
					}
				}
				for id, jr := range r.Rooms.Join {
					note(jr.Timeline.Events, now)
					if jr.Timeline.Limited {
						// More arrived than the timeline holds: page back
						// to the previous token, as a client does, and
						// count those events as delivered when they come.
						limited.Add(1)
						if err := fillLimited(ctx, m, id, jr.Timeline.PrevBatch, prevSince, note); err != nil && ctx.Err() == nil {
							b.Error(err)
							return
						}
					}
				}
			}
		}()
	}
	for range n {
		<-ready
	}
	b.ResetTimer()
	cpu0 := srv.cpu(b)
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	var sends sync.WaitGroup
	for i := range total {
		// Pace the sends: message i leaves at start + i*interval, each on
		// its own goroutine so a slow response does not hold back the next.
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		sends.Go(func() {
			body := map[string]any{"msgtype": "m.text", "body": "x", "sent_us": time.Now().UnixMicro()}
			if err := sender.do("PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/send/m.room.message/r"+strconv.Itoa(rate)+"-"+strconv.Itoa(i), body, nil); err != nil {
				b.Error(err)
			}
		})
	}
	sends.Wait()
	deadline := time.Now().Add(120 * time.Second)
	for got.Load() < int64(total*n) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // waiting for delivery to finish, with a deadline
	}
	elapsed := time.Since(start)
	cpu := srv.cpu(b) - cpu0
	b.StopTimer()
	cancel()
	if got.Load() < int64(total*n) {
		b.Fatalf("delivered %d of %d", got.Load(), total*n)
	}
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	b.ReportMetric(float64(lats[len(lats)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(total)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(cpu/float64(total)*1000, "server-cpu-s/1k-msgs")
	b.ReportMetric(float64(limited.Load()), "limited-syncs")
}

// BenchmarkSend measures messages sent per second over HTTP by 64
// concurrent senders, into one room and spread over 100 rooms, and the
// server's CPU time per 1,000 messages (the server is a child process).
func BenchmarkSend(b *testing.B) {
	for _, nRooms := range []int{1, 100} {
		b.Run(fmt.Sprintf("rooms=%d", nRooms), func(b *testing.B) {
			srv := startPlexus(b)
			hc := newBenchClient()
			const senders = 64
			users := make([]*api, senders)
			var wg sync.WaitGroup
			for i := range users {
				wg.Go(func() { users[i] = benchUser(b, srv.url, hc, fmt.Sprintf("s%d", i)) })
			}
			wg.Wait()
			roomIDs := make([]string, nRooms)
			for i := range roomIDs {
				var r struct {
					RoomID string `json:"room_id"`
				}
				if err := users[0].do("POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat"}, &r); err != nil {
					b.Fatal(err)
				}
				roomIDs[i] = r.RoomID
				for _, u := range users[1:] {
					wg.Go(func() {
						if err := u.do("POST", "/_matrix/client/v3/join/"+url.PathEscape(r.RoomID), map[string]any{}, nil); err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
			}
			var next atomic.Int64
			b.ResetTimer()
			cpu0 := srv.cpu(b)
			start := time.Now()
			for s, u := range users {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						room := roomIDs[int(i)%nRooms]
						path := "/_matrix/client/v3/rooms/" + url.PathEscape(room) + "/send/m.room.message/b" + strconv.FormatInt(i, 10) + "-" + strconv.Itoa(s)
						if err := u.do("PUT", path, map[string]any{"msgtype": "m.text", "body": "hi"}, nil); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			b.ReportMetric((srv.cpu(b)-cpu0)/float64(b.N)*1000, "server-cpu-s/1k-msgs")
		})
	}
}

// benchEvent is what the delivery benchmark reads of a timeline event.
type benchEvent struct {
	Type    string `json:"type"`
	Content struct {
		Sent int64 `json:"sent_us"`
	} `json:"content"`
}

// fillLimited pages /messages back from a limited timeline's prev_batch
// to the token of the sync before it, handing each page to note with the
// time it arrived.
func fillLimited(ctx context.Context, m *api, roomID, from, to string, note func([]benchEvent, int64)) error {
	for from != "" {
		q := "/_matrix/client/v3/rooms/" + url.PathEscape(roomID) + "/messages?dir=b&limit=1000&from=" + url.QueryEscape(from) + "&to=" + url.QueryEscape(to)
		var page struct {
			Chunk []benchEvent `json:"chunk"`
			End   string       `json:"end"`
		}
		if err := m.doCtx(ctx, "GET", q, nil, &page); err != nil {
			return err
		}
		note(page.Chunk, time.Now().UnixMicro())
		if len(page.Chunk) == 0 {
			return nil
		}
		from = page.End
	}
	return nil
}
