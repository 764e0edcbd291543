package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/clientevent"
	"github.com/plexus-chat/plexus/signalling/internal/stream"
)

// IndexConfig configures the Index.
type IndexConfig struct {
	// ServerName is our server name; users on it are local.
	ServerName string
	// Window is how many recent events are kept in memory. Default 65536.
	Window int
}

// IndexDeps are the Index's collaborators.
type IndexDeps struct {
	DB     *storage.DB
	Hub    *stream.Hub
	Logger *slog.Logger
	// OnRedaction, if set, hears of every accepted redaction the tailer
	// reads, so redacted events can be served redacted.
	OnRedaction func(ctx context.Context, roomID, redactionID, targetID string)
}

// Index follows the event stream (see the package documentation): it
// keeps the window of recent events and the membership index, and wakes
// the users each event concerns.
type Index struct {
	cfg  IndexConfig
	deps IndexDeps
	log  *slog.Logger

	mu sync.RWMutex // guards the fields below
	// window holds the recent events; head is the last position read.
	window  *ring
	head    int64
	members *members
	// versions caches room versions, for parsing events.
	versions map[string]*rooms.Version
	// unread holds the local members' unread counts (see unread.go).
	unread map[unreadKey]unreadCount
	// localJoined maps a room to its joined local users: the ones whose
	// unread counts an event may raise.
	localJoined map[string]map[string]struct{}

	// advanced is closed, and replaced, each time head moves (WaitFor).
	advanced chan struct{}
	// completed lists rooms whose partial state was completed since the
	// tailer last ran (partial.go).
	completed []string

	poke   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	closed sync.Once
}

