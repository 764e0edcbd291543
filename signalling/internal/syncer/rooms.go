package syncer

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
	"github.com/plexus-chat/plexus/signalling/internal/clientevent"
	"github.com/plexus-chat/plexus/signalling/internal/stream"
)

// builder builds the rooms part of one response.
type builder struct {
	e           *Engine
	ctx         context.Context
	req         Request
	since, upto stream.Token
	initial     bool
	now         time.Time
	// hist is the user's membership histories, from the view.
	hist map[string][]change
}

func (b *builder) rooms() (*RoomsPart, view, error) {
	rp := &RoomsPart{}
	x := b.e.deps.Index
	v := x.view(b.req.UserID, b.since.Events, b.upto.Events)
	b.hist = v.hist
	// full_state with a since token still limits the timeline by the
	// token (Client-Server API, "GET /sync": full_state); only the state
	// sections are whole, which withFullState below adds.
	full := b.initial || !v.covered
	f := b.req.Filter

	if full {
		for room, h := range v.hist {
			if !f.wantRoom(room) {
				continue
			}
			switch membershipAt(h, b.upto.Events) {
			case "join":
				jr, err := b.fullJoined(room, !b.initial)
				if err != nil {
					return nil, v, err
				}
				rp.setJoin(room, jr)
			case "invite":
				ir, err := b.invited(room, changeAt(h, b.upto.Events))
				if err != nil {
					return nil, v, err
				}
				rp.setInvite(room, ir)
			case "leave", "ban":
				// A room left since a token the window cannot answer:
				// the client must still learn it is gone. An initial sync
				// lists left rooms only when the filter asks
				// (include_leave), as archived rooms.
				bf := membershipAt(h, b.since.Events)
				wantLeft := b.initial && f != nil && f.Room.IncludeLeave
				if wantLeft || (!b.initial && (bf == "join" || bf == "invite")) {
					lr, err := b.leftFull(room, h)
					if err != nil {
						return nil, v, err
					}
					rp.setLeave(room, lr)
				}
			}
		}
	} else {
		for room, evs := range byRoom(v.events) {
			if !f.wantRoom(room) {
				continue
			}
			h := v.hist[room]
			before, after := membershipAt(h, b.since.Events), membershipAt(h, b.upto.Events)
			switch {
			case after == "join" && (before != "join" || leftBetween(h, b.since.Events, b.upto.Events)):
				// Newly joined, or away and back within the window: the
				// state changed while away must reach the client.
				jr, err := b.fullJoined(room, before == "join")
				if err != nil {
					return nil, v, err
				}
				rp.setJoin(room, jr)
			case after == "join":
				jr, err := b.sharedJoined(room, h, evs)
				if err != nil {
					return nil, v, err
				}
				if jr != nil {
					rp.setJoin(room, jr)
				}
			case after == "invite" && before != "invite":
				ir, err := b.invited(room, changeAt(h, b.upto.Events))
				if err != nil {
					return nil, v, err
				}
				rp.setInvite(room, ir)
			case (after == "leave" || after == "ban") && (before == "join" || before == "invite"):
				lr, err := b.left(room, h, evs)
				if err != nil {
					return nil, v, err
				}
				rp.setLeave(room, lr)
			}
		}
	}
	if b.req.FullState && !full {
		if err := b.withFullState(rp, v); err != nil {
			return nil, v, err
		}
	}
	if err := b.ephemeral(rp, v); err != nil {
		return nil, v, err
	}
	return rp, v, nil
}

// byRoom groups events by room, each group in stream order. The usual
// incremental sync has news in one room only; it needs no copy.
func byRoom(evs []entry) map[string][]entry {
	if len(evs) == 0 {
		return nil
	}
	one := true
	for _, e := range evs[1:] {
		if e.room != evs[0].room {
			one = false
			break
		}
	}
	if one {
		return map[string][]entry{evs[0].room: evs}
	}
	m := map[string][]entry{}
	for _, e := range evs {
		m[e.room] = append(m[e.room], e)
	}
	return m
}

