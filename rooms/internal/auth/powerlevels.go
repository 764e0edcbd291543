package auth

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// InfinitePowerLevel stands for the infinite power level of room creators
// in room version 12 (rooms v12, "Authorisation rules", note on room
// creators). It compares greater than any level a power_levels event can
// hold (those are within ±(2^53-1)) and equal to itself, so one creator is
// never "less than" another.
const InfinitePowerLevel int64 = math.MaxInt64

// Defaults of m.room.power_levels (event schema m.room.power_levels and
// server-server API, "Definitions"). They apply both when the event lacks
// the property and when the room has no power_levels event at all.
//
// state_default is 50 in both cases, as the event schema says ("If there
// is no state_default in the m.room.power_levels event, or there is no
// m.room.power_levels event, the state_default is 50") and as Synapse
// does. gomatrixserverlib uses 0 when there is no event, following a
// Synapse version from 2016; we follow the spec.
const (
	defaultUsersLevel       int64 = 0
	defaultEventsLevel      int64 = 0
	defaultStateLevel       int64 = 50
	defaultBanLevel         int64 = 50
	defaultKickLevel        int64 = 50
	defaultRedactLevel      int64 = 50
	defaultInviteLevel      int64 = 0
	defaultNotificationRoom int64 = 50
	// defaultCreatorLevel is the creator's level in rooms v1-11 when the
	// room has no power_levels event.
	defaultCreatorLevel int64 = 100
)

// Well-known state tuples.
var (
	createTuple      = pdu.StateTuple{Type: pdu.TypeCreate}
	powerLevelsTuple = pdu.StateTuple{Type: pdu.TypePowerLevels}
	joinRulesTuple   = pdu.StateTuple{Type: pdu.TypeJoinRules}
)

func memberTuple(u pdu.UserID) pdu.StateTuple {
	return pdu.StateTuple{Type: pdu.TypeMember, StateKey: string(u)}
}

// PowerLevels is an m.room.power_levels event parsed with the defaults
// applied, for state resolution and the client API. The auth rules
// themselves read the event in place (see levels) so that checking an
// event allocates nothing; both go through levelValue, and a test holds
// them equal.
type PowerLevels struct {
	// Users holds the explicit entries of content.users.
	Users                                     map[pdu.UserID]int64
	UsersDefault, EventsDefault, StateDefault int64
	Ban, Kick, Redact, Invite                 int64
	// Events holds the explicit entries of content.events.
	Events map[string]int64
	// Notifications holds content.notifications, with "room" defaulted to
	// 50 when absent.
	Notifications map[string]int64
	// Creators are the room's creators (see Creators).
	Creators []pdu.UserID
	// InfiniteCreators is set in room versions whose creators have
	// InfinitePowerLevel regardless of Users (v12).
	InfiniteCreators bool
}

// ParsePowerLevels parses a power_levels event that is part of the room
// state; ev is nil when the room has none. create is the room's create
// event, needed for the creators' levels; it may be nil only when the
// caller has no use for them.
//
// Accepted events are read leniently: a property that is absent or not a
// valid level takes its default, an entry of users or events that is not
// a valid level is ignored (room versions before 10 also accept levels
// written as strings; see levelValue). The strict checks on new events are
// the auth rules' (rules 9.1 to 9.3 in v10/v11, 10.1 to 10.4 in v12).
func ParsePowerLevels(ev *pdu.Event, create *pdu.Event) (*PowerLevels, error) {
	if ev != nil && (ev.Type() != pdu.TypePowerLevels || !ev.StateKeyIs("")) {
		return nil, fmt.Errorf("auth: %s is not an m.room.power_levels state event with empty state_key", ev.ID())
	}
	if create != nil && (create.Type() != pdu.TypeCreate || !create.StateKeyIs("")) {
		return nil, fmt.Errorf("auth: %s is not an m.room.create state event with empty state_key", create.ID())
	}
	l := newLevels(ev, create)
	p := &PowerLevels{
		Users:         map[pdu.UserID]int64{},
		UsersDefault:  l.named("users_default", defaultUsersLevel),
		EventsDefault: l.named("events_default", defaultEventsLevel),
		StateDefault:  l.named("state_default", defaultStateLevel),
		Ban:           l.named("ban", defaultBanLevel),
		Kick:          l.named("kick", defaultKickLevel),
		Redact:        l.named("redact", defaultRedactLevel),
		Invite:        l.named("invite", defaultInviteLevel),
		Events:        map[string]int64{},
		Notifications: map[string]int64{},
		Creators:      Creators(create),
	}
	if l.v != nil {
		p.InfiniteCreators = l.v.PrivilegedCreators
	}
	if ev == nil {
		// No power_levels event: in rooms v1-11 the creator has 100 (event
		// schema m.room.power_levels, users_default); in v12 creators are
		// infinite anyway and everybody else has users_default.
		if !p.InfiniteCreators {
			for _, c := range p.Creators {
				p.Users[c] = defaultCreatorLevel
			}
		}
	} else {
		users, _ := l.content.Get("users")
		for _, m := range users.Members() {
			u, err := pdu.ParseUserID(m.Key)
			if err != nil {
				continue
			}
			if n, ok := levelValue(l.v, m.Value); ok {
				p.Users[u] = n
			}
		}
		events, _ := l.content.Get("events")
		for _, m := range events.Members() {
			if n, ok := levelValue(l.v, m.Value); ok {
				p.Events[m.Key] = n
			}
		}
		notifs, _ := l.content.Get("notifications")
		for _, m := range notifs.Members() {
			if n, ok := levelValue(l.v, m.Value); ok {
				p.Notifications[m.Key] = n
			}
		}
	}
	if _, ok := p.Notifications["room"]; !ok {
		p.Notifications["room"] = defaultNotificationRoom
	}
	return p, nil
}

