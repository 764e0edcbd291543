package rtcauth

import (
	"encoding/json"
	"testing"
	"time"
)

func TestLiveMemberships(t *testing.T) {
	now := time.UnixMilli(10_000_000)
	ms := now.UnixMilli()
	const alice, bob = "@alice:hs1.test", "@bob:hs2.test"
	ev := func(typ, key, sender string, ts int64, content string) StateEvent {
		return StateEvent{Type: typ, StateKey: key, Sender: sender, OriginServerTS: ts, Content: json.RawMessage(content)}
	}
	session := `{"application":"m.call","call_id":"","device_id":"DEV","scope":"m.room",` +
		`"focus_active":{"type":"livekit","focus_selection":"oldest_membership"},"foci_preferred":[]%s}`
	with := func(extra string) string { return sprintf(session, extra) }
	tests := []struct {
		name    string
		ev      StateEvent
		devices []string // live DeviceIDs
	}{
		{"session form, default expiry", ev(TypeCallMember, "_"+alice+"_DEV_m.call", alice, ms-1000, with("")), []string{"DEV"}},
		{"left: empty content", ev(TypeCallMember, "_"+alice+"_DEV_m.call", alice, ms-1000, `{}`), nil},
		{"expired after the default 4h", ev(TypeCallMember, "_"+alice+"_DEV_m.call", alice, ms-DefaultExpiry.Milliseconds(), with("")), nil},
		{"expires relative to created_ts", ev(TypeCallMember, "_"+alice+"_DEV_m.call", alice, ms,
			with(sprintf(`,"created_ts":%d,"expires":5000`, ms-6000))), nil},
		{"expires not yet", ev(TypeCallMember, "_"+alice+"_DEV_m.call", alice, ms-1000, with(`,"expires":5000`)), []string{"DEV"}},
		{"someone else's state key", ev(TypeCallMember, "_"+bob+"_DEV_m.call", alice, ms, with("")), nil},
		{"legacy per-user form", ev(TypeCallMember, alice, alice, ms, sprintf(`{"memberships":[
			{"application":"m.call","call_id":"","scope":"m.room","device_id":"A","membershipID":"x","expires_ts":%d},
			{"application":"m.call","call_id":"","scope":"m.room","device_id":"B","membershipID":"y","expires_ts":%d}]}`, ms+1, ms-1)),
			[]string{"A"}},
		{"m.rtc.member joined", ev(TypeRTCMember, alice+"_DEV", alice, ms,
			`{"slot_id":"m.call#ROOM","member":{"id":"m1","membership":"join","device_id":"DEV"},"application":{"type":"m.call"}}`), []string{"DEV"}},
		{"m.rtc.member left", ev(TypeRTCMember, alice+"_DEV", alice, ms,
			`{"slot_id":"m.call#ROOM","member":{"id":"m1","membership":"leave","device_id":"DEV"}}`), nil},
		{"no device", ev(TypeCallMember, "_"+alice+"_DEV_m.call", alice, ms, `{"application":"m.call","focus_active":{"type":"livekit"}}`), nil},
		{"not JSON", ev(TypeCallMember, "_"+alice+"_DEV_m.call", alice, ms, `[`), nil},
		{"other type", ev("m.room.topic", "", alice, ms, `{"topic":"x"}`), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := LiveMemberships([]StateEvent{tt.ev}, now)
			var devs []string
			for _, m := range got {
				if m.UserID != tt.ev.Sender {
					t.Fatalf("user %s, want %s", m.UserID, tt.ev.Sender)
				}
				devs = append(devs, m.DeviceID)
			}
			if sprintf("%v", devs) != sprintf("%v", tt.devices) {
				t.Fatalf("live devices %v, want %v", devs, tt.devices)
			}
		})
	}
}