// withFullState gives every joined room its whole current state, for
// full_state=true with a since token: rooms without news get an empty
// timeline.
func (b *builder) withFullState(rp *RoomsPart, v view) error {
	for room, h := range v.hist {
		if membershipAt(h, b.upto.Events) != "join" || !b.req.Filter.wantRoom(room) {
			continue
		}
		jr := rp.Join[room]
		if jr == nil {
			jr = newJoinedRoom()
			jr.Timeline.PrevBatch = b.upto.String()
			rp.setJoin(room, jr)
		}
		info, err := b.e.deps.DB.Room(b.ctx, room)
		if err != nil {
			return err
		}
		inTimeline := map[string]bool{}
		for _, raw := range jr.Timeline.Events {
			var id struct {
				EventID string `json:"event_id"`
			}
			if json.Unmarshal(raw, &id) == nil {
				inTimeline[id.EventID] = true
			}
		}
		var ids []string
		for _, id := range info.Current {
			// state_after is the whole state, timeline events included
			// (stateafter.go).
			if !inTimeline[id] || b.stateAfter() {
				ids = append(ids, id)
			}
		}
		state, err := b.loadEvents(room, ids)
		if err != nil {
			return err
		}
		if jr.State.Events, err = b.formatEntries(state, false); err != nil {
			return err
		}
	}
	return nil
}

// joinedRoomForExtras returns the room's entry in rp.Join, making an
// empty one if the user is joined and the room has no entry yet.
func (b *builder) joinedRoomForExtras(rp *RoomsPart, room string) *JoinedRoom {
	if jr := rp.Join[room]; jr != nil {
		return jr
	}
	if b.membershipAtUpto(room) != "join" || !b.req.Filter.wantRoom(room) {
		return nil
	}
	jr := newJoinedRoom()
	jr.Timeline.PrevBatch = b.upto.String()
	rp.setJoin(room, jr)
	return jr
}

// membershipAtUpto is the user's membership in room at this response's
// upto position, not the index's latest, which may already be ahead.
func (b *builder) membershipAtUpto(room string) string {
	if b.hist == nil {
		return ""
	}
	return membershipAt(b.hist[room], b.upto.Events)
}

func newJoinedRoom() *JoinedRoom {
	return &JoinedRoom{
		State:       EventList{Events: []json.RawMessage{}},
		Timeline:    Timeline{Events: []json.RawMessage{}},
		Ephemeral:   EventList{Events: []json.RawMessage{}},
		AccountData: EventList{Events: []json.RawMessage{}},
	}
}

// ephemeral adds typing notifications and receipts to joined rooms.
func (b *builder) ephemeral(rp *RoomsPart, v view) error {
	eph := b.e.deps.Ephemeral
	if eph == nil {
		return nil
	}
	since := b.since.Typing
	if b.initial {
		since = 0
	}
	for room, users := range eph.TypingSince(since) {
		if _, ok := v.hist[room]; !ok {
			continue
		}
		if users == nil {
			users = []string{}
		}
		if jr := b.joinedRoomForExtras(rp, room); jr != nil {
			ev, _ := json.Marshal(map[string]any{"type": "m.typing", "content": map[string]any{"user_ids": users}})
			jr.Ephemeral.Events = append(jr.Ephemeral.Events, ev)
		}
	}
	var joined []string
	for room, h := range v.hist {
		if membershipAt(h, b.upto.Events) == "join" {
			joined = append(joined, room)
		}
	}
	sort.Strings(joined)
	if !b.initial && b.upto.Aux <= b.since.Aux {
		return nil // no receipt can be new
	}
	rcpts, err := eph.ReceiptsSince(b.ctx, b.req.UserID, joined, b.since.Aux, b.upto.Aux)
	if err != nil {
		return err
	}
	for room, edu := range rcpts {
		if jr := b.joinedRoomForExtras(rp, room); jr != nil {
			jr.Ephemeral.Events = append(jr.Ephemeral.Events, edu)
		}
	}
	return nil
}