// NewIndex loads the current memberships of every room and starts the
// tailer at the current end of the stream.
func NewIndex(ctx context.Context, cfg IndexConfig, deps IndexDeps) (*Index, error) {
	if deps.DB == nil || deps.Hub == nil {
		return nil, errors.New("syncer: DB and Hub are required")
	}
	if cfg.Window <= 0 {
		cfg.Window = 1 << 16
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	head, err := deps.DB.MaxStreamPos(ctx)
	if err != nil {
		return nil, err
	}
	x := &Index{
		cfg: cfg, deps: deps, log: deps.Logger,
		window:      newRing(cfg.Window, head),
		head:        head,
		members:     newMembers(),
		versions:    map[string]*rooms.Version{},
		unread:      map[unreadKey]unreadCount{},
		localJoined: map[string]map[string]struct{}{},
		poke:        make(chan struct{}, 1),
		advanced:    make(chan struct{}),
		stop:        make(chan struct{}),
		done:        make(chan struct{}),
	}
	if err := x.load(ctx); err != nil {
		return nil, err
	}
	go x.tail()
	return x, nil
}

// load fills the membership index from every room's current state.
func (x *Index) load(ctx context.Context) error {
	ids, err := x.deps.DB.RoomIDs(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := x.loadRoom(ctx, id, false); err != nil {
			return err
		}
	}
	return nil
}

// loadRoom indexes the member events of a room's current state. With
// onlyNew, members the index already knows are left as they are: a room
// joined over federation arrives with its members as outliers, which the
// tailer does not index, so the local user's join makes it read them
// here.
func (x *Index) loadRoom(ctx context.Context, id string, onlyNew bool) error {
	info, err := x.deps.DB.Room(ctx, id)
	if err != nil {
		return err
	}
	v, ok := rooms.LookupVersion(info.Version)
	if !ok {
		x.log.Warn("room of an unsupported version skipped", "room", id, "version", info.Version)
		return nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.versions[id] = v
	var memberIDs []string
	for k, ev := range info.Current {
		if k.Type != "m.room.member" {
			continue
		}
		if _, known := x.members.byRoom[id][k.StateKey]; onlyNew && known {
			continue
		}
		memberIDs = append(memberIDs, ev)
	}
	recs, err := x.deps.DB.Events(ctx, memberIDs)
	if err != nil {
		return err
	}
	for _, rec := range recs {
		ev, err := rooms.ParseEvent(rec.JSON, v)
		if err != nil || ev.StateKey() == nil {
			continue
		}
		x.noteMember(id, ev, rec.StreamPos)
	}
	return nil
}

// onlyMember reports whether user is the only member the index knows in
// room: true for a room's creator, and for a room just joined over
// federation, whose other members are not indexed yet. x.mu is held.
func (x *Index) onlyMember(room, user string) bool {
	for u := range x.members.byRoom[room] {
		if u != user {
			return false
		}
	}
	return true
}

// WaitFor returns once the Index has read the event stream up to pos, so
// that a request that stored an event (a join) and then asks about
// membership sees its own write.
func (x *Index) WaitFor(ctx context.Context, pos int64) error {
	for {
		x.mu.RLock()
		head, advanced := x.head, x.advanced
		x.mu.RUnlock()
		if head >= pos {
			return nil
		}
		x.Poke()
		select {
		case <-advanced:
		case <-ctx.Done():
			return ctx.Err()
		case <-x.stop:
			return errors.New("syncer: index closed")
		}
	}
}

// EventsStored is the room service's Listener hook: it pokes the tailer.
func (x *Index) EventsStored(rooms.RoomID, []*rooms.Stored) { x.Poke() }

// Poke makes the tailer read the stream now.
func (x *Index) Poke() {
	select {
	case x.poke <- struct{}{}:
	default:
	}
}

// Close stops the tailer. It is idempotent.
func (x *Index) Close() error {
	x.closed.Do(func() { close(x.stop) })
	<-x.done
	return nil
}

// tailBatch is how many events one storage read takes.
const tailBatch = 512

// tail reads the stream whenever poked. A safety tick covers a poke lost
// to a commit that raced the Listener registration.
func (x *Index) tail() {
	defer close(x.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-x.stop:
			return
		case <-x.poke:
		case <-tick.C:
		}
		x.loadCompleted(context.Background())
		for {
			n, err := x.readOnce(context.Background())
			if err != nil {
				x.log.Error("reading the event stream failed; retrying", "err", err)
				break
			}
			if n < tailBatch {
				break
			}
		}
	}
}

// readOnce reads and indexes one batch of events after head.
func (x *Index) readOnce(ctx context.Context) (int, error) {
	x.mu.RLock()
	head := x.head
	x.mu.RUnlock()
	recs, err := x.deps.DB.EventsSince(ctx, head, tailBatch)
	if err != nil || len(recs) == 0 {
		return 0, err
	}
	type wake struct {
		room  string
		users []string
	}
	var wakes []wake
	var redactions [][3]string
	var localJoins []string
	for _, rec := range recs {
		v, err := x.version(ctx, rec.RoomID)
		if err != nil {
			// One unreadable room must not stall every sync: the event
			// is skipped (kept invisible) and the stream moves on.
			x.log.Error("event of an unreadable room skipped", "event", rec.EventID, "room", rec.RoomID, "err", err)
			x.mu.Lock()
			x.window.push(entry{pos: rec.StreamPos, room: rec.RoomID})
			x.head = rec.StreamPos
			x.mu.Unlock()
			continue
		}
		ev, perr := rooms.ParseEvent(rec.JSON, v)
		e := entry{pos: rec.StreamPos, room: rec.RoomID, ev: ev,
			visible: perr == nil && !rec.Outlier && rec.Rejected == "" && !rec.SoftFailed}
		if e.visible {
			e.prep = clientevent.Prepare(ev, true).WithPrevContent(x.prevContent(ctx, ev))
		}
		x.mu.Lock()
		x.window.push(e)
		x.head = rec.StreamPos
		var target string
		if e.visible && ev.Type() == "m.room.member" && ev.StateKey() != nil {
			target = *ev.StateKey()
			x.noteMember(rec.RoomID, ev, rec.StreamPos)
			if x.isLocal(target) && ev.Membership() == "join" && x.onlyMember(rec.RoomID, target) {
				localJoins = append(localJoins, rec.RoomID)
			}
		}
		if e.visible {
			x.countUnreadLocked(e)
		}
		x.mu.Unlock()
		if perr != nil {
			x.log.Error("stored event does not parse", "event", rec.EventID, "err", perr)
			continue
		}
		if !e.visible {
			continue
		}
		w := wake{room: rec.RoomID}
		if target != "" {
			w.users = []string{target}
		}
		wakes = append(wakes, w)
		if ev.Type() == "m.room.redaction" && ev.Redacts() != "" {
			redactions = append(redactions, [3]string{rec.RoomID, string(ev.ID()), string(ev.Redacts())})
		}
	}
	for _, room := range localJoins {
		if err := x.loadRoom(ctx, room, true); err != nil {
			x.log.Error("reading the members of a joined room failed", "room", room, "err", err)
		}
	}
	x.mu.Lock()
	close(x.advanced)
	x.advanced = make(chan struct{})
	x.mu.Unlock()
	for _, r := range redactions {
		if x.deps.OnRedaction != nil {
			x.deps.OnRedaction(ctx, r[0], r[1], r[2])
		}
	}
	last := ""
	for _, w := range wakes {
		if w.room != last {
			x.deps.Hub.WakeRoom(w.room)
			last = w.room
		}
		if len(w.users) > 0 {
			x.deps.Hub.Wake(w.users...)
		}
	}
	return len(recs), nil
}

// noteMember records a membership event; x.mu must be held (or x not yet
// shared).
func (x *Index) noteMember(room string, ev *rooms.Event, pos int64) {
	user := *ev.StateKey()
	m := ev.Membership()
	x.members.set(room, user, change{pos: pos, membership: m, eventID: string(ev.ID())})
	if x.isLocal(user) {
		x.deps.Hub.SetMember(room, user, m == "join" || m == "invite")
		lj := x.localJoined[room]
		if m == "join" {
			if lj == nil {
				lj = map[string]struct{}{}
				x.localJoined[room] = lj
			}
			lj[user] = struct{}{}
		} else {
			delete(lj, user)
			if len(lj) == 0 {
				delete(x.localJoined, room)
			}
			delete(x.unread, unreadKey{user, room})
		}
	}
}

func (x *Index) isLocal(user string) bool {
	return strings.HasSuffix(user, ":"+x.cfg.ServerName)
}

// version returns a room's version, reading it from storage the first
// time.
func (x *Index) version(ctx context.Context, room string) (*rooms.Version, error) {
	x.mu.RLock()
	v := x.versions[room]
	x.mu.RUnlock()
	if v != nil {
		return v, nil
	}
	info, err := x.deps.DB.Room(ctx, room)
	if err != nil {
		return nil, fmt.Errorf("syncer: room %s: %w", room, err)
	}
	v, ok := rooms.LookupVersion(info.Version)
	if !ok {
		return nil, fmt.Errorf("syncer: room %s has unsupported version %q", room, info.Version)
	}
	x.mu.Lock()
	x.versions[room] = v
	x.mu.Unlock()
	return v, nil
}

// Head is the last event stream position the Index has read: the Events
// part of the next sync token.
func (x *Index) Head() int64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.head
}

