package ratelimit

import (
	"errors"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/mxerr"
)

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(Config{Rate: 2, Burst: 3}, func() time.Time { return now })
	for i := range 3 {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("request %d refused within the burst", i)
		}
	}
	ok, wait := l.Allow("a")
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("4th request: ok=%v wait=%v, want refused with 500ms", ok, wait)
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("another key shares a's bucket")
	}
	err := l.Check("a")
	var me *mxerr.MatrixError
	if !errors.As(err, &me) || me.Code != mxerr.CodeLimitExceeded || me.Status != 429 || me.Extra["retry_after_ms"] != int64(500) {
		t.Fatalf("Check = %#v", err)
	}
	now = now.Add(500 * time.Millisecond)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("refused after the refill time")
	}
	now = now.Add(2 * time.Minute)
	l.Allow("c")
	if n := len(l.buckets); n != 1 {
		t.Fatalf("%d buckets after a sweep, want only c's", n)
	}
	// Peek looks without taking.
	for range 5 {
		if err := l.Peek("p"); err != nil {
			t.Fatalf("Peek of a full bucket: %v", err)
		}
	}
	for range 3 {
		if err := l.Check("p"); err != nil {
			t.Fatalf("the burst after Peeks: %v", err)
		}
	}
	if err := l.Peek("p"); !errors.As(err, &me) || me.Code != mxerr.CodeLimitExceeded {
		t.Fatalf("Peek of an empty bucket = %v", err)
	}
	if ok, _ := New(Config{}, nil).Allow("x"); !ok {
		t.Fatal("a zero Config must not limit")
	}
}