// incrementalJoined is a joined room's changes from the window.
func (b *builder) incrementalJoined(room string, h []change, evs []entry) (*JoinedRoom, error) {
	tf := b.timelineFilter()
	var visible []entry
	for _, e := range evs {
		own := e.ev.Type() == "m.room.member" && e.ev.StateKeyIs(b.req.UserID)
		if !own && membershipAt(h, e.pos) != "join" {
			continue
		}
		visible = append(visible, e)
	}
	limit := b.req.Filter.timelineLimit()
	jr := newJoinedRoom()
	// The filter picks the timeline's candidates first and the limit
	// applies to them; state the timeline leaves out (skipped by the
	// limit or by the filter) must reach the client as state.
	latest := map[rooms.StateTuple]entry{}
	var cand []entry
	for _, e := range visible {
		if tf.matches(e.ev.Type(), string(e.ev.Sender())) {
			cand = append(cand, e)
		} else if e.ev.IsState() {
			latest[e.ev.Tuple()] = e
		}
	}
	skipped, timeline := splitLimit(cand, limit)
	jr.Timeline.Limited = len(skipped) > 0
	for _, e := range skipped {
		if e.ev.IsState() {
			latest[e.ev.Tuple()] = e
		}
	}
	shown := timeline
	if len(timeline) == 0 && len(latest) == 0 {
		return nil, nil
	}
	first := b.since.Events
	if len(shown) > 0 {
		first = shown[0].pos - 1
	}
	jr.Timeline.PrevBatch = stream.Token{Events: first, Aux: b.since.Aux, Typing: b.since.Typing}.String()
	var err error
	// Window events are new to this client: a redaction of one is
	// delivered after it, so there is nothing to look up.
	if jr.Timeline.Events, err = b.formatFresh(timeline); err != nil {
		return nil, err
	}
	var state []entry
	for _, e := range latest {
		state = append(state, e)
	}
	sort.Slice(state, func(i, j int) bool { return state[i].pos < state[j].pos })
	if b.stateAfter() {
		// Every state change in the window, the timeline's too.
		if state, err = b.joinedStateAfter(room, visible); err != nil {
			return nil, err
		}
	}
	if jr.State.Events, err = b.formatEntries(state, false); err != nil {
		return nil, err
	}
	if b.req.Filter != nil && b.req.Filter.Room.State.LazyLoadMembers {
		if err := b.addLazyMembers(room, jr, timeline, state); err != nil {
			return nil, err
		}
	}
	return jr, nil
}

// splitLimit splits evs into the part a timeline of limit events leaves
// out and the part it shows.
func splitLimit(evs []entry, limit int) (skipped, shown []entry) {
	if len(evs) <= limit {
		return nil, evs
	}
	return evs[:len(evs)-limit], evs[len(evs)-limit:]
}

func (b *builder) timelineFilter() *EventFilter {
	if b.req.Filter == nil {
		return nil
	}
	return &b.req.Filter.Room.Timeline.EventFilter
}

// addLazyMembers adds the current member events of the timeline's
// senders that the state does not already carry (Client-Server API,
// "Lazy-loading room members").
func (b *builder) addLazyMembers(room string, jr *JoinedRoom, timeline, state []entry) error {
	have := map[string]bool{}
	for _, e := range state {
		if e.ev.Type() == "m.room.member" && e.ev.StateKey() != nil {
			have[*e.ev.StateKey()] = true
		}
	}
	for _, e := range timeline {
		if e.ev.Type() == "m.room.member" && e.ev.StateKey() != nil {
			have[*e.ev.StateKey()] = true
		}
	}
	var want []string
	for _, e := range timeline {
		if s := string(e.ev.Sender()); !have[s] {
			have[s] = true
			want = append(want, s)
		}
	}
	if len(want) == 0 {
		return nil
	}
	info, err := b.e.deps.DB.Room(b.ctx, room)
	if err != nil {
		return err
	}
	var ids []string
	for _, u := range want {
		if id, ok := info.Current[storage.StateKey{Type: "m.room.member", StateKey: u}]; ok {
			ids = append(ids, id)
		}
	}
	evs, err := b.loadEvents(room, ids)
	if err != nil {
		return err
	}
	more, err := b.formatEntries(evs, false)
	if err != nil {
		return err
	}
	jr.State.Events = append(jr.State.Events, more...)
	return nil
}

