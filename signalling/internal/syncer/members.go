package syncer

import (
	"context"
	"sort"
)

// change is one membership change of a user in a room.
type change struct {
	pos        int64
	membership string // join, invite, leave, ban, knock
	eventID    string
}

// members indexes room memberships both ways. Index guards it with mu.
type members struct {
	// byUser maps user -> room -> the user's membership history in the
	// room, oldest first, trimmed to the last few changes.
	byUser map[string]map[string][]change
	// byRoom maps room -> user -> current membership, for every user
	// (local or remote) with a membership event in current state.
	byRoom map[string]map[string]string
}

// keepChanges bounds each (user, room) history: membership at a position
// older than the oldest kept change is taken to be that change's.
const keepChanges = 8

func newMembers() *members {
	return &members{byUser: map[string]map[string][]change{}, byRoom: map[string]map[string]string{}}
}

func (m *members) set(room, user string, c change) {
	rs := m.byUser[user]
	if rs == nil {
		rs = map[string][]change{}
		m.byUser[user] = rs
	}
	if h := rs[room]; len(h) > 0 && h[len(h)-1].membership == c.membership {
		// A repeat (a profile change is join -> join) changes nothing
		// /sync decides on; keeping only the first position stops a run
		// of them from trimming the real changes out of the history.
		h[len(h)-1].eventID = c.eventID
		m.byRoomSet(room, user, c.membership)
		return
	}
	h := append(rs[room], c)
	if len(h) > keepChanges {
		h = append(h[:0:0], h[len(h)-keepChanges:]...)
	}
	rs[room] = h
	m.byRoomSet(room, user, c.membership)
}

func (m *members) byRoomSet(room, user, membership string) {
	us := m.byRoom[room]
	if us == nil {
		us = map[string]string{}
		m.byRoom[room] = us
	}
	us[user] = membership
}

// current is the user's membership in room now ("" if none) and the
// change that made it.
func (m *members) current(room, user string) (change, bool) {
	h := m.byUser[user][room]
	if len(h) == 0 {
		return change{}, false
	}
	return h[len(h)-1], true
}

// membershipAt is the membership a history gives just after pos.
func membershipAt(h []change, pos int64) string {
	i := sort.Search(len(h), func(i int) bool { return h[i].pos > pos })
	if i == 0 {
		// Older than everything kept: when the history was trimmed, the
		// best knowledge is its oldest kept change, which is only wrong
		// for long-gone history; otherwise there was no membership yet.
		if len(h) == keepChanges {
			return h[0].membership
		}
		return ""
	}
	return h[i-1].membership
}

// MemberLookup is the membership view other signalling slices use; the
// Engine provides it.

// JoinedRooms lists the rooms userID is joined to.
func (e *Index) JoinedRooms(_ context.Context, userID string) ([]string, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	var out []string
	for room, h := range e.members.byUser[userID] {
		if h[len(h)-1].membership == "join" {
			out = append(out, room)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Membership is userID's current membership in roomID, "" if none.
func (e *Index) Membership(_ context.Context, roomID, userID string) (string, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	c, _ := e.members.current(roomID, userID)
	return c.membership, nil
}

// SharedUsers lists the users who share a joined room with userID,
// userID included (device list tracking, Client-Server API "Tracking the
// device list for a user").
func (e *Index) SharedUsers(_ context.Context, userID string) ([]string, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	seen := map[string]struct{}{userID: {}}
	for room, h := range e.members.byUser[userID] {
		if h[len(h)-1].membership != "join" {
			continue
		}
		for u, mem := range e.members.byRoom[room] {
			if mem == "join" {
				seen[u] = struct{}{}
			}
		}
	}
	out := make([]string, 0, len(seen))
	for u := range seen {
		out = append(out, u)
	}
	sort.Strings(out)
	return out, nil
}

// RoomMembers lists the users with the given membership in roomID.
func (e *Index) RoomMembers(roomID, membership string) []string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	var out []string
	for u, mem := range e.members.byRoom[roomID] {
		if mem == membership {
			out = append(out, u)
		}
	}
	sort.Strings(out)
	return out
}
