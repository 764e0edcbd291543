package storage

import (
	"context"
	"fmt"
	"testing"

	"github.com/plexus-chat/plexus/internal/storage/storagetest"
)

// backend is one database the suites run against.
type backend struct {
	name  string
	fresh func(tb testing.TB) (dsn, dataDir string)
}

var backends = []backend{
	{name: "sqlite", fresh: func(tb testing.TB) (string, string) { return storagetest.Fresh(tb, storagetest.SQLite) }},
	{name: "postgres", fresh: func(tb testing.TB) (string, string) { return storagetest.Fresh(tb, storagetest.Postgres) }},
}

// harness is one open store under test.
type harness struct {
	tb      testing.TB
	backend string
	ctx     context.Context
	dsn     string
	dataDir string
	db      *DB
}

func newHarness(tb testing.TB, be backend) *harness {
	tb.Helper()
	dsn, dir := be.fresh(tb)
	// A cancellable context, as the server's would be: drivers take slower
	// paths for those, and tests should see them.
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	h := &harness{tb: tb, backend: be.name, ctx: ctx, dsn: dsn, dataDir: dir}
	h.open()
	// Registered after fresh's cleanup, so it runs first: close before drop.
	tb.Cleanup(func() {
		if err := h.db.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	return h
}

func (h *harness) open() {
	h.tb.Helper()
	db, err := Open(h.ctx, h.dsn, h.dataDir)
	if err != nil {
		h.tb.Fatalf("open: %v", err)
	}
	h.db = db
}

// reopen closes the store and opens it again, as a restart would.
func (h *harness) reopen() {
	h.tb.Helper()
	if err := h.db.Close(); err != nil {
		h.tb.Fatalf("close: %v", err)
	}
	h.open()
}

func (h *harness) commit(b *Batch) {
	h.tb.Helper()
	if err := h.db.Commit(h.ctx, b); err != nil {
		h.tb.Fatalf("commit: %v", err)
	}
}

// count returns the number of rows in table.
func (h *harness) count(table string) int {
	h.tb.Helper()
	var n int
	if err := h.db.read.QueryRowContext(h.ctx, "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
		h.tb.Fatalf("count %s: %v", table, err)
	}
	return n
}

var allTables = []string{"rooms", "events", "event_auth_edges", "state_groups",
	"state_group_entries", "room_extremities", "current_state", "missing_prevs"}

// snapshot summarises everything a Commit can change, for before/after
// comparisons.
func (h *harness) snapshot(roomID string) string {
	h.tb.Helper()
	s := ""
	for _, t := range allTables {
		s += fmt.Sprintf("%s=%d ", t, h.count(t))
	}
	info, err := h.db.Room(h.ctx, roomID)
	if err != nil {
		h.tb.Fatalf("room: %v", err)
	}
	pos, _ := h.db.MaxStreamPos(h.ctx)
	return s + fmt.Sprintf("room=%+v pos=%d", *info, pos)
}

// rec builds an event record; its JSON is a stand-in, opaque to storage.
func rec(roomID, eventID, typ string, depth int64, prev, auth []string) EventRecord {
	return EventRecord{
		EventID: eventID, RoomID: roomID, Type: typ, Depth: depth, OriginServerTS: 1_700_000_000_000 + depth,
		JSON:       []byte(fmt.Sprintf(`{"event_id":%q,"type":%q}`, eventID, typ)),
		PrevEvents: prev, AuthEvents: auth,
	}
}

// stateRec is rec for a state event.
func stateRec(roomID, eventID, typ, stateKey string, depth int64, prev, auth []string) EventRecord {
	r := rec(roomID, eventID, typ, depth, prev, auth)
	r.StateKey = &stateKey
	return r
}

func ids(s ...string) []string { return s }