// UserLevel is u's power level.
func (p *PowerLevels) UserLevel(u pdu.UserID) int64 {
	if p.InfiniteCreators && slices.Contains(p.Creators, u) {
		return InfinitePowerLevel
	}
	if n, ok := p.Users[u]; ok {
		return n
	}
	return p.UsersDefault
}

// EventLevel is the "required power level" to send an event of type typ
// (server-server API, "Definitions"): its entry in events, else
// state_default or events_default.
func (p *PowerLevels) EventLevel(typ string, isState bool) int64 {
	if n, ok := p.Events[typ]; ok {
		return n
	}
	if isState {
		return p.StateDefault
	}
	return p.EventsDefault
}

// SenderPowerLevel is the power level of e's sender given state, as used
// by the auth rules and by state resolution's reverse topological power
// ordering (which passes the event's auth events as state). In v12 the
// state must include the create event; creators get InfinitePowerLevel.
// A create event checked against empty state is judged against itself.
func SenderPowerLevel(e *pdu.Event, state StateGetter) int64 {
	create := state(createTuple)
	if create == nil && e.Type() == pdu.TypeCreate && e.StateKeyIs("") {
		create = e
	}
	return newLevels(state(powerLevelsTuple), create).user(e.Sender())
}

// Creators returns the room creators: in v12 the create event's sender
// and the valid user IDs of content.additional_creators; in v11 the
// sender; in v10 content.creator (none if it is missing or not a user ID).
func Creators(create *pdu.Event) []pdu.UserID {
	if create == nil {
		return nil
	}
	v := create.Version()
	if !v.CreatorIsSender {
		s, ok := create.Content().GetStr("creator")
		if u, err := pdu.ParseUserID(s); ok && err == nil {
			return []pdu.UserID{u}
		}
		return nil
	}
	out := []pdu.UserID{create.Sender()}
	if v.PrivilegedCreators {
		extra, _ := create.Content().Get("additional_creators")
		for _, el := range extra.Array() {
			s, _ := el.Str()
			if u, err := pdu.ParseUserID(s); err == nil && !slices.Contains(out, u) {
				out = append(out, u)
			}
		}
	}
	return out
}

// isCreator is slices.Contains(Creators(create), u) without allocating.
func isCreator(create *pdu.Event, u pdu.UserID) bool {
	if create == nil {
		return false
	}
	v := create.Version()
	if !v.CreatorIsSender {
		s, _ := create.Content().GetStr("creator")
		return s == string(u)
	}
	if create.Sender() == u {
		return true
	}
	if v.PrivilegedCreators {
		extra, _ := create.Content().Get("additional_creators")
		for _, el := range extra.Array() {
			if s, _ := el.Str(); s == string(u) {
				_, err := pdu.ParseUserID(s)
				return err == nil
			}
		}
	}
	return false
}

// levels reads power levels straight from the event content, so that the
// auth rules allocate nothing. The zero content (no event) reads as all
// defaults.
type levels struct {
	v       *pdu.Version // nil when there is neither event nor create
	content cjson.Value
	exists  bool
	create  *pdu.Event
}

func newLevels(ev, create *pdu.Event) levels {
	l := levels{create: create}
	if create != nil {
		l.v = create.Version()
	}
	if ev != nil {
		l.v = ev.Version()
		l.content = ev.Content()
		l.exists = true
	}
	return l
}

// named reads a top-level level such as "ban", or def.
func (l levels) named(key string, def int64) int64 {
	if val, ok := l.content.Get(key); ok {
		if n, ok := levelValue(l.v, val); ok {
			return n
		}
	}
	return def
}

// user is u's level: infinite for v12 creators, else its users entry,
// else users_default; with no event, 100 for the v1-11 creator.
func (l levels) user(u pdu.UserID) int64 {
	if l.v != nil && l.v.PrivilegedCreators && isCreator(l.create, u) {
		return InfinitePowerLevel
	}
	if !l.exists {
		if isCreator(l.create, u) {
			return defaultCreatorLevel
		}
		return defaultUsersLevel
	}
	if val, ok := l.content.Path("users", string(u)); ok {
		if n, ok := levelValue(l.v, val); ok {
			return n
		}
	}
	return l.named("users_default", defaultUsersLevel)
}

// event is the required power level for an event type.
func (l levels) event(typ string, isState bool) int64 {
	if val, ok := l.content.Path("events", typ); ok {
		if n, ok := levelValue(l.v, val); ok {
			return n
		}
	}
	if isState {
		return l.named("state_default", defaultStateLevel)
	}
	return l.named("events_default", defaultEventsLevel)
}

// levelValue reads one level of an accepted power_levels event. Rooms v10+
// only accept integers (rules 9.1-9.3 / 10.1-10.3), so anything else is
// treated as absent. Earlier versions also accept strings in the format of
// the rooms fragment "v1-stringy-power-levels".
func levelValue(v *pdu.Version, val cjson.Value) (int64, bool) {
	if n, ok := val.Int(); ok {
		return n, true
	}
	s, isStr := val.Str()
	if !isStr || v == nil || v.IntegerPowerLevels {
		return 0, false
	}
	return parseStringyLevel(s)
}

// parseStringyLevel parses "  +0100 " and the like: optional whitespace,
// an optional sign, decimal digits with optional leading zeroes.
func parseStringyLevel(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	s = strings.TrimLeft(s, "0")
	if s == "" {
		return 0, true
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > cjson.MaxSafeInt {
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}