// view is what one sync reads from the Index under one lock: the user's
// membership histories and the window's events in the user's rooms.
type view struct {
	covered bool
	hist    map[string][]change // room -> the user's membership changes
	events  []entry             // window events in (since, upto] in those rooms
}

func (x *Index) view(user string, since, upto int64) view {
	x.mu.RLock()
	defer x.mu.RUnlock()
	rs := x.members.byUser[user]
	v := view{covered: x.window.covers(since), hist: make(map[string][]change, len(rs))}
	// One array holds the copies of every history (copies: the index
	// keeps changing its own), each clipped so none can grow into the
	// next.
	n := 0
	for _, h := range rs {
		n += len(h)
	}
	all := make([]change, 0, n)
	for room, h := range rs {
		i := len(all)
		all = append(all, h...)
		v.hist[room] = all[i:len(all):len(all)]
	}
	if v.covered {
		x.window.after(since, upto, func(e *entry) {
			if _, ok := v.hist[e.room]; ok && e.visible {
				v.events = append(v.events, *e)
			}
		})
	}
	return v
}

// roomCounts returns a room's joined and invited member counts and up to
// five other members to name it by (Client-Server API, "Calculating the
// display name for a room").
func (x *Index) roomCounts(room, user string) (joined, invited int, heroes []string) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	for u, m := range x.members.byRoom[room] {
		switch m {
		case "join":
			joined++
		case "invite":
			invited++
		default:
			continue
		}
		if u != user && len(heroes) < 5 {
			heroes = append(heroes, u)
		}
	}
	return joined, invited, heroes
}

// prevContent is the content of the state event ev replaced, for
// unsigned.prev_content (Client-Server API, "Room Event Format"): clients
// show "changed their name" rather than "joined" from it, and roll state
// back with it while paginating. Null for non-state events, for the
// first event of its kind, and when the lookup fails.
func (x *Index) prevContent(ctx context.Context, ev *rooms.Event) cjson.Value {
	prevs := ev.PrevEvents()
	if !ev.IsState() || len(prevs) == 0 {
		return cjson.NullValue()
	}
	st, err := x.deps.DB.StateAfter(ctx, string(prevs[0]))
	if err != nil {
		return cjson.NullValue()
	}
	id := st[storage.StateKey{Type: ev.Type(), StateKey: *ev.StateKey()}]
	if id == "" {
		return cjson.NullValue()
	}
	recs, err := x.deps.DB.Events(ctx, []string{id})
	if err != nil || recs[id] == nil {
		return cjson.NullValue()
	}
	obj, err := cjson.Parse(recs[id].JSON)
	if err != nil {
		return cjson.NullValue()
	}
	c, _ := obj.Get("content")
	return c
}
