package pionlog

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	now := time.Unix(0, 0)
	l := NewLimiter(2, time.Second, func() time.Time { return now })
	var got []bool
	for range 5 {
		ok, _ := l.Allow("k")
		got = append(got, ok)
	}
	if want := []bool{true, true, false, false, false}; !slices.Equal(got, want) {
		t.Errorf("first window = %v, want %v", got, want)
	}
	if ok, _ := l.Allow("other"); !ok {
		t.Error("keys share a budget")
	}
	now = now.Add(time.Second)
	ok, n := l.Allow("k")
	if !ok || n != 3 {
		t.Errorf("next window: ok=%v suppressed=%d, want true 3", ok, n)
	}
	if _, n := l.Allow("k"); n != 0 {
		t.Errorf("suppressed count reported twice: %d", n)
	}
}

func TestLimiterBoundsKeys(t *testing.T) {
	l := NewLimiter(1, time.Minute, nil)
	for i := range 3 * maxKeys {
		l.Allow(string(rune(i)))
	}
	if len(l.windows) > maxKeys {
		t.Errorf("%d keys remembered, want at most %d", len(l.windows), maxKeys)
	}
}

func TestFactory(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	f := &Factory{Logger: log, Limiter: NewLimiter(2, time.Hour, nil)}
	l := f.NewLogger("turn")
	for i := range 10 {
		l.Warnf("peer %d refused", i)
		l.Infof("noise %d", i) // pion info is debug here: dropped at info
	}
	out := buf.String()
	if n := strings.Count(out, "refused"); n != 2 {
		t.Errorf("%d warn lines logged, want 2 (rate-limited):\n%s", n, out)
	}
	if strings.Contains(out, "noise") {
		t.Errorf("pion info logged at info level:\n%s", out)
	}
	if !strings.Contains(out, "pion=turn") {
		t.Errorf("scope missing:\n%s", out)
	}
}

// TestClosingIsDebug: the errors pion's loops report when their sockets
// are closed on purpose are not warnings; other errors still are.
func TestClosingIsDebug(t *testing.T) {
	var info, debug bytes.Buffer
	for _, c := range []struct {
		buf   *bytes.Buffer
		level slog.Level
	}{{&info, slog.LevelInfo}, {&debug, slog.LevelDebug}} {
		f := &Factory{Logger: slog.New(slog.NewTextHandler(c.buf, &slog.HandlerOptions{Level: c.level}))}
		l := f.NewLogger("ice")
		l.Warnf("Failed to read from candidate %s: %v", "udp4 host 127.0.0.1:7882", "io: read/write on closed pipe")
		l.Errorf("Failed to accept RTP %v", "stream is already closed")
		l.Errorf("Failed to handshake: %v", "timeout")
	}
	if strings.Contains(info.String(), "closed") {
		t.Errorf("closing noise logged at info level:\n%s", info.String())
	}
	if !strings.Contains(info.String(), "handshake") {
		t.Errorf("a real error was dropped:\n%s", info.String())
	}
	if n := strings.Count(debug.String(), "level=DEBUG"); n != 2 {
		t.Errorf("%d debug lines, want the 2 closing ones:\n%s", n, debug.String())
	}
}

func TestTrace(t *testing.T) {
	for _, tc := range []struct {
		level slog.Level
		want  bool
	}{{slog.LevelDebug, false}, {levelTrace, true}} {
		var buf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tc.level}))
		l := (&Factory{Logger: log}).NewLogger("sctp")
		l.Tracef("chunk %d", 7)
		l.Trace("plain")
		got := strings.Contains(buf.String(), "chunk 7") && strings.Contains(buf.String(), "plain")
		if got != tc.want || (!tc.want && buf.Len() > 0) {
			t.Errorf("at %v: trace lines logged=%v, want %v:\n%s", tc.level, got, tc.want, buf.String())
		}
	}
}