// fullJoined is a joined room as an initial sync shows it: the latest
// timeline and the current state. limitedHint marks the timeline limited
// even when it is not full, for a since token the window cannot answer.
func (b *builder) fullJoined(room string, limitedHint bool) (*JoinedRoom, error) {
	limit := b.req.Filter.timelineLimit()
	info, err := b.e.deps.DB.Room(b.ctx, room)
	if err != nil {
		return nil, err
	}
	recent, err := b.recentEvents(room, b.upto.Events, limit+1)
	if err != nil {
		return nil, err
	}
	// History visibility (Client-Server API, "History visibility"): in a
	// "joined" or "invited" room the user sees nothing from before their
	// membership began.
	cutoff, err := b.visibleFrom(room, info)
	if err != nil {
		return nil, err
	}
	for len(recent) > 0 && recent[0].pos < cutoff {
		recent = recent[1:]
	}
	jr := newJoinedRoom()
	if len(recent) > limit {
		recent = recent[1:]
		jr.Timeline.Limited = true
	} else if limitedHint && len(recent) > 0 {
		jr.Timeline.Limited = true
	}
	tf := b.timelineFilter()
	var timeline []entry
	inTimeline := map[string]bool{}
	for _, e := range recent {
		if tf.matches(e.ev.Type(), string(e.ev.Sender())) {
			timeline = append(timeline, e)
			inTimeline[string(e.ev.ID())] = true
		}
	}
	first := b.upto.Events
	if len(recent) > 0 {
		first = recent[0].pos - 1
	}
	jr.Timeline.PrevBatch = stream.Token{Events: first, Aux: b.upto.Aux, Typing: b.upto.Typing}.String()

	lazy := b.req.Filter != nil && b.req.Filter.Room.State.LazyLoadMembers
	wantMember := map[string]bool{b.req.UserID: true}
	for _, e := range timeline {
		wantMember[string(e.ev.Sender())] = true
	}
	var ids []string
	for k, id := range info.Current {
		if inTimeline[id] && !b.stateAfter() {
			continue
		}
		if lazy && k.Type == "m.room.member" && !wantMember[k.StateKey] {
			continue
		}
		if b.req.Filter != nil && !b.req.Filter.Room.State.matches(k.Type, "") {
			continue
		}
		ids = append(ids, id)
	}
	state, err := b.loadEvents(room, ids)
	if err != nil {
		return nil, err
	}
	if jr.Timeline.Events, err = b.formatEntries(timeline, true); err != nil {
		return nil, err
	}
	if jr.State.Events, err = b.formatEntries(state, false); err != nil {
		return nil, err
	}
	joined, invited, heroes := b.e.deps.Index.roomCounts(room, b.req.UserID)
	jr.Summary = &Summary{Heroes: heroes, JoinedMemberCount: &joined, InvitedMemberCount: &invited}
	return jr, nil
}

// visibleFrom is the first stream position of room the user may see:
// 0 for "shared" and "world_readable" history, else where the user's
// current membership run began (join, or invite then join, for
// "invited").
func (b *builder) visibleFrom(room string, info *storage.RoomInfo) (int64, error) {
	id, ok := info.Current[storage.StateKey{Type: "m.room.history_visibility"}]
	if !ok {
		return 0, nil // the default is "shared"
	}
	evs, err := b.loadEvents(room, []string{id})
	if err != nil || len(evs) == 0 {
		return 0, err
	}
	vis, _ := evs[0].ev.Content().GetStr("history_visibility")
	var allowed map[string]bool
	switch vis {
	case "joined":
		allowed = map[string]bool{"join": true}
	case "invited":
		allowed = map[string]bool{"join": true, "invite": true}
	default:
		return 0, nil
	}
	h := b.hist[room]
	from := int64(-1)
	for i := len(h) - 1; i >= 0; i-- {
		if h[i].pos > b.upto.Events {
			continue
		}
		if !allowed[h[i].membership] {
			break
		}
		from = h[i].pos
	}
	if from < 0 {
		return b.upto.Events + 1, nil // not a member: nothing is visible
	}
	return from, nil
}

