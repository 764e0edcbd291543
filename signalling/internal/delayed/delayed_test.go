package delayed

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/signalling/internal/ratelimit"
)

const mgmt = "/_matrix/client/unstable/org.matrix.msc4140/delayed_events"

func TestFiresWhenDueAndNotBefore(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, e *env) {
		id := e.schedule(alice, 10*time.Second, nil)
		e.clock.Add(10*time.Second - time.Millisecond)
		e.settle()
		if got := e.rec.all(); len(got) != 0 {
			t.Fatalf("sent %d events 1 ms before they were due", len(got))
		}
		if want := time.UnixMilli(1_700_000_010_000); !e.svc.NextSendAt().Equal(want) {
			t.Fatalf("timer waits for %v, want %v", e.svc.NextSendAt(), want)
		}
		e.clock.Add(time.Millisecond)
		e.svc.Poke()
		waitFor(t, "the delayed event to be sent", func() bool { return len(e.rec.all()) == 1 })
		if got := e.rec.all()[0]; got.delayID != id || got.ev.UserID != alice || got.ev.DeviceID != "DEV" || string(got.ev.Content) != `{"body":"later"}` {
			t.Fatalf("sent %+v", got)
		}
		e.settle()
		if evs, _ := e.svc.List(context.Background(), alice, nil); len(evs) != 0 {
			t.Fatalf("sent event still listed: %+v", evs)
		}
		if len(e.rec.all()) != 1 {
			t.Fatalf("sent %d times", len(e.rec.all()))
		}
	})
}

func TestRestartPostpones(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, e *env) {
		id := e.schedule(alice, 10*time.Second, nil)
		e.clock.Add(8 * time.Second)
		for _, path := range []string{mgmt + "/" + id, mgmt + "/" + id + "/restart"} {
			var body any = map[string]string{"action": "restart"}
			if path != mgmt+"/"+id {
				body = map[string]string{}
			}
			if status, m := e.do("POST", path, "alice1", body); status != 200 || len(m) != 0 {
				t.Fatalf("restart via %s: %d %v", path, status, m)
			}
		}
		evs, err := e.svc.List(context.Background(), alice, nil)
		if err != nil || len(evs) != 1 || evs[0].RunningSince != 1_700_000_008_000 || evs[0].Delay != 10_000 {
			t.Fatalf("after restart listed %+v, %v", evs, err)
		}
		e.clock.Add(9 * time.Second) // 17 s after scheduling, 9 s after the restart
		e.settle()
		if got := e.rec.all(); len(got) != 0 {
			t.Fatalf("restarted event sent at its first deadline")
		}
		e.clock.Add(time.Second)
		e.svc.Poke()
		waitFor(t, "the restarted event to be sent", func() bool { return len(e.rec.all()) == 1 })
	})
}

func TestCancelPrevents(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, e *env) {
		id := e.schedule(alice, 10*time.Second, nil)
		keep := e.schedule(alice, time.Hour, nil)
		if status, m := e.do("POST", mgmt+"/"+id, "alice1", map[string]string{"action": "cancel"}); status != 200 {
			t.Fatalf("cancel: %d %v", status, m)
		}
		e.clock.Add(time.Minute)
		e.settle()
		if got := e.rec.all(); len(got) != 0 {
			t.Fatalf("cancelled event sent: %+v", got)
		}
		if status, m := e.do("POST", mgmt+"/"+id+"/cancel", "alice1", nil); status != 404 || m["errcode"] != "M_NOT_FOUND" {
			t.Fatalf("second cancel: %d %v", status, m)
		}
		status, m := e.do("GET", mgmt, "alice1", nil)
		list, _ := m["delayed_events"].([]any)
		if status != 200 || len(list) != 1 || list[0].(map[string]any)["delay_id"] != keep {
			t.Fatalf("listing: %d %v", status, m)
		}
	})
}

func TestSendAction(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, e *env) {
		id := e.schedule(alice, time.Hour, nil)
		e.rec.fail(mxerr.Forbidden("no power"))
		if status, m := e.do("POST", mgmt+"/"+id+"/send", "alice1", nil); status != 403 || m["errcode"] != "M_FORBIDDEN" {
			t.Fatalf("failing send: %d %v", status, m)
		}
		if evs, _ := e.svc.List(context.Background(), alice, nil); len(evs) != 1 {
			t.Fatalf("a failed send must keep the event scheduled, listed %+v", evs)
		}
		e.rec.fail(nil)
		if status, m := e.do("POST", mgmt+"/"+id, "alice1", map[string]string{"action": "send"}); status != 200 {
			t.Fatalf("send: %d %v", status, m)
		}
		if got := e.rec.all(); len(got) != 1 || got[0].delayID != id {
			t.Fatalf("send action sent %+v", got)
		}
		if status, _ := e.do("POST", mgmt+"/"+id+"/send", "alice1", nil); status != 404 {
			t.Fatalf("send of a sent event: %d", status)
		}
	})
}

func TestTimerDropsFailedEvent(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, e *env) {
		e.schedule(alice, time.Second, nil)
		e.rec.fail(errors.New("user left the room"))
		e.clock.Add(time.Second)
		e.settle()
		if evs, _ := e.svc.List(context.Background(), alice, nil); len(evs) != 0 {
			t.Fatalf("failed event still scheduled: %+v", evs)
		}
	})
}

