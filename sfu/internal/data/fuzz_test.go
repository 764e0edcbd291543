package data

import (
	"encoding/json"
	"testing"

	"github.com/livekit/protocol/livekit"

	"github.com/plexus-chat/plexus/internal/cjson"
)

// FuzzReceive feeds arbitrary bytes to Receive as a's packet and checks
// that it never panics, that whatever is forwarded parses and carries
// a's identity, that nothing is forwarded on error, and that the world
// stays a valid, size-accounted snapshot.
func FuzzReceive(f *testing.F) {
	seeds := [][]byte{
		nil,
		{0xff, 0xff},
		userPkt(f, "t", "hello"),
		userPkt(f, "t", "x", withDest("b")),
		userPkt(f, "plexus.world", `{"ts":5,"set":{"k":{"a":[1,25]}},"del":["j"]}`),
		userPkt(f, "plexus.world", `{"set":{"k":1},"at":{"k":99999999999999}}`),
		userPkt(f, "plexus.world.snapshot", `{"entries":{},"v":1}`),
		userPkt(f, "plexus.world.delta", `{"entries":{},"v":1}`),
		encode(f, &livekit.DataPacket{Value: &livekit.DataPacket_ChatMessage{ChatMessage: &livekit.ChatMessage{Message: "m"}}}),
		encode(f, &livekit.DataPacket{Value: &livekit.DataPacket_StreamHeader{StreamHeader: &livekit.DataStream_Header{StreamId: "s"}}}),
	}
	for _, s := range seeds {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, raw []byte, lossy bool) {
		r := newTestRoom(t, Config{}, "a", "b")
		kind := Reliable
		if lossy {
			kind = Lossy
		}
		err := r.Receive("Pa", kind, raw, true)
		r.barrier(t, "a")
		got := r.fakes["b"].payload()
		if err != nil && len(got) > 0 {
			t.Fatalf("forwarded %d packets after %v", len(got), err)
		}
		for _, p := range got {
			from := "a"
			if u := p.dp.GetUser(); u.GetTopic() == "plexus.world.delta" {
				// A world change comes as a delta from the server, each
				// entry naming its writer.
				var d wireDelta
				if err := json.Unmarshal(u.Payload, &d); err != nil || d.V != 1 || len(d.Entries) == 0 {
					t.Fatalf("delta %s: %v", u.Payload, err)
				}
				for k, e := range d.Entries {
					if e.By != "a" || e.Deleted == (e.Value != nil) {
						t.Fatalf("delta entry %q: %+v", k, e)
					}
				}
				from = ""
			}
			if p.dp.ParticipantIdentity != from || p.kind != kind {
				t.Fatalf("forwarded from %q on %v", p.dp.ParticipantIdentity, p.kind)
			}
		}
		if err == nil {
			// What b received gives the room's world.
			if w, _ := r.Snapshot(); string(r.fakes["b"].world(t)) != string(w) {
				t.Fatalf("b's world %s, room's %s", r.fakes["b"].world(t), w)
			}
		}
		snap, _ := r.Snapshot()
		if !json.Valid(snap) || len(snap) != r.Stats().WorldBytes {
			t.Fatalf("snapshot %q, tracked size %d", snap, r.Stats().WorldBytes)
		}
		if c, err := cjson.Canonicalize(snap); err != nil || string(c) != string(snap) {
			t.Fatalf("snapshot not canonical JSON: %v\n%s", err, snap)
		}
		s := newState(1 << 20)
		if err := s.load(snap); err != nil || string(s.snapshot()) != string(snap) {
			t.Fatalf("snapshot does not load back: %v\n%s\n%s", err, snap, s.snapshot())
		}
	})
}

// FuzzWorldMsg checks that the world message parser never panics, that
// what it accepts re-encodes to a fixed point, and that applying it
// keeps the snapshot's size accounting exact.
func FuzzWorldMsg(f *testing.F) {
	for _, s := range []string{
		`{"ts":1,"set":{"a":1}}`,
		`{"ts":2,"set":{"a":{"b":[true,null,"\u0000"]}},"del":["c","c"]}`,
		`{"set":{"k":1,"j":2},"at":{"k":7}}`,
		`{"del":["x"],"ts":0}`,
		`{"ts":1e3}`,
		`{"set":{"\ud800":1}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseWorldMsg(b)
		if err != nil {
			return
		}
		enc := appendWorldMsg(nil, m)
		m2, err := parseWorldMsg(enc)
		if err != nil {
			t.Fatalf("re-encoded %s does not parse: %v", enc, err)
		}
		if enc2 := appendWorldMsg(nil, m2); string(enc2) != string(enc) {
			t.Fatalf("not a fixed point:\n%s\n%s", enc, enc2)
		}
		s := newState(1 << 20)
		if _, err := s.apply(m, "@fuzz\x00\"", 1); err != nil {
			t.Fatal(err)
		}
		snap := s.snapshot()
		if c, err := cjson.Canonicalize(snap); err != nil || string(c) != string(snap) || len(snap) != s.size {
			t.Fatalf("snapshot %q (tracked size %d) not canonical: %v", snap, s.size, err)
		}
	})
}