// invited is an invite as the invitee sees it: stripped state and the
// invite event.
func (b *builder) invited(room string, inv change) (*InvitedRoom, error) {
	info, err := b.e.deps.DB.Room(b.ctx, room)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, t := range clientevent.StrippedStateTypes {
		if id, ok := info.Current[storage.StateKey{Type: t}]; ok {
			ids = append(ids, id)
		}
	}
	inviteID := inv.eventID
	ids = append(ids, inviteID)
	evs, err := b.loadEvents(room, ids)
	if err != nil {
		return nil, err
	}
	ir := &InvitedRoom{InviteState: EventList{Events: []json.RawMessage{}}}
	for _, e := range evs {
		if string(e.ev.ID()) == inviteID {
			// The invite itself goes in full client form, so the client
			// sees who invited it and when.
			ir.InviteState.Events = append(ir.InviteState.Events, clientevent.Format(e.ev, clientevent.Options{Now: b.now, OmitRoomID: true}))
			continue
		}
		ir.InviteState.Events = append(ir.InviteState.Events, clientevent.Stripped(e.ev))
	}
	return ir, nil
}

// left is a room the user left (or was kicked or banned from) since the
// last sync: the timeline up to the leave.
func (b *builder) left(room string, h []change, evs []entry) (*LeftRoom, error) {
	leaveID := changeAt(h, b.upto.Events).eventID
	var timeline []entry
	for _, e := range evs {
		own := e.ev.Type() == "m.room.member" && e.ev.StateKeyIs(b.req.UserID)
		if own || membershipAt(h, e.pos) == "join" {
			timeline = append(timeline, e)
		}
		if string(e.ev.ID()) == leaveID {
			break
		}
	}
	seen := timeline
	tf := b.timelineFilter()
	var cand []entry
	for _, e := range timeline {
		if tf.matches(e.ev.Type(), string(e.ev.Sender())) {
			cand = append(cand, e)
		}
	}
	skipped, timeline := splitLimit(cand, b.req.Filter.timelineLimit())
	lr := &LeftRoom{State: EventList{Events: []json.RawMessage{}}, AccountData: EventList{Events: []json.RawMessage{}}}
	lr.Timeline.Limited = len(skipped) > 0
	var err error
	if lr.Timeline.Events, err = b.formatEntries(timeline, true); err != nil {
		return nil, err
	}
	first := b.since.Events
	if len(timeline) > 0 {
		first = timeline[0].pos - 1
	}
	lr.Timeline.PrevBatch = stream.Token{Events: first, Aux: b.since.Aux, Typing: b.since.Typing}.String()
	if b.stateAfter() {
		if lr.State.Events, err = b.leftStateAfter(room, seen, leaveID); err != nil {
			return nil, err
		}
	}
	return lr, nil
}

// leftFull is a room the user left, for a since token the window cannot
// answer: the leave event alone, marked limited so the client knows
// there may be more before it.
func (b *builder) leftFull(room string, h []change) (*LeftRoom, error) {
	leave := changeAt(h, b.upto.Events)
	evs, err := b.loadEvents(room, []string{leave.eventID})
	if err != nil {
		return nil, err
	}
	lr := &LeftRoom{State: EventList{Events: []json.RawMessage{}}, AccountData: EventList{Events: []json.RawMessage{}}}
	if lr.Timeline.Events, err = b.formatEntries(evs, true); err != nil {
		return nil, err
	}
	lr.Timeline.Limited = true
	lr.Timeline.PrevBatch = stream.Token{Events: leave.pos - 1, Aux: b.upto.Aux, Typing: b.upto.Typing}.String()
	if b.stateAfter() {
		if lr.State.Events, err = b.leftFullStateAfter(room, evs); err != nil {
			return nil, err
		}
	}
	return lr, nil
}

// changeAt is the last change in a history at or before pos.
func changeAt(h []change, pos int64) change {
	i := sort.Search(len(h), func(i int) bool { return h[i].pos > pos })
	if i == 0 {
		if len(h) == 0 {
			return change{}
		}
		return h[0]
	}
	return h[i-1]
}

