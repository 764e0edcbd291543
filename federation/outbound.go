package federation

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"

	"github.com/plexus-chat/plexus/federation/internal/queue"
	"github.com/plexus-chat/plexus/federation/internal/transport"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
)

// EventsStored is federation's rooms.Listener: every event this server
// created is queued for every other server in the room (Server-Server
// API, "PDUs": "the sending server ... sends it to all servers with users
// in the room"). Events from other servers are not forwarded: their
// origin sends them itself. It runs on the room's worker goroutine, so it
// only hands the events to the outbound loop, which persists them in the
// queue in the background; a cursor in storage lets a restart queue what
// a crash left unqueued.
func (f *Federation) EventsStored(roomID rooms.RoomID, events []*rooms.Stored) {
	f.out.mu.Lock()
	f.out.pending = append(f.out.pending, storedBatch{roomID, events})
	f.out.mu.Unlock()
	select {
	case f.out.wake <- struct{}{}:
	default:
	}
}

type storedBatch struct {
	room   rooms.RoomID
	events []*rooms.Stored
}

// outbound is the hand-off from the room workers to the outbound loop.
type outbound struct {
	mu      sync.Mutex
	pending []storedBatch
	wake    chan struct{}
	cursor  int64 // the highest stream position queued; 0 before the first
}

// cursorMargin is how far before the stored cursor a restart re-reads the
// event stream: notices from different rooms can reach the loop slightly
// out of stream order, so an event just below the cursor may not have been
// queued when the process stopped. Re-queuing an event only makes its
// destination see it twice, which the receive pipeline ignores.
const cursorMargin = 256

// runOutbound queues stored events until f closes. It first re-reads the
// stream from the cursor, so nothing stored before a crash is missed.
func (f *Federation) runOutbound() {
	defer f.wg.Done()
	if err := f.requeueFromCursor(f.ctx); err != nil && f.ctx.Err() == nil {
		f.log.Error("re-reading the event stream for federation failed", "err", err)
	}
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-f.out.wake:
		}
		f.out.mu.Lock()
		batches := f.out.pending
		f.out.pending = nil
		f.out.mu.Unlock()
		var top int64
		for _, b := range batches {
			for _, st := range b.events {
				f.queueEvent(b.room, st)
				top = max(top, st.StreamPos)
			}
		}
		f.saveCursor(top)
	}
}

// queueEvent queues one stored event for the servers that must get it.
func (f *Federation) queueEvent(roomID rooms.RoomID, st *rooms.Stored) {
	if st == nil || st.Event == nil || st.Outlier {
		return
	}
	ev := st.Event
	before, err := f.servers.get(f.ctx, string(roomID))
	if err != nil {
		f.log.Error("cannot find the servers in a room", "room", roomID, "err", err)
		return
	}
	// Membership changes are applied after the destinations are taken,
	// so a leaving server still hears of its leave, and the invited or
	// joining user's server hears of the event that concerns it.
	dests := before
	if ev.Type() == "m.room.member" && st.Rejected == "" && !st.SoftFailed {
		if sk := ev.StateKey(); sk != nil {
			if target := serverOf(*sk); target != "" && target != f.cfg.ServerName && !contains(dests, target) {
				dests = append(append([]string(nil), dests...), target)
			}
			f.servers.apply(string(roomID), *sk, ev.Membership())
		}
	}
	if st.Rejected != "" || st.SoftFailed || serverOf(string(ev.Sender())) != f.cfg.ServerName || len(dests) == 0 {
		return
	}
	if err := f.queue.EnqueuePDU(f.ctx, dests, string(roomID), string(ev.ID())); err != nil && f.ctx.Err() == nil {
		f.log.Error("cannot queue an event for federation", "room", roomID, "event", ev.ID(), "err", err)
	}
}

// saveCursor records that events up to pos are queued.
func (f *Federation) saveCursor(pos int64) {
	if pos <= f.out.cursor {
		return
	}
	f.out.cursor = pos
	err := f.deps.DB.Exec(f.ctx, `INSERT INTO fed_cursor (name, pos) VALUES ('outbound', $1) ON CONFLICT (name) DO UPDATE SET pos = excluded.pos`, pos)
	if err != nil && f.ctx.Err() == nil {
		f.log.Error("saving the federation cursor failed", "err", err)
	}
}

