package syncer

import (
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/plexus-chat/plexus/signalling/internal/stream"
)

// A message to a room of N members wakes N syncs at once, and for each
// member who was joined throughout the incremental section of the room
// is the same: the same events, all visible, rendered the same way. The
// shared cache builds that section once and hands it to every member who
// asks for the same positions with the same timeline rules, so a
// fan-out costs one rendering instead of N. Only what differs between
// members (ephemeral events, account data, unread counts) is added per
// request, to a copy of the section.

// maxShareAge bounds how long a shared section is handed out: its
// events' unsigned.age is the time it was built, which must stay close
// to the time it is served.
const maxShareAge = 200 * time.Millisecond

// maxShared bounds the cached sections; past it, stale ones are dropped.
const maxShared = 1024

// sharedKey is what an incremental joined section depends on besides the
// member: the room, the positions, and the timeline rules.
type sharedKey struct {
	room  string
	since stream.Token
	upto  int64
	limit int
	lazy  bool
	// stateAfter: a use_state_after section holds other state
	// (stateafter.go). The stable and unstable requests share one, as
	// the key is chosen per response.
	stateAfter bool
}

type sharedSection struct {
	built time.Time
	jr    *JoinedRoom // nil: nothing for the room
}

// sharedSections is the cache of incremental joined sections.
type sharedSections struct {
	mu sync.Mutex // guards m
	m  map[sharedKey]sharedSection
}

// get returns the section for k built no earlier than maxShareAge before
// now.
func (s *sharedSections) get(k sharedKey, now time.Time) (sharedSection, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, ok := s.m[k]
	if !ok || now.Sub(sec.built) > maxShareAge || sec.built.After(now) {
		return sharedSection{}, false
	}
	return sec, true
}

func (s *sharedSections) put(k sharedKey, sec sharedSection) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[sharedKey]sharedSection{}
	}
	if len(s.m) >= maxShared {
		for k, old := range s.m {
			if sec.built.Sub(old.built) > maxShareAge {
				delete(s.m, k)
			}
		}
		if len(s.m) >= maxShared {
			clear(s.m)
		}
	}
	s.m[k] = sec
}

// sharedKeyFor is the key of room's incremental section in this
// response, or false when the section is particular to the member: a
// timeline filter on types or senders (rare, and not part of the key),
// or events of the member's own that carry its device's transaction IDs.
func (b *builder) sharedKeyFor(room string, evs []entry) (sharedKey, bool) {
	var lazy bool
	if f := b.req.Filter; f != nil {
		tf := f.Room.Timeline
		if tf.Types != nil || len(tf.NotTypes) > 0 || tf.Senders != nil || len(tf.NotSenders) > 0 {
			return sharedKey{}, false
		}
		lazy = tf.LazyLoadMembers || f.Room.State.LazyLoadMembers
	}
	if b.e.deps.Annotations != nil && b.req.DeviceID != "" {
		for _, e := range evs {
			if string(e.ev.Sender()) == b.req.UserID {
				return sharedKey{}, false
			}
		}
	}
	return sharedKey{room: room, since: b.since, upto: b.upto.Events, limit: b.req.Filter.timelineLimit(), lazy: lazy, stateAfter: b.stateAfter()}, true
}

// sharedJoined is incrementalJoined for a member joined throughout
// (since, upto]: every event is visible to it, so the section is the
// same for every such member and is shared.
func (b *builder) sharedJoined(room string, h []change, evs []entry) (*JoinedRoom, error) {
	k, ok := b.sharedKeyFor(room, evs)
	if !ok {
		return b.incrementalJoined(room, h, evs)
	}
	sec, ok := b.e.shared.get(k, b.now)
	if !ok {
		jr, err := b.incrementalJoined(room, h, evs)
		if err != nil {
			return nil, err
		}
		if jr != nil {
			// Clipped, so that an append by one member cannot write into
			// another's.
			jr.State.Events = slices.Clip(jr.State.Events)
			jr.Timeline.Events = slices.Clip(jr.Timeline.Events)
		}
		sec = sharedSection{built: b.now, jr: jr}
		b.e.shared.put(k, sec)
	}
	if sec.jr == nil {
		return nil, nil
	}
	// The member's own copy: the parts added per member start empty.
	jr := *sec.jr
	jr.Ephemeral = EventList{Events: []json.RawMessage{}}
	jr.AccountData = EventList{Events: []json.RawMessage{}}
	return &jr, nil
}
