package syncer

import (
	"strings"

	"github.com/plexus-chat/plexus/rooms"
)

// Unread counts (Client-Server API, "Receiving notifications": the
// unread_notifications of each joined room). Plexus has no push rules
// yet, so it applies the spirit of the default ones: a message, an
// encrypted event, a sticker or a call invite from someone else notifies;
// it highlights when it mentions the user (m.mentions.user_ids, or the
// user ID or localpart in the body). Counts are kept in memory per local
// member and room, raised by the tailer and recomputed from the window
// when the user sends a read receipt; a restart starts them at zero.

type unreadKey struct{ user, room string }

type unreadCount struct{ notify, highlight int }

// notifies reports whether ev counts as unread for user, and whether it
// highlights.
func notifies(ev *rooms.Event, user string) (notify, highlight bool) {
	if string(ev.Sender()) == user {
		return false, false
	}
	switch ev.Type() {
	case "m.room.message", "m.room.encrypted", "m.sticker", "m.call.invite":
	default:
		return false, false
	}
	c := ev.Content()
	if ids, ok := c.Path("m.mentions", "user_ids"); ok {
		for _, v := range ids.Array() {
			if s, _ := v.Str(); s == user {
				return true, true
			}
		}
	}
	if body, ok := c.GetStr("body"); ok {
		local := strings.TrimPrefix(user, "@")
		if i := strings.IndexByte(local, ':'); i > 0 {
			local = local[:i]
		}
		if strings.Contains(body, user) || (len(local) > 2 && strings.Contains(strings.ToLower(body), local)) {
			return true, true
		}
	}
	return true, false
}

// countUnreadLocked raises the counts of a room's local joined members for
// one new event. x.mu must be held.
func (x *Index) countUnreadLocked(e entry) {
	for u := range x.localJoined[e.room] {
		n, h := notifies(e.ev, u)
		if !n {
			continue
		}
		k := unreadKey{u, e.room}
		c := x.unread[k]
		c.notify++
		if h {
			c.highlight++
		}
		x.unread[k] = c
	}
}

// MarkRead recounts user's unread events in room after the read receipt
// at stream position pos, from the window.
func (x *Index) MarkRead(user, room string, pos int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	var c unreadCount
	x.window.after(pos, x.head, func(e *entry) {
		if e.room != room || !e.visible {
			return
		}
		if n, h := notifies(e.ev, user); n {
			c.notify++
			if h {
				c.highlight++
			}
		}
	})
	k := unreadKey{user, room}
	if c == (unreadCount{}) {
		delete(x.unread, k)
	} else {
		x.unread[k] = c
	}
}

// Unread is user's unread count in room.
func (x *Index) Unread(user, room string) (notify, highlight int) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	c := x.unread[unreadKey{user, room}]
	return c.notify, c.highlight
}
