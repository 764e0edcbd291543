package syncer

import (
	"encoding/json"
	"strings"
)

// Filter is the part of a sync filter (Client-Server API, "Filtering")
// the engine applies.
type Filter struct {
	AccountData EventFilter `json:"account_data"`
	Presence    EventFilter `json:"presence"`
	Room        RoomFilter  `json:"room"`
}

// RoomFilter filters the rooms section.
type RoomFilter struct {
	Rooms        *[]string       `json:"rooms"`
	NotRooms     []string        `json:"not_rooms"`
	IncludeLeave bool            `json:"include_leave"`
	Timeline     RoomEventFilter `json:"timeline"`
	State        RoomEventFilter `json:"state"`
	Ephemeral    RoomEventFilter `json:"ephemeral"`
	AccountData  RoomEventFilter `json:"account_data"`
}

// EventFilter selects events by type and sender.
type EventFilter struct {
	Limit      *int      `json:"limit"`
	Types      *[]string `json:"types"`
	NotTypes   []string  `json:"not_types"`
	Senders    *[]string `json:"senders"`
	NotSenders []string  `json:"not_senders"`
}

// RoomEventFilter is an EventFilter with room and member-loading options.
type RoomEventFilter struct {
	EventFilter
	Rooms                   *[]string `json:"rooms"`
	NotRooms                []string  `json:"not_rooms"`
	LazyLoadMembers         bool      `json:"lazy_load_members"`
	IncludeRedundantMembers bool      `json:"include_redundant_members"`
}

// DefaultTimelineLimit is the timeline length when the filter sets none
// (Synapse's default too).
const DefaultTimelineLimit = 10

// MaxTimelineLimit caps a filter's timeline limit.
const MaxTimelineLimit = 1000

// parseFilter decodes an inline filter.
func parseFilter(b []byte) (*Filter, error) {
	var f Filter
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, err
	}
	return &f, nil
}

func (f *Filter) timelineLimit() int {
	if f == nil || f.Room.Timeline.Limit == nil {
		return DefaultTimelineLimit
	}
	return min(max(*f.Room.Timeline.Limit, 1), MaxTimelineLimit)
}

// wantRoom reports whether the filter lets room through.
func (f *Filter) wantRoom(room string) bool {
	if f == nil {
		return true
	}
	return allows(f.Room.Rooms, f.Room.NotRooms, room, false)
}

// matches reports whether an event of this type and sender passes ef.
func (ef *EventFilter) matches(typ, sender string) bool {
	if ef == nil {
		return true
	}
	if ef.Types != nil && len(*ef.Types) == 0 {
		return false
	}
	return allows(ef.Types, ef.NotTypes, typ, true) && allows(ef.Senders, ef.NotSenders, sender, false)
}

// allows applies an include list (nil: everything) and an exclude list;
// wild enables the spec's "*" wildcard for event types.
func allows(include *[]string, exclude []string, v string, wild bool) bool {
	for _, p := range exclude {
		if match(p, v, wild) {
			return false
		}
	}
	if include == nil {
		return true
	}
	for _, p := range *include {
		if match(p, v, wild) {
			return true
		}
	}
	return false
}

func match(pattern, v string, wild bool) bool {
	if !wild || !strings.Contains(pattern, "*") {
		return pattern == v
	}
	return globMatch(pattern, v)
}

// globMatch matches with "*" as any run of characters.
func globMatch(p, s string) bool {
	parts := strings.Split(p, "*")
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for i := 1; i < len(parts); i++ {
		last := i == len(parts)-1
		if last {
			return strings.HasSuffix(s, parts[i])
		}
		j := strings.Index(s, parts[i])
		if j < 0 {
			return false
		}
		s = s[j+len(parts[i]):]
	}
	return true
}
