package roomapi

import (
	"encoding/json"
	"strings"

	"github.com/plexus-chat/plexus/internal/mxerr"
	"github.com/plexus-chat/plexus/rooms"
)

// roomEventFilter is a RoomEventFilter (Client-Server API, "Filtering";
// schema room_event_filter.yaml), as /messages and /context take it.
type roomEventFilter struct {
	Limit                   *int      `json:"limit"`
	Types                   *[]string `json:"types"`
	NotTypes                []string  `json:"not_types"`
	Senders                 *[]string `json:"senders"`
	NotSenders              []string  `json:"not_senders"`
	Rooms                   *[]string `json:"rooms"`
	NotRooms                []string  `json:"not_rooms"`
	ContainsURL             *bool     `json:"contains_url"`
	LazyLoadMembers         bool      `json:"lazy_load_members"`
	IncludeRedundantMembers bool      `json:"include_redundant_members"`
}

// parseFilter reads the filter query parameter: absent means no
// filtering; JSON of the wrong shape is 400 M_BAD_JSON, anything else
// that is not JSON 400 M_NOT_JSON.
func parseFilter(s string) (*roomEventFilter, error) {
	f := &roomEventFilter{}
	if s == "" {
		return f, nil
	}
	if !json.Valid([]byte(s)) {
		return nil, mxerr.NotJSON("filter is not JSON")
	}
	if err := json.Unmarshal([]byte(s), f); err != nil {
		return nil, mxerr.BadJSON("filter is not a valid RoomEventFilter: " + err.Error())
	}
	if f.Limit != nil && *f.Limit <= 0 {
		// "must be an integer greater than 0"
		return nil, mxerr.BadJSON("filter.limit must be greater than 0")
	}
	return f, nil
}

// matchType matches an event type against a pattern where "*" stands
// for any sequence of characters.
func matchType(pattern, typ string) bool {
	if !strings.Contains(pattern, "*") {
		return pattern == typ
	}
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(typ, parts[0]) {
		return false
	}
	rest := typ[len(parts[0]):]
	for i, p := range parts[1:] {
		last := i == len(parts)-2
		if last {
			return strings.HasSuffix(rest, p)
		}
		j := strings.Index(rest, p)
		if j < 0 {
			return false
		}
		rest = rest[j+len(p):]
	}
	return true
}

func anyType(patterns []string, typ string) bool {
	for _, p := range patterns {
		if matchType(p, typ) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// allowsRoom applies rooms/not_rooms.
func (f *roomEventFilter) allowsRoom(roomID string) bool {
	if contains(f.NotRooms, roomID) {
		return false
	}
	return f.Rooms == nil || contains(*f.Rooms, roomID)
}

// allows applies the event-level fields; a not_ list wins over its
// inclusive counterpart ("A matching type will be excluded even if it is
// listed in the types filter").
func (f *roomEventFilter) allows(ev *rooms.Event) bool {
	typ, sender := ev.Type(), string(ev.Sender())
	if anyType(f.NotTypes, typ) || contains(f.NotSenders, sender) {
		return false
	}
	if f.Types != nil && !anyType(*f.Types, typ) {
		return false
	}
	if f.Senders != nil && !contains(*f.Senders, sender) {
		return false
	}
	if !f.allowsRoom(string(ev.RoomID())) {
		return false
	}
	if f.ContainsURL != nil {
		_, has := ev.Content().Get("url")
		if has != *f.ContainsURL {
			return false
		}
	}
	return true
}
