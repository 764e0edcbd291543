package status

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/signalling/internal/endpoint"
	"github.com/plexus-chat/plexus/signalling/internal/endpoint/endpointtest"
)

// counter is a source whose numbers go up by one each time it is asked.
type counter struct{ n atomic.Int64 }

func (c *counter) Status(context.Context) (any, error) {
	n := c.n.Add(1)
	return map[string]any{"participants": n, "rooms": 2, "name": "sfu", "list": []int{1}}, nil
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHistoryRing(t *testing.T) {
	tick := make(chan time.Time)
	var clock atomic.Int64
	clock.Store(1_000)
	sfu := &counter{}
	broken := SourceFunc(func(context.Context) (any, error) { return nil, errors.New("down") })
	rooms := SourceFunc(func(context.Context) (any, error) {
		t.Error("an unsampled source was sampled")
		return nil, nil
	})
	s, err := New(Config{Samples: 3, Interval: time.Second}, Deps{
		Sources: map[string]Source{"sfu": sfu, "turn": broken, "rooms": rooms},
		Sampled: []string{"sfu", "turn"},
		Now:     func() time.Time { return time.UnixMilli(clock.Load()) },
		Tick:    tick,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 5 {
		clock.Store(int64(1000 * (i + 1)))
		tick <- time.Time{}
		// The tick is taken before the sample is: wait for the sample.
		waitFor(t, "a sample", func() bool { return len(s.History().Sources["turn"]) == min(i+1, 3) && sfu.n.Load() == int64(i+1) })
	}
	waitFor(t, "the fifth sample stored", func() bool {
		h := s.History().Sources["sfu"]
		return len(h) == 3 && h[2].Values["participants"] == 5
	})
	h := s.History()
	if h.IntervalMS != 1000 || len(h.Sources) != 2 {
		t.Fatalf("history %+v", h)
	}
	for i, smp := range h.Sources["sfu"] {
		want := float64(i + 3) // the ring kept the last three of five
		if smp.Values["participants"] != want || smp.Values["rooms"] != 2 || len(smp.Values) != 2 || smp.TS != int64(1000*(i+3)) {
			t.Errorf("sample %d = %+v, want participants %v", i, smp, want)
		}
	}
	for _, smp := range h.Sources["turn"] {
		if smp.Error != "down" || smp.Values != nil {
			t.Errorf("failed sample %+v", smp)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestNewRefusesUnknownSampled(t *testing.T) {
	if _, err := New(Config{}, Deps{Sources: map[string]Source{"a": &counter{}}, Sampled: []string{"b"}}); err == nil {
		t.Error("a sampled name that is no source was accepted")
	}
	if _, err := New(Config{}, Deps{Sources: map[string]Source{"a": nil}}); err == nil {
		t.Error("a nil source was accepted")
	}
}

// TestSnapshotOverHTTP serves the endpoints on loopback: admins get
// every source's status, a failing or hanging source shows as an error
// without holding up the rest, and others get 403.
func TestSnapshotOverHTTP(t *testing.T) {
	release := make(chan struct{})
	var hung sync.WaitGroup
	hung.Add(1)
	s, err := New(Config{Timeout: 200 * time.Millisecond}, Deps{
		Sources: map[string]Source{
			"sfu":  &counter{},
			"turn": SourceFunc(func(context.Context) (any, error) { return nil, errors.New("relay closed") }),
			"federation": SourceFunc(func(ctx context.Context) (any, error) {
				defer hung.Done()
				select {
				case <-ctx.Done():
				case <-release:
				}
				return map[string]any{"ok": true}, nil
			}),
			"panics": SourceFunc(func(context.Context) (any, error) { panic("boom") }),
		},
		Sampled: []string{},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer close(release)
	mux := http.NewServeMux()
	s.Register(endpoint.NewRouter(mux, endpointtest.Tokens{
		"admin": {UserID: "@root:hs1", DeviceID: "D", Admin: true},
		"user":  {UserID: "@u:hs1", DeviceID: "D"},
	}))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	code, body := endpointtest.Do(t, srv.Client(), srv.URL, "GET", PathStatus, "admin", nil)
	if code != http.StatusOK {
		t.Fatalf("status: %d %s", code, body)
	}
	hung.Wait()
	var got map[string]map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if got["sfu"]["participants"] != float64(1) || got["turn"]["error"] != "relay closed" ||
		got["federation"]["error"] != context.DeadlineExceeded.Error() || got["panics"]["error"] == nil {
		t.Errorf("snapshot %s", body)
	}
	code, body = endpointtest.Do(t, srv.Client(), srv.URL, "GET", PathHistory, "admin", nil)
	if code != http.StatusOK || string(body) != `{"interval_ms":10000,"sources":{}}` {
		t.Errorf("history: %d %s", code, body)
	}
	for _, p := range []string{PathStatus, PathHistory} {
		code, body = endpointtest.Do(t, srv.Client(), srv.URL, "GET", p, "user", nil)
		var e struct{ Errcode string }
		_ = json.Unmarshal(body, &e)
		if code != http.StatusForbidden || e.Errcode != "M_FORBIDDEN" {
			t.Errorf("%s as a user: %d %s", p, code, body)
		}
		if code, _ = endpointtest.Do(t, srv.Client(), srv.URL, "GET", p, "", nil); code != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d", p, code)
		}
	}
}