// leftBetween reports whether the history has the user out of the room at
// some point in (since, upto].
func leftBetween(h []change, since, upto int64) bool {
	for _, c := range h {
		if c.pos > since && c.pos <= upto && c.membership != "join" {
			return true
		}
	}
	return false
}

// recentEvents reads a room's last n visible events at or before upto,
// oldest first.
func (b *builder) recentEvents(room string, upto int64, n int) ([]entry, error) {
	v, err := b.e.deps.Index.version(b.ctx, room)
	if err != nil {
		return nil, err
	}
	var out []entry
	err = b.e.deps.DB.View(b.ctx, func(tx *storage.Tx) error {
		rows, err := tx.Query(b.ctx, `SELECT stream_pos, json FROM events
			WHERE room_id = ? AND stream_pos <= ? AND outlier = FALSE AND rejected = '' AND soft_failed = FALSE
			ORDER BY stream_pos DESC LIMIT ?`, room, upto, n)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var pos int64
			var js []byte
			if err := rows.Scan(&pos, &js); err != nil {
				return err
			}
			ev, err := rooms.ParseEvent(js, v)
			if err != nil {
				return fmt.Errorf("syncer: stored event at %d: %w", pos, err)
			}
			out = append(out, entry{pos: pos, room: room, ev: ev, visible: true})
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	slices.Reverse(out)
	return out, nil
}

// loadEvents reads events by ID, in stream order.
func (b *builder) loadEvents(room string, ids []string) ([]entry, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	v, err := b.e.deps.Index.version(b.ctx, room)
	if err != nil {
		return nil, err
	}
	recs, err := b.e.deps.DB.Events(b.ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]entry, 0, len(recs))
	for _, rec := range recs {
		ev, err := rooms.ParseEvent(rec.JSON, v)
		if err != nil {
			return nil, fmt.Errorf("syncer: stored event %s: %w", rec.EventID, err)
		}
		out = append(out, entry{pos: rec.StreamPos, room: room, ev: ev, visible: true})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pos < out[j].pos })
	return out, nil
}

// formatFresh renders events the client has not seen before: no
// redaction can already apply to them.
func (b *builder) formatFresh(evs []entry) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, 0, len(evs))
	for _, e := range evs {
		if e.prep == nil {
			out = append(out, b.formatOne(e, nil, true))
			continue
		}
		txn := ""
		if a := b.e.deps.Annotations; a != nil && string(e.ev.Sender()) == b.req.UserID && b.req.DeviceID != "" {
			txn = a.TxnID(b.ctx, b.req.UserID, b.req.DeviceID, string(e.ev.ID()))
		}
		out = append(out, e.prep.Render(b.now, txn))
	}
	return out, nil
}

// formatOne renders one event; timeline events also get
// unsigned.prev_content (state sections do without: a room's whole state
// would cost two reads per event).
func (b *builder) formatOne(e entry, redactedBecause []byte, timeline bool) json.RawMessage {
	o := clientevent.Options{Now: b.now, OmitRoomID: true, RedactedBecause: redactedBecause}
	if timeline {
		o.PrevContent = b.e.deps.Index.prevContent(b.ctx, e.ev)
	}
	if a := b.e.deps.Annotations; a != nil && string(e.ev.Sender()) == b.req.UserID && b.req.DeviceID != "" {
		o.TxnID = a.TxnID(b.ctx, b.req.UserID, b.req.DeviceID, string(e.ev.ID()))
	}
	return clientevent.Format(e.ev, o)
}

// formatEntries renders events in client form for this request's user.
func (b *builder) formatEntries(evs []entry, timeline bool) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, 0, len(evs))
	if len(evs) == 0 {
		return out, nil
	}
	var because map[string][]byte
	if a := b.e.deps.Annotations; a != nil {
		parsed := make([]*rooms.Event, len(evs))
		for i, e := range evs {
			parsed[i] = e.ev
		}
		var err error
		if because, err = a.RedactedBecause(b.ctx, evs[0].room, parsed); err != nil {
			return nil, err
		}
	}
	for _, e := range evs {
		out = append(out, b.formatOne(e, because[string(e.ev.ID())], timeline))
	}
	return out, nil
}
