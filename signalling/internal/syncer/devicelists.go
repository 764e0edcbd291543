package syncer

import (
	"slices"
	"sort"
)

// membershipDeviceLists derives the device-list changes that membership
// changes cause (Client-Server API, "Tracking the device list for a user":
// a user who starts sharing a room with the client goes in changed, so
// the client fetches their keys; one who no longer shares any room goes
// in left, so the client stops encrypting for them).
func (b *builder) membershipDeviceLists(v view) (changed, left []string, err error) {
	me := b.req.UserID
	x := b.e.deps.Index
	var gained, lost []string
	for _, e := range v.events {
		if e.ev.Type() != "m.room.member" || e.ev.StateKey() == nil {
			continue
		}
		target, m := *e.ev.StateKey(), e.ev.Membership()
		if target == me {
			// Our own join brings everyone in the room; our own leave
			// may take everyone away.
			switch m {
			case "join":
				gained = append(gained, x.RoomMembers(e.room, "join")...)
			case "leave", "ban":
				lost = append(lost, x.RoomMembers(e.room, "join")...)
			}
			continue
		}
		if membershipAt(v.hist[e.room], e.pos) != "join" {
			continue
		}
		switch m {
		case "join":
			gained = append(gained, target)
		case "leave", "ban":
			lost = append(lost, target)
		}
	}
	if len(gained) == 0 && len(lost) == 0 {
		return nil, nil, nil
	}
	shared, err := x.SharedUsers(b.ctx, me)
	if err != nil {
		return nil, nil, err
	}
	isShared := func(u string) bool {
		i := sort.SearchStrings(shared, u)
		return i < len(shared) && shared[i] == u
	}
	for _, u := range gained {
		if u != me && isShared(u) {
			changed = append(changed, u)
		}
	}
	for _, u := range lost {
		if u != me && !isShared(u) {
			left = append(left, u)
		}
	}
	return dedupeSorted(changed), dedupeSorted(left), nil
}

func dedupeSorted(s []string) []string {
	sort.Strings(s)
	return slices.Compact(s)
}
