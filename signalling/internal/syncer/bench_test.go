package syncer

import (
	"fmt"
	"testing"

	"github.com/plexus-chat/plexus/internal/storage/storagetest"
)

// BenchmarkRoomFanout is the engine's share of a message's fan-out to a
// room's members: each op is one incremental sync per member, from just
// before the newest event, restricted to the room as the realtime room
// channel asks (no device, so no to-device messages or transaction IDs).
func BenchmarkRoomFanout(b *testing.B) {
	const members = 100
	f := newFixture(b, storagetest.SQLite)
	room := f.newRoom()
	users := make([]string, members)
	for i := range users {
		users[i] = fmt.Sprintf("@m%d:hs1", i)
		f.member(room, users[i], users[i], "join")
	}
	f.message(room, "@alice:hs1", "hello")
	f.caughtUp()
	head := f.eng.Positions()
	since := head
	since.Events--
	limit := MaxTimelineLimit
	rs := []string{string(room)}
	none := []string{}
	filter := &Filter{}
	filter.Room.Rooms = &rs
	filter.Room.Timeline.Limit = &limit
	filter.AccountData.Types = &none
	filter.Presence.Types = &none
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, u := range users {
			resp, next, err := f.eng.Sync(f.ctx, Request{UserID: u, Since: &since, Filter: filter})
			if err != nil {
				b.Fatal(err)
			}
			if next != head || resp.Rooms == nil || len(resp.Rooms.Join[string(room)].Timeline.Events) != 1 {
				b.Fatalf("next %v, response %+v", next, resp)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*members), "ns/member")
}
