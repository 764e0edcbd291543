package auth

import (
	"github.com/plexus-chat/plexus/internal/cjson"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// scalarLevelKeys are the single-valued levels of m.room.power_levels, in
// the order rule 9.5 (v12: 10.6) lists them.
var scalarLevelKeys = [...]string{"users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"}

// mapLevelKeys are the event-type and notification maps of rules 9.2, 9.6
// and 9.7 (v12: 10.2, 10.7, 10.8).
var mapLevelKeys = [...]string{"events", "notifications"}

// allowedPowerLevels is rule 9 (v12: 10), m.room.power_levels: the new
// content must be well-formed, and nobody may grant more than they have or
// change what is above them. senderLevel is read from the current power
// levels. Numbers in comments are v10/v11's; in v12 rules 9.1 to 9.3
// are 10.1 to 10.3, 10.4 is new, and 9.4 onwards are 10.5 onwards.
func allowedPowerLevels(e *pdu.Event, state StateGetter, create *pdu.Event, senderLevel int64) error {
	c := e.Content()
	// 9.1: integers only (v10+; earlier versions accepted strings).
	for _, k := range scalarLevelKeys {
		if val, ok := c.Get(k); ok && val.Kind() != cjson.Int {
			return deny(e, rulePLScalarNotInt, "%s is a %s, not an integer", k, val.Kind())
		}
	}
	// 9.2
	for _, k := range mapLevelKeys {
		val, ok := c.Get(k)
		if !ok {
			continue
		}
		if val.Kind() != cjson.Object {
			return deny(e, rulePLMapNotInt, "%s is a %s, not an object", k, val.Kind())
		}
		for _, m := range val.Members() {
			if m.Value.Kind() != cjson.Int {
				return deny(e, rulePLMapNotInt, "%s[%q] is a %s, not an integer", k, m.Key, m.Value.Kind())
			}
		}
	}
	// 9.3: users maps valid user IDs to integers. An absent users is an
	// empty one (as in Synapse); only a present non-object is refused.
	users, hasUsers := c.Get("users")
	if hasUsers {
		if users.Kind() != cjson.Object {
			return deny(e, rulePLUsers, "users is a %s, not an object", users.Kind())
		}
		for _, m := range users.Members() {
			if _, err := pdu.ParseUserID(m.Key); err != nil {
				return deny(e, rulePLUsers, "users key: %v", err)
			}
			if m.Value.Kind() != cjson.Int {
				return deny(e, rulePLUsers, "users[%q] is a %s, not an integer", m.Key, m.Value.Kind())
			}
		}
	}
	// v12 10.4: creators' power is infinite and cannot be written down.
	if e.Version().PrivilegedCreators {
		for _, m := range users.Members() {
			if isCreator(create, pdu.UserID(m.Key)) {
				return deny(e, rulePLCreatorInUsers, "users lists room creator %s", m.Key)
			}
		}
	}
	// 9.4: the first power_levels event may say anything.
	old := state(powerLevelsTuple)
	if old == nil {
		return nil
	}
	oc := old.Content()
	v := old.Version()

	// 9.5: each altered scalar level, old and new, must be within reach.
	// An absent value is not compared (as in Synapse): "current value" and
	// "new value" are those of the property, not defaults.
	for _, k := range scalarLevelKeys {
		oldVal, oldOK := levelOf(v, oc, k)
		newVal, newOK := c.GetInt(k)
		if oldOK == newOK && oldVal == newVal {
			continue
		}
		if oldOK && oldVal > senderLevel {
			return deny(e, rulePLScalarOld, "cannot change %s from %d, above sender level %d", k, oldVal, senderLevel)
		}
		if newOK && newVal > senderLevel {
			return deny(e, rulePLScalarNew, "cannot set %s to %d, above sender level %d", k, newVal, senderLevel)
		}
	}
	// 9.6: changed or removed entries of events and notifications.
	for _, k := range mapLevelKeys {
		oldMap, _ := oc.Get(k)
		newMap, _ := c.Get(k)
		for _, m := range oldMap.Members() {
			oldVal, ok := levelValue(v, m.Value)
			if !ok {
				continue
			}
			if newVal, present := newMap.GetInt(m.Key); present && newVal == oldVal {
				continue
			}
			if oldVal > senderLevel {
				return deny(e, rulePLMapOld, "cannot change %s[%q] from %d, above sender level %d", k, m.Key, oldVal, senderLevel)
			}
		}
	}
	// 9.7: added or changed entries of events and notifications.
	for _, k := range mapLevelKeys {
		oldMap, _ := oc.Get(k)
		newMap, _ := c.Get(k)
		for _, m := range newMap.Members() {
			newVal, _ := m.Value.Int()
			if oldVal, present := levelOf(v, oldMap, m.Key); present && oldVal == newVal {
				continue
			}
			if newVal > senderLevel {
				return deny(e, rulePLMapNew, "cannot set %s[%q] to %d, above sender level %d", k, m.Key, newVal, senderLevel)
			}
		}
	}
	// 9.8: changed or removed users entries, except the sender's own: only
	// those strictly below the sender may be touched.
	oldUsers, _ := oc.Get("users")
	for _, m := range oldUsers.Members() {
		oldVal, ok := levelValue(v, m.Value)
		if !ok || m.Key == string(e.Sender()) {
			continue
		}
		if newVal, present := users.GetInt(m.Key); present && newVal == oldVal {
			continue
		}
		if oldVal >= senderLevel {
			return deny(e, rulePLUsersOld, "cannot change the level of %s from %d, not below sender level %d", m.Key, oldVal, senderLevel)
		}
	}
	// 9.9: added or changed users entries.
	for _, m := range users.Members() {
		newVal, _ := m.Value.Int()
		if oldVal, present := levelOf(v, oldUsers, m.Key); present && oldVal == newVal {
			continue
		}
		if newVal > senderLevel {
			return deny(e, rulePLUsersNew, "cannot set the level of %s to %d, above sender level %d", m.Key, newVal, senderLevel)
		}
	}
	// 9.10: otherwise, allow.
	return nil
}

// levelOf reads obj[key] as an accepted level (see levelValue).
func levelOf(v *pdu.Version, obj cjson.Value, key string) (int64, bool) {
	val, ok := obj.Get(key)
	if !ok {
		return 0, false
	}
	return levelValue(v, val)
}
