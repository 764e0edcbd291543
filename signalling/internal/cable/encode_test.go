package cable

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/plexus-chat/plexus/signalling/internal/syncer"
)

// TestEncodersMatchEncodingJSON holds the hand-written encoders to what
// encoding/json writes for the same values.
func TestEncodersMatchEncodingJSON(t *testing.T) {
	// A new field in one of the engine's types must be added to the
	// encoders too.
	for _, tc := range []struct {
		v any
		n int
	}{
		{syncer.Response{}, 8}, {syncer.RoomsPart{}, 3}, {syncer.JoinedRoom{}, 8}, {syncer.InvitedRoom{}, 1},
		{syncer.LeftRoom{}, 5}, {syncer.EventList{}, 1}, {syncer.Timeline{}, 3}, {syncer.UnreadCounts{}, 2},
	} {
		if got := reflect.TypeOf(tc.v).NumField(); got != tc.n {
			t.Errorf("%T has %d fields, the encoders know %d: update encode.go", tc.v, got, tc.n)
		}
	}

	ev := func(s string) json.RawMessage { return json.RawMessage(s) }
	evs := []json.RawMessage{ev(`{"type":"m.room.message","content":{"body":"<b>&\u2028 \"hi\""}}`), ev(`{"type":"x"}`)}
	three, one := 3, 1
	full := &syncer.Response{
		NextBatch: "s1_2_3",
		Rooms: &syncer.RoomsPart{
			Join: map[string]*syncer.JoinedRoom{
				"!b:hs": {
					Summary:             &syncer.Summary{Heroes: []string{"@x:hs"}, JoinedMemberCount: &three, InvitedMemberCount: &one},
					State:               syncer.EventList{Events: evs},
					Timeline:            syncer.Timeline{Events: evs, Limited: true, PrevBatch: "s0_0_0"},
					Ephemeral:           syncer.EventList{Events: []json.RawMessage{}},
					UnreadNotifications: syncer.UnreadCounts{NotificationCount: 2, HighlightCount: 1},
				},
				"!a:hs": {Timeline: syncer.Timeline{Events: evs[:1]}},
			},
			Invite: map[string]*syncer.InvitedRoom{"!c:hs": {InviteState: syncer.EventList{Events: evs}}},
			Leave:  map[string]*syncer.LeftRoom{"!d:hs": {State: syncer.EventList{Events: evs}, Timeline: syncer.Timeline{Events: evs}}},
		},
		AccountData:        &syncer.EventList{Events: evs},
		Presence:           &syncer.EventList{},
		ToDevice:           &syncer.EventList{Events: evs},
		DeviceLists:        &syncer.DeviceLists{Changed: []string{"@x:hs"}, Left: []string{"@y:hs"}},
		OTKCounts:          map[string]int{"signed_curve25519": 5},
		UnusedFallbackKeys: &[]string{"signed_curve25519"},
	}
	onlyInvite := &syncer.Response{NextBatch: "s", Rooms: &syncer.RoomsPart{Invite: full.Rooms.Invite}}
	onlyLeave := &syncer.Response{NextBatch: "s", Rooms: &syncer.RoomsPart{Leave: full.Rooms.Leave}, OTKCounts: map[string]int{}, UnusedFallbackKeys: &[]string{}}
	jr, lr := full.Rooms.Join["!b:hs"], full.Rooms.Leave["!d:hs"]
	joined := roomMessage{Type: "room", RoomID: "!b:hs", Membership: "join", NextBatch: "s", Summary: jr.Summary, State: &jr.State, Timeline: &jr.Timeline, Ephemeral: &jr.Ephemeral, AccountData: &jr.AccountData, UnreadNotifications: &jr.UnreadNotifications}
	left := roomMessage{Type: "room", RoomID: "!d:hs", Membership: "leave", NextBatch: "s", State: &lr.State, Timeline: &lr.Timeline, AccountData: &lr.AccountData}
	invited := roomMessage{Type: "room", RoomID: "!c:hs", Membership: "invite", NextBatch: "s", InviteState: &full.Rooms.Invite["!c:hs"].InviteState}
	nothing := roomMessage{Type: "room", RoomID: "!e:hs", NextBatch: "s"}

	for _, tc := range []struct {
		name string
		got  []byte
		want any
	}{
		{"empty response", appendSync(nil, &syncer.Response{NextBatch: "s"}), map[string]any{"type": "sync", "next_batch": "s", "sync": &syncer.Response{NextBatch: "s"}}},
		{"empty rooms", appendSync(nil, &syncer.Response{Rooms: &syncer.RoomsPart{}}), map[string]any{"type": "sync", "next_batch": "", "sync": &syncer.Response{Rooms: &syncer.RoomsPart{}}}},
		{"full response", appendSync(nil, full), map[string]any{"type": "sync", "next_batch": "s1_2_3", "sync": full}},
		{"invite only", appendSync(nil, onlyInvite), map[string]any{"type": "sync", "next_batch": "s", "sync": onlyInvite}},
		{"leave only", appendSync(nil, onlyLeave), map[string]any{"type": "sync", "next_batch": "s", "sync": onlyLeave}},
		{"joined room", appendRoom(nil, joined), joined},
		{"left room", appendRoom(nil, left), left},
		{"invited room", appendRoom(nil, invited), invited},
		{"nothing for the room", appendRoom(nil, nothing), nothing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !json.Valid(tc.got) {
				t.Fatalf("invalid JSON: %s", tc.got)
			}
			wb, err := json.Marshal(tc.want)
			if err != nil {
				t.Fatal(err)
			}
			var g, w any
			_ = json.Unmarshal(tc.got, &g)
			_ = json.Unmarshal(wb, &w)
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("encoded\n%s\nencoding/json\n%s", tc.got, wb)
			}
		})
	}
}
