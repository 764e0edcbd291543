package signalling_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/storage/storagetest"
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
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, a.base+path, rd)
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

func benchUser(b *testing.B, srv *testServer, hc *http.Client, name string) *api {
	b.Helper()
	a := &api{base: srv.URL, hc: hc}
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

// cpuSeconds is the process's user+system CPU time so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// BenchmarkSyncDelivery measures send -> delivery latency over long-poll
// /sync: N members of one room each hold a /sync open; one sender sends
// at a fixed rate; each message carries its send time.
func BenchmarkSyncDelivery(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		for _, rate := range []int{100, 1000} {
			b.Run(fmt.Sprintf("subscribers=%d/rate=%d", n, rate), func(b *testing.B) {
				benchDelivery(b, n, rate)
			})
		}
	}
}

func benchDelivery(b *testing.B, n, rate int) {
	srv := startServer(b, storagetest.SQLite)
	hc := newBenchClient()
	sender := benchUser(b, srv, hc, "sender")
	var room struct {
		RoomID string `json:"room_id"`
	}
	if err := sender.do("POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat"}, &room); err != nil {
		b.Fatal(err)
	}
	members := make([]*api, n)
	for i := range members {
		members[i] = benchUser(b, srv, hc, fmt.Sprintf("m%d", i))
		if err := members[i].do("POST", "/_matrix/client/v3/join/"+url.PathEscape(room.RoomID), map[string]any{}, nil); err != nil {
			b.Fatal(err)
		}
	}
	// Everyone starts from the present.
	total := max(b.N, 200)
	var (
		mu   sync.Mutex
		lats []time.Duration
		got  atomic.Int64
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	ready := make(chan struct{}, n)
	for _, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var since string
			first := true
			for ctx.Err() == nil {
				q := "/_matrix/client/v3/sync?timeout=30000&filter=" + url.QueryEscape(`{"room":{"timeline":{"limit":100}}}`)
				if since != "" {
					q += "&since=" + url.QueryEscape(since)
				}
				var r struct {
					NextBatch string `json:"next_batch"`
					Rooms     struct {
						Join map[string]struct {
							Timeline struct {
								Events []struct {
									Type    string `json:"type"`
									Content struct {
										Sent int64 `json:"sent_us"`
									} `json:"content"`
								} `json:"events"`
							} `json:"timeline"`
						} `json:"join"`
					} `json:"rooms"`
				}
				if err := m.do("GET", q, nil, &r); err != nil {
					if ctx.Err() == nil {
						b.Error(err)
					}
					return
				}
				now := time.Now().UnixMicro()
				since = r.NextBatch
				if first {
					first = false
					ready <- struct{}{}
					continue
				}
				for _, jr := range r.Rooms.Join {
					for _, ev := range jr.Timeline.Events {
						if ev.Type == "m.room.message" && ev.Content.Sent > 0 {
							mu.Lock()
							lats = append(lats, time.Duration(now-ev.Content.Sent)*time.Microsecond)
							mu.Unlock()
							got.Add(1)
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
	cpu0 := cpuSeconds()
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	for i := range total {
		// Pace the sends: message i leaves at start + i*interval.
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		body := map[string]any{"msgtype": "m.text", "body": "x", "sent_us": time.Now().UnixMicro()}
		if err := sender.do("PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(room.RoomID)+"/send/m.room.message/t"+strconv.Itoa(i), body, nil); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for got.Load() < int64(total*n) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // waiting for delivery to finish, with a deadline
	}
	elapsed := time.Since(start)
	cpu := cpuSeconds() - cpu0
	b.StopTimer()
	cancel()
	if got.Load() < int64(total*n) {
		b.Fatalf("delivered %d of %d", got.Load(), total*n)
	}
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	b.ReportMetric(float64(lats[len(lats)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(total)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(cpu/float64(total)*1000, "cpu-s/1k-msgs")
	hc.CloseIdleConnections()
}

// BenchmarkSend measures messages sent per second over HTTP by 64
// concurrent senders, into one room and spread over 100 rooms, and the
// process CPU time per 1,000 messages (client side included: it runs in
// the same process).
func BenchmarkSend(b *testing.B) {
	for _, nRooms := range []int{1, 100} {
		b.Run(fmt.Sprintf("rooms=%d", nRooms), func(b *testing.B) {
			srv := startServer(b, storagetest.SQLite)
			hc := newBenchClient()
			const senders = 64
			users := make([]*api, senders)
			for i := range users {
				users[i] = benchUser(b, srv, hc, fmt.Sprintf("s%d", i))
			}
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
					if err := u.do("POST", "/_matrix/client/v3/join/"+url.PathEscape(r.RoomID), map[string]any{}, nil); err != nil {
						b.Fatal(err)
					}
				}
			}
			var next atomic.Int64
			b.ResetTimer()
			cpu0 := cpuSeconds()
			start := time.Now()
			var wg sync.WaitGroup
			for s, u := range users {
				wg.Add(1)
				go func() {
					defer wg.Done()
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
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N)*1000, "cpu-s/1k-msgs")
		})
	}
}
