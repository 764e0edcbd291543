package rooms

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plexus-chat/plexus/internal/storage/storagetest"
	"github.com/plexus-chat/plexus/rooms/internal/pdu"
)

// benchRoom makes a room with Alice joined and a public join rule.
func benchRoom(b testing.TB, s *testServer, version string) RoomID {
	b.Helper()
	alice := UserID("@alice:" + string(s.name))
	c, err := s.svc.Create(context.Background(), version, alice, mustContent(b, nil))
	if err != nil {
		b.Fatal(err)
	}
	room := c.Event.RoomID()
	s.send(b, room, alice, pdu.TypeMember, str(string(alice)), map[string]any{"membership": "join"})
	s.send(b, room, alice, pdu.TypeJoinRules, str(""), map[string]any{"join_rule": "public"})
	return room
}

// BenchmarkAppendLocal measures local events appended per second, with
// many concurrent senders so the worker can batch (as a busy server would).
func BenchmarkAppendLocal(b *testing.B) {
	for _, backend := range storagetest.Backends {
		for _, rooms := range []int{1, 100} {
			b.Run(fmt.Sprintf("%s/rooms=%d", backend, rooms), func(b *testing.B) {
				benchAppendLocal(b, newTestNetOn(backend), rooms)
			})
		}
	}
}

func benchAppendLocal(b *testing.B, net *testNet, rooms int) {
	s := net.server(b, "bench")
	ids := make([]RoomID, rooms)
	for i := range ids {
		ids[i] = benchRoom(b, s, DefaultVersion)
	}
	alice := UserID("@alice:bench")
	content := mustContent(b, map[string]any{"body": "hello world", "msgtype": "m.text"})
	var n atomic.Int64
	b.SetParallelism(64)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			room := ids[int(i)%len(ids)]
			if _, err := s.svc.Append(context.Background(), room, LocalEvent{Type: "m.room.message", Sender: alice, Content: content}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// remoteRoom is a room created on another server: its setup events and a
// long run of messages.
type remoteRoom struct {
	id    RoomID
	setup [][]byte
	pdus  [][]byte
}

// remoteFixture holds remoteStreams rooms, generated once per test binary
// because the benchmark framework calls a benchmark several times.
var remoteFixture struct {
	once  sync.Once
	rooms []remoteRoom
}

const remoteStreams, remotePerRoom = 4, 8000

func remoteRooms(b *testing.B) []remoteRoom {
	f := &remoteFixture
	f.once.Do(func() {
		net := newTestNet()
		origin := net.server(b, "origin")
		for range remoteStreams {
			from, err := origin.store.MaxStreamPos(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			r := remoteRoom{id: benchRoom(b, origin, DefaultVersion)}
			recs, err := origin.store.EventsSince(context.Background(), from, 100)
			if err != nil {
				b.Fatal(err)
			}
			for _, rec := range recs {
				r.setup = append(r.setup, rec.JSON)
			}
			for i := range remotePerRoom {
				st := origin.send(b, r.id, "@alice:origin", "m.room.message", nil, map[string]any{"body": fmt.Sprintf("message %d", i), "msgtype": "m.text"})
				r.pdus = append(r.pdus, st.Event.JSON())
			}
			f.rooms = append(f.rooms, r)
		}
	})
	if len(f.rooms) != remoteStreams {
		b.Fatal("remote fixture failed")
	}
	return f.rooms
}

// BenchmarkAdmitRemote measures remote events admitted per second (parse,
// signature verification, hash, auth against auth events and state,
// persist), delivered as federation delivers them: transactions of 50 PDUs,
// each acknowledged before the origin sends the next. streams=1 is one
// origin feeding one room, so every transaction's latency is on the
// critical path; streams=4 is four such feeds into four rooms at once.
func BenchmarkAdmitRemote(b *testing.B) {
	for _, backend := range storagetest.Backends {
		for _, streams := range []int{1, remoteStreams} {
			b.Run(fmt.Sprintf("%s/streams=%d", backend, streams), func(b *testing.B) {
				benchAdmitRemote(b, newTestNetOn(backend), streams)
			})
		}
	}
}

func benchAdmitRemote(b *testing.B, net *testNet, streams int) {
	rooms := remoteRooms(b)[:streams]
	net.server(b, "origin") // registers the origin's key with this net
	ctx := context.Background()
	var round int
	b.ResetTimer()
	for done := 0; done < b.N; {
		b.StopTimer()
		recv := net.server(b, fmt.Sprintf("recv%d", round))
		round++
		for _, r := range rooms {
			if _, err := recv.svc.Begin(ctx, r.setup[0]); err != nil {
				b.Fatal(err)
			}
			for _, e := range r.setup[1:] {
				if _, err := recv.svc.Admit(ctx, r.id, e); err != nil {
					b.Fatal(err)
				}
			}
		}
		// This round admits up to one room's worth per stream.
		n := min(b.N-done, streams*remotePerRoom)
		b.StartTimer()
		var wg sync.WaitGroup
		for s, r := range rooms {
			share := n / streams
			if s < n%streams {
				share++
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < share; i += 50 {
					rs, err := recv.svc.AdmitMany(ctx, r.id, r.pdus[i:min(i+50, share)])
					if err != nil {
						b.Error(err)
						return
					}
					for _, a := range rs {
						if a.Err != nil || a.Rejected != "" || a.SoftFailed {
							b.Errorf("event not accepted: %+v", a)
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		done += n
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkIdleRoomMemory reports the memory (heap and goroutine stacks)
// held per room: "loaded" while its worker is alive but idle, "evicted"
// once the worker has timed out and freed the room (what a room costs at
// rest). Each room has a few members' worth of state and some messages.
func BenchmarkIdleRoomMemory(b *testing.B) {
	const rooms = 500
	inUse := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse + ms.StackInuse
	}
	for i := 0; i < b.N; i++ {
		net := newTestNet()
		s := net.server(b, "mem")
		// A service whose idle workers exit soon after the last room is
		// made, so both figures come from one run.
		s.svc.Close()
		svc, err := New(Config{Signer: s.svc.cfg.Signer, IdleTimeout: 10 * time.Second}, s.svc.deps)
		if err != nil {
			b.Fatal(err)
		}
		s.svc = svc
		base := inUse()
		for r := 0; r < rooms; r++ {
			room := benchRoom(b, s, DefaultVersion)
			for m := 0; m < 5; m++ {
				s.send(b, room, "@alice:mem", "m.room.message", nil, map[string]any{"body": "hi"})
			}
		}
		loaded := inUse()
		if n := svc.ActiveRooms(); n != rooms {
			b.Fatalf("%d active rooms, want %d (made too slowly for the idle timeout?)", n, rooms)
		}
		deadline := time.Now().Add(60 * time.Second)
		for svc.ActiveRooms() > 0 {
			if time.Now().After(deadline) {
				b.Fatalf("%d workers still running", svc.ActiveRooms())
			}
			time.Sleep(50 * time.Millisecond) // polling a condition with a deadline, not timing
		}
		evicted := inUse()
		b.ReportMetric(float64(int64(loaded)-int64(base))/rooms, "bytes/room-loaded")
		b.ReportMetric(float64(int64(evicted)-int64(base))/rooms, "bytes/room-evicted")
		svc.Close()
	}
}
