package roomapi

import (
	"context"
	"math"

	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/rooms"
)

// infinite is the power level of room creators in room version 12
// ("Permissions": creators have an infinitely high power level).
const infinite = math.MaxInt64

// power is a room's m.room.power_levels content as the checks made
// before appending need it (the auth rules make the binding check; these
// only choose the error a client sees, as Synapse does).
type power struct {
	users         map[string]int64
	usersDefault  int64
	events        map[string]int64
	eventsDefault int64
	stateDefault  int64
	ban, kick     int64
	redact        int64
	invite        int64
	creators      map[string]bool // infinite power (room version 12)
}

// powerFrom reads power levels from the create and power_levels events
// (either may be nil), with the defaults of the m.room.power_levels
// schema.
func powerFrom(create, pl *rooms.Event) *power {
	p := &power{
		users: map[string]int64{}, events: map[string]int64{},
		ban: 50, kick: 50, redact: 50, creators: map[string]bool{},
	}
	var v *rooms.Version
	if create != nil {
		v = create.Version()
		if v.PrivilegedCreators {
			p.creators[string(create.Sender())] = true
			if ac, ok := create.Content().Get("additional_creators"); ok {
				for _, u := range ac.Array() {
					if s, ok := u.Str(); ok {
						p.creators[s] = true
					}
				}
			}
		}
	}
	if pl == nil {
		// No power_levels event: the creator has 100 (v1-11), state
		// needs 0, other actions 50.
		if create != nil && !v.PrivilegedCreators {
			creator := string(create.Sender())
			if !v.CreatorIsSender {
				creator, _ = create.Content().GetStr("creator")
			}
			p.users[creator] = 100
		}
		return p
	}
	p.parseLevels(pl.Content())
	return p
}

// parseLevels reads the levels of m.room.power_levels content.
func (p *power) parseLevels(c cjson.Value) {
	p.stateDefault = 50
	get := func(key string, dst *int64) {
		if n, ok := levelOf(c, key); ok {
			*dst = n
		}
	}
	get("users_default", &p.usersDefault)
	get("events_default", &p.eventsDefault)
	get("state_default", &p.stateDefault)
	get("ban", &p.ban)
	get("kick", &p.kick)
	get("redact", &p.redact)
	get("invite", &p.invite)
	if u, ok := c.Get("users"); ok {
		for _, m := range u.Members() {
			if n, ok := levelValue(m.Value); ok {
				p.users[m.Key] = n
			}
		}
	}
	if e, ok := c.Get("events"); ok {
		for _, m := range e.Members() {
			if n, ok := levelValue(m.Value); ok {
				p.events[m.Key] = n
			}
		}
	}
}

func levelOf(c cjson.Value, key string) (int64, bool) {
	v, ok := c.Get(key)
	if !ok {
		return 0, false
	}
	return levelValue(v)
}

// levelValue reads an integer level (room versions 10 and later allow
// nothing else).
func levelValue(v cjson.Value) (int64, bool) {
	if n, ok := v.Int(); ok {
		return n, true
	}
	return 0, false
}

// userLevel is a user's power level.
func (p *power) userLevel(u string) int64 {
	if p.creators[u] {
		return infinite
	}
	if n, ok := p.users[u]; ok {
		return n
	}
	return p.usersDefault
}

// eventLevel is the level needed to send an event of typ.
func (p *power) eventLevel(typ string, state bool) int64 {
	if n, ok := p.events[typ]; ok {
		return n
	}
	if state {
		return p.stateDefault
	}
	return p.eventsDefault
}

// powerIn reads the power levels of a state map.
func (a *API) powerIn(ctx context.Context, roomID string, state storage.StateMap) (*power, error) {
	ids := []string{}
	createID := state[storage.StateKey{Type: "m.room.create"}]
	plID := state[storage.StateKey{Type: "m.room.power_levels"}]
	for _, id := range []string{createID, plID} {
		if id != "" {
			ids = append(ids, id)
		}
	}
	evs, err := a.parsedEvents(ctx, roomID, ids)
	if err != nil {
		return nil, err
	}
	return powerFrom(evs[createID], evs[plID]), nil
}