// requeueFromCursor queues this server's events stored after the cursor
// (less the margin): those a crash may have left unqueued.
func (f *Federation) requeueFromCursor(ctx context.Context) error {
	var cursor int64
	err := f.deps.DB.View(ctx, func(tx *storage.Tx) error {
		err := tx.QueryRow(ctx, `SELECT pos FROM fed_cursor WHERE name = 'outbound'`).Scan(&cursor)
		if errors.Is(err, sql.ErrNoRows) {
			cursor = -1
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	head, err := f.deps.DB.MaxStreamPos(ctx)
	if err != nil {
		return err
	}
	if cursor < 0 {
		// First start with federation: nothing was ever queued, and
		// nothing before now needs to be.
		f.saveCursor(head)
		return nil
	}
	f.out.cursor = cursor
	versions := map[string]*rooms.Version{}
	for pos := max(0, cursor-cursorMargin); pos < head; {
		recs, err := f.deps.DB.EventsSince(ctx, pos, 500)
		if err != nil || len(recs) == 0 {
			return err
		}
		for _, rec := range recs {
			pos = rec.StreamPos
			if rec.Outlier || rec.Rejected != "" || rec.SoftFailed {
				continue
			}
			v, ok := versions[rec.RoomID]
			if !ok {
				info, err := f.deps.DB.Room(ctx, rec.RoomID)
				if err != nil {
					return err
				}
				if v, ok = rooms.LookupVersion(info.Version); !ok {
					continue
				}
				versions[rec.RoomID] = v
			}
			ev, err := rooms.ParseEvent(rec.JSON, v)
			if err != nil || serverOf(string(ev.Sender())) != f.cfg.ServerName {
				continue
			}
			f.queueEvent(rooms.RoomID(rec.RoomID), &rooms.Stored{Event: ev, StreamPos: rec.StreamPos})
		}
		f.saveCursor(pos)
	}
	return nil
}

// SendEDU queues an EDU for the given servers (this server is skipped).
func (f *Federation) SendEDU(ctx context.Context, destinations []string, eduType string, content json.RawMessage) error {
	dests := make([]string, 0, len(destinations))
	for _, d := range destinations {
		if d != f.cfg.ServerName && !contains(dests, d) {
			dests = append(dests, d)
		}
	}
	if len(dests) == 0 {
		return nil
	}
	return f.queue.EnqueueEDU(ctx, dests, queue.EDU{Type: eduType, Content: content})
}

// ServersInRoom lists the other servers with joined users in a room.
func (f *Federation) ServersInRoom(ctx context.Context, roomID string) ([]string, error) {
	return f.servers.get(ctx, roomID)
}

// sender adapts the transport client to the queue.
type sender struct{ c *transport.Client }

func (s sender) Send(ctx context.Context, destination, txnID string, txn *queue.Transaction) error {
	var resp json.RawMessage
	return s.c.Do(ctx, destination, "PUT", "/_matrix/federation/v1/send/"+url.PathEscape(txnID), txn, &resp)
}

// roomServers tracks, per room, the other servers with joined users: the
// destinations of the room's events. It is loaded from the current state
// on first use and then kept up to date from the member events stored.
type roomServers struct {
	self string
	db   *storage.DB

	mu    sync.Mutex
	rooms map[string]map[string]string // room -> joined user -> membership ("join" only kept)
}

func newRoomServers(self string, db *storage.DB) *roomServers {
	return &roomServers{self: self, db: db, rooms: make(map[string]map[string]string)}
}

// get returns the other servers with joined users, sorted.
func (r *roomServers) get(ctx context.Context, roomID string) ([]string, error) {
	r.mu.Lock()
	members, ok := r.rooms[roomID]
	r.mu.Unlock()
	if !ok {
		loaded, err := r.load(ctx, roomID)
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		if members, ok = r.rooms[roomID]; !ok {
			members = loaded
			r.rooms[roomID] = members
		}
		r.mu.Unlock()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for user := range members {
		s := serverOf(user)
		if s != "" && s != r.self && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out, nil
}

// apply records a membership change; it is a no-op for a room not loaded
// yet (its load reads the stored state, which already has the change).
func (r *roomServers) apply(roomID, userID, membership string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	members, ok := r.rooms[roomID]
	if !ok {
		return
	}
	if membership == "join" {
		members[userID] = membership
	} else {
		delete(members, userID)
	}
}

// forget drops a room's cached servers, so the next get reloads them
// from the current state (after a join replaces our copy of a room).
func (r *roomServers) forget(roomID string) {
	r.mu.Lock()
	delete(r.rooms, roomID)
	r.mu.Unlock()
}

func (r *roomServers) load(ctx context.Context, roomID string) (map[string]string, error) {
	info, err := r.db.Room(ctx, roomID)
	if err != nil {
		return nil, fmt.Errorf("room %s: %w", roomID, err)
	}
	var ids []string
	for k, id := range info.Current {
		if k.Type == "m.room.member" {
			ids = append(ids, id)
		}
	}
	recs, err := r.db.Events(ctx, ids)
	if err != nil {
		return nil, err
	}
	members := make(map[string]string)
	for _, rec := range recs {
		var c struct {
			Content struct {
				Membership string `json:"membership"`
			} `json:"content"`
		}
		if rec.StateKey == nil || json.Unmarshal(rec.JSON, &c) != nil {
			continue
		}
		if c.Content.Membership == "join" {
			members[*rec.StateKey] = "join"
		}
	}
	return members, nil
}

// serverOf is the server part of a user ID, room alias or event ID of
// the form sigil localpart:server.
func serverOf(id string) string {
	_, s, ok := strings.Cut(id, ":")
	if !ok {
		return ""
	}
	return s
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