func TestOwnership(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, e *env) {
		id := e.schedule(alice, time.Hour, nil)
		for _, path := range []string{mgmt + "/" + id + "/restart", mgmt + "/" + id + "/cancel", mgmt + "/" + id + "/send"} {
			if status, m := e.do("POST", path, "bob1", nil); status != 404 || m["errcode"] != "M_NOT_FOUND" {
				t.Fatalf("bob %s: %d %v", path, status, m)
			}
		}
		if status, m := e.do("POST", mgmt+"/"+id+"/restart", "nosuchtoken", nil); status != 401 {
			t.Fatalf("bad token: %d %v", status, m)
		}
		status, m := e.do("GET", mgmt, "bob1", nil)
		if list, _ := m["delayed_events"].([]any); status != 200 || len(list) != 0 {
			t.Fatalf("bob lists %d %v", status, m)
		}
		// Without a token the delay ID is the capability (MSC4140,
		// "Delegating delayed events").
		if status, m := e.do("POST", mgmt+"/"+id+"/cancel", "", nil); status != 200 {
			t.Fatalf("unauthenticated cancel: %d %v", status, m)
		}
		if status, _ := e.do("POST", mgmt+"/nosuchid/restart", "", nil); status != 404 {
			t.Fatalf("unknown ID: %d", status)
		}
	})
}

func TestBadRequests(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, e *env) {
		id := e.schedule(alice, time.Hour, nil)
		cases := []struct {
			path   string
			body   any
			status int
			code   string
		}{
			{mgmt + "/" + id, map[string]string{}, 400, "M_MISSING_PARAM"},
			{mgmt + "/" + id, map[string]string{"action": "explode"}, 400, "M_INVALID_PARAM"},
			{mgmt + "/" + id, "not json", 400, "M_NOT_JSON"},
			{mgmt + "/" + id + "/explode", nil, 404, "M_UNRECOGNIZED"},
		}
		for _, c := range cases {
			if status, m := e.do("POST", c.path, "alice1", c.body); status != c.status || m["errcode"] != c.code {
				t.Errorf("%s %v: %d %v, want %d %s", c.path, c.body, status, m, c.status, c.code)
			}
		}
	})
}

func TestLimits(t *testing.T) {
	forEachBackend(t, Config{MaxDelay: time.Hour, MaxPerUser: 2, ManageRate: ratelimit.Config{Rate: 0.001, Burst: 2}}, func(t *testing.T, e *env) {
		ctx := context.Background()
		ev := Event{UserID: alice, DeviceID: "DEV", RoomID: "!r:test.local", Type: "m.room.message", Content: []byte(`{}`)}
		_, err := e.svc.Schedule(ctx, ev, time.Hour+time.Millisecond)
		var me *mxerr.MatrixError
		if !errors.As(err, &me) || me.Code != CodeMaxDelayExceeded || me.Status != http.StatusBadRequest || me.Extra["max_delay"] != int64(3_600_000) {
			t.Fatalf("over max: %v (%+v)", err, me)
		}
		if _, err := e.svc.Schedule(ctx, ev, 0); !errors.As(err, &me) || me.Code != mxerr.CodeInvalidParam {
			t.Fatalf("zero delay: %v", err)
		}
		id := e.schedule(alice, time.Minute, nil)
		e.schedule(alice, time.Hour, nil)
		if _, err := e.svc.Schedule(ctx, ev, time.Minute); !errors.As(err, &me) || me.Code != mxerr.CodeLimitExceeded || me.Extra["retry_after_ms"] != int64(60_000) {
			t.Fatalf("third event: %v", err)
		}
		e.schedule(bob, time.Minute, nil) // the limit is per user
		for i := range 3 {
			status, m := e.do("POST", mgmt+"/"+id+"/restart", "alice1", nil)
			if want := map[bool]int{true: 200, false: 429}[i < 2]; status != want {
				t.Fatalf("restart %d: %d %v, want %d", i, status, m, want)
			}
		}
	})
}

func TestSurvivesRestart(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, e *env) {
		id := e.schedule(alice, time.Minute, nil)
		later := e.schedule(alice, time.Hour, nil)
		// One was being sent when the server stopped: its claim is
		// released on Start and it is sent again.
		claimed := e.schedule(alice, 2*time.Hour, nil)
		if r, err := e.svc.claim(context.Background(), claimed, ""); err != nil || r == nil {
			t.Fatalf("claim: %v %v", r, err)
		}
		e.close()
		e.clock.Add(30 * time.Minute) // the first is overdue
		e.open()
		waitFor(t, "the overdue event to be sent after the restart", func() bool { return len(e.rec.all()) > 0 })
		e.settle()
		if got := e.rec.all(); len(got) != 1 || got[0].delayID != id {
			t.Fatalf("sent %+v, want only %s", got, id)
		}
		e.clock.Add(2 * time.Hour)
		e.svc.Poke()
		waitFor(t, "the other two to be sent", func() bool { return len(e.rec.all()) == 3 })
		got := map[string]bool{}
		for _, s := range e.rec.all() {
			got[s.delayID] = true
		}
		if !got[later] || !got[claimed] {
			t.Fatalf("sent %v", got)
		}
	})
}

func TestCloseIdempotent(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, e *env) {
		e.close()
		if err := e.svc.Close(); err != nil {
			t.Fatal(err)
		}
		svc, err := New(Config{}, Deps{DB: e.db, Sender: e.rec})
		if err != nil {
			t.Fatal(err)
		}
		if err := svc.Close(); err != nil { // never started
			t.Fatal(err)
		}
		if err := svc.Start(context.Background()); err == nil {
			t.Fatal("Start after Close succeeded")
		}
	})
}
