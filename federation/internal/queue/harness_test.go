package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/internal/storage/storagetest"
)

const (
	us     = "hs1.test"
	remote = "hs2.test"
)

// t0 is the test clock's starting time.
var t0 = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

// harness is one database, a fake clock, a recording Sender and the
// queue under test.
type harness struct {
	t      testing.TB
	ctx    context.Context
	db     *storage.DB
	nowMS  atomic.Int64
	sender *fakeSender
	cfg    Config
	q      *Queue
	events int // events stored so far, for unique IDs
}

// forEachBackend runs fn on a fresh harness per storage backend.
func forEachBackend(t *testing.T, cfg Config, fn func(t *testing.T, h *harness)) {
	for _, b := range storagetest.Backends {
		t.Run(b, func(t *testing.T) { fn(t, newHarness(t, b, cfg)) })
	}
}

func newHarness(tb testing.TB, backend string, cfg Config) *harness {
	dsn, dir := storagetest.Fresh(tb, backend)
	ctx := context.Background()
	db, err := storage.Open(ctx, dsn, dir)
	if err != nil {
		tb.Fatalf("open storage: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	h := &harness{t: tb, ctx: ctx, db: db, sender: newFakeSender()}
	h.nowMS.Store(t0.UnixMilli())
	cfg.ServerName = us
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return time.UnixMilli(h.nowMS.Load()) }
	}
	h.cfg = cfg
	h.q = h.open()
	return h
}

// open makes a new Queue on the harness's database (not started).
func (h *harness) open() *Queue {
	q, err := New(h.cfg, h.db, h.sender, testLogger())
	if err != nil {
		h.t.Fatalf("New: %v", err)
	}
	h.t.Cleanup(func() { q.Close() })
	return q
}

func (h *harness) start() {
	h.t.Helper()
	if err := h.q.Start(h.ctx); err != nil {
		h.t.Fatalf("Start: %v", err)
	}
}

// advance moves the test clock.
func (h *harness) advance(d time.Duration) { h.nowMS.Add(d.Milliseconds()) }

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// storeEvents stores n events of room (as outliers: the queue only
// reads their JSON) and returns their IDs in order.
func (h *harness) storeEvents(tb testing.TB, room string, n int) []string {
	tb.Helper()
	b := &storage.Batch{RoomID: room, CreateVersion: "10"}
	if _, err := h.db.Room(h.ctx, room); err == nil {
		b.CreateVersion = ""
	}
	ids := make([]string, n)
	for i := range ids {
		h.events++
		id := fmt.Sprintf("$e%d", h.events)
		ids[i] = id
		b.Events = append(b.Events, storage.PersistEvent{Record: storage.EventRecord{
			EventID: id, RoomID: room, Type: "m.room.message", Depth: int64(h.events),
			OriginServerTS: t0.UnixMilli(), Outlier: true,
			JSON: []byte(fmt.Sprintf(`{"content":{"n":%d},"room_id":%q,"type":"m.room.message"}`, h.events, room)),
		}})
	}
	if err := h.db.Commit(h.ctx, b); err != nil {
		tb.Fatalf("store events: %v", err)
	}
	return ids
}

func (h *harness) enqueuePDUs(dests []string, room string, ids []string) {
	h.t.Helper()
	for _, id := range ids {
		if err := h.q.EnqueuePDU(h.ctx, dests, room, id); err != nil {
			h.t.Fatalf("EnqueuePDU: %v", err)
		}
	}
}

func (h *harness) enqueueEDU(dests []string, typ string, content string) {
	h.t.Helper()
	if err := h.q.EnqueueEDU(h.ctx, dests, EDU{Type: typ, Content: json.RawMessage(content)}); err != nil {
		h.t.Fatalf("EnqueueEDU: %v", err)
	}
}

func (h *harness) state(dest string) destState {
	h.t.Helper()
	st, err := h.q.loadState(h.ctx, dest)
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

// waitFor polls cond until it holds, failing the test after a deadline.
// It re-checks whenever the sender sees a call, and at least every 5 ms
// for conditions on the database.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			h.t.Fatalf("timed out waiting for %s", what)
		case <-h.sender.changed:
		case <-tick.C:
		}
	}
}

// call is one Send the fake sender saw.
type call struct {
	dest, txnID string
	body        string // the transaction as JSON
	txn         *Transaction
	err         error
	failures    int64 // the destination's stored failure count when sent
	retryAt     int64 // and its stored retry time
}

// fakeSender records every Send and answers with behave (nil accepts).
type fakeSender struct {
	changed chan struct{}
	// probe, if set, is called at each Send to fill call.failures and
	// call.retryAt.
	probe func(dest string) destState

	mu     sync.Mutex // guards the fields below
	calls  []call
	behave func(ctx context.Context, dest string, n int) error // n: this destination's attempt, from 1
}

func newFakeSender() *fakeSender { return &fakeSender{changed: make(chan struct{}, 1)} }

func (f *fakeSender) setBehaviour(b func(ctx context.Context, dest string, n int) error) {
	f.mu.Lock()
	f.behave = b
	f.mu.Unlock()
}

func (f *fakeSender) Send(ctx context.Context, dest, txnID string, txn *Transaction) error {
	body, err := json.Marshal(txn)
	if err != nil {
		return err
	}
	c := call{dest: dest, txnID: txnID, body: string(body), txn: txn}
	if f.probe != nil {
		st := f.probe(dest)
		c.failures, c.retryAt = st.failures, st.retryAt
	}
	f.mu.Lock()
	n := 1
	for _, old := range f.calls {
		if old.dest == dest {
			n++
		}
	}
	b := f.behave
	f.mu.Unlock()
	if b != nil {
		c.err = b(ctx, dest, n)
	}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
	signal(f.changed)
	return c.err
}

// sent returns the calls made to dest; accepted, only those accepted.
func (f *fakeSender) sent(dest string, accepted bool) []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []call
	for _, c := range f.calls {
		if c.dest == dest && (!accepted || c.err == nil) {
			out = append(out, c)
		}
	}
	return out
}

// pduNumbers lists the "n" of each PDU of the accepted calls to dest,
// in delivery order.
func (f *fakeSender) pduNumbers(t testing.TB, dest string) []int {
	var out []int
	for _, c := range f.sent(dest, true) {
		for _, p := range c.txn.PDUs {
			var ev struct {
				Content struct{ N int } `json:"content"`
			}
			if err := json.Unmarshal(p, &ev); err != nil {
				t.Fatalf("bad PDU %s: %v", p, err)
			}
			out = append(out, ev.Content.N)
		}
	}
	return out
}

var errDown = fmt.Errorf("destination down")
