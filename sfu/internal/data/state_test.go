package data

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/plexus-chat/plexus/internal/cjson"
)

// msg parses a world message or fails the test.
func msg(t testing.TB, s string) *worldMsg {
	t.Helper()
	m, err := parseWorldMsg([]byte(s))
	if err != nil {
		t.Fatalf("parseWorldMsg(%s): %v", s, err)
	}
	return m
}

func TestApplyLastWriterWins(t *testing.T) {
	type step struct {
		by, msg string
		applied string // encoded part that won, "" for none
	}
	tests := []struct {
		name  string
		steps []step
		snap  string
	}{
		{"newer wins", []step{
			{"@a", `{"ts":10,"set":{"k":1}}`, `{"ts":10,"set":{"k":1}}`},
			{"@b", `{"ts":11,"set":{"k":2}}`, `{"ts":11,"set":{"k":2}}`},
		}, `{"entries":{"k":{"by":"@b","ts":11,"value":2}},"v":1}`},
		{"older loses", []step{
			{"@b", `{"ts":11,"set":{"k":2}}`, `{"ts":11,"set":{"k":2}}`},
			{"@a", `{"ts":10,"set":{"k":1}}`, ""},
		}, `{"entries":{"k":{"by":"@b","ts":11,"value":2}},"v":1}`},
		{"tie goes to the greater identity", []step{
			{"@b", `{"ts":10,"set":{"k":"b"}}`, `{"ts":10,"set":{"k":"b"}}`},
			{"@a", `{"ts":10,"set":{"k":"a"}}`, ""},
			{"@c", `{"ts":10,"set":{"k":"c"}}`, `{"ts":10,"set":{"k":"c"}}`},
		}, `{"entries":{"k":{"by":"@c","ts":10,"value":"c"}},"v":1}`},
		{"same sender same ms: later arrival wins", []step{
			{"@a", `{"ts":10,"set":{"k":1}}`, `{"ts":10,"set":{"k":1}}`},
			{"@a", `{"ts":10,"set":{"k":2}}`, `{"ts":10,"set":{"k":2}}`},
		}, `{"entries":{"k":{"by":"@a","ts":10,"value":2}},"v":1}`},
		{"delete beats older set arriving late", []step{
			{"@a", `{"ts":10,"set":{"k":1}}`, `{"ts":10,"set":{"k":1}}`},
			{"@a", `{"ts":20,"del":["k"]}`, `{"ts":20,"del":["k"]}`},
			{"@b", `{"ts":15,"set":{"k":2}}`, ""},
		}, `{"entries":{},"v":1}`},
		{"newer set after delete wins", []step{
			{"@a", `{"ts":20,"del":["k"]}`, `{"ts":20,"del":["k"]}`},
			{"@b", `{"ts":21,"set":{"k":2}}`, `{"ts":21,"set":{"k":2}}`},
		}, `{"entries":{"k":{"by":"@b","ts":21,"value":2}},"v":1}`},
		{"stale delete loses", []step{
			{"@a", `{"ts":20,"set":{"k":1}}`, `{"ts":20,"set":{"k":1}}`},
			{"@b", `{"ts":19,"del":["k"]}`, ""},
		}, `{"entries":{"k":{"by":"@a","ts":20,"value":1}},"v":1}`},
		{"partly stale: only the winning part", []step{
			{"@a", `{"ts":20,"set":{"x":1,"z":1}}`, `{"ts":20,"set":{"x":1,"z":1}}`},
			{"@b", `{"ts":15,"set":{"x":2,"y":3},"del":["x2","z"]}`, `{"ts":15,"set":{"y":3},"del":["x2"]}`},
		}, `{"entries":{"x":{"by":"@a","ts":20,"value":1},"y":{"by":"@b","ts":15,"value":3},"z":{"by":"@a","ts":20,"value":1}},"v":1}`},
		{"per-key stamps", []step{
			{"@a", `{"ts":20,"set":{"x":1,"y":1},"at":{"x":5}}`, `{"ts":20,"set":{"x":1,"y":1},"at":{"x":5}}`},
			{"@b", `{"ts":10,"set":{"x":2,"y":2}}`, `{"ts":10,"set":{"x":2}}`},
		}, `{"entries":{"x":{"by":"@b","ts":10,"value":2},"y":{"by":"@a","ts":20,"value":1}},"v":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newState(1 << 20)
			var want uint64
			for i, st := range tt.steps {
				got, err := s.apply(msg(t, st.msg), st.by, 1000)
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				enc := ""
				if got != nil {
					enc = string(appendWorldMsg(nil, got))
					want++
				}
				if enc != st.applied {
					t.Errorf("step %d applied %s, want %s", i, enc, st.applied)
				}
				if s.version != want {
					t.Errorf("step %d: version %d, want %d", i, s.version, want)
				}
			}
			if got := string(s.snapshot()); got != tt.snap {
				t.Errorf("snapshot %s\nwant     %s", got, tt.snap)
			}
			if len(s.snapshot()) != s.size {
				t.Errorf("tracked size %d, encoded %d", s.size, len(s.snapshot()))
			}
		})
	}
}

func TestSnapshotDeterministic(t *testing.T) {
	msgs := []string{
		`{"ts":1,"set":{"b":{"z":1, "a":[1, 2]}}}`,
		`{"ts":2,"set":{"a":"x\ny","é":null}}`,
		`{"ts":3,"set":{"c\"q":true},"del":["a"]}`,
		`{"ts":4,"set":{"a":false}}`,
	}
	s1, s2 := newState(1<<20), newState(1<<20)
	for _, m := range msgs {
		if _, err := s1.apply(msg(t, m), "@u:x", 0); err != nil {
			t.Fatal(err)
		}
	}
	for i := len(msgs) - 1; i >= 0; i-- {
		if _, err := s2.apply(msg(t, msgs[i]), "@u:x", 0); err != nil {
			t.Fatal(err)
		}
	}
	want := `{"entries":{"a":{"by":"@u:x","ts":4,"value":false},"b":{"by":"@u:x","ts":1,"value":{"a":[1,2],"z":1}},"c\"q":{"by":"@u:x","ts":3,"value":true},"é":{"by":"@u:x","ts":2,"value":null}},"v":1}`
	if got := string(s1.snapshot()); got != want {
		t.Errorf("snapshot\n%s\nwant\n%s", got, want)
	}
	if string(s2.snapshot()) != string(s1.snapshot()) {
		t.Errorf("order of arrival changed the snapshot:\n%s\n%s", s1.snapshot(), s2.snapshot())
	}
	if !json.Valid(s1.snapshot()) {
		t.Error("snapshot is not JSON")
	}
}

func TestLoadRoundTrip(t *testing.T) {
	s := newState(1 << 20)
	for _, m := range []string{`{"ts":5,"set":{"k1":{"pos":[1500,2e3,-3]},"k2":"v"}}`, `{"ts":6,"del":["k2"],"set":{"k3":[]}}`} {
		if _, err := s.apply(msg(t, m), "@a", 0); err != nil {
			t.Fatal(err)
		}
	}
	snap := s.snapshot()
	l := newState(1 << 20)
	if err := l.load(snap); err != nil {
		t.Fatal(err)
	}
	if string(l.snapshot()) != string(snap) {
		t.Errorf("round trip\n%s\nwant\n%s", l.snapshot(), snap)
	}
	if l.version != 0 {
		t.Errorf("load moved the version to %d", l.version)
	}
	if l.size != len(snap) {
		t.Errorf("loaded size %d, want %d", l.size, len(snap))
	}
	// Loading merges: a newer local write survives an older snapshot.
	if _, err := l.apply(msg(t, `{"ts":9,"set":{"k1":0}}`), "@b", 0); err != nil {
		t.Fatal(err)
	}
	if err := l.load(snap); err != nil {
		t.Fatal(err)
	}
	if got, want := string(l.snapshot()), `{"entries":{"k1":{"by":"@b","ts":9,"value":0},"k3":{"by":"@a","ts":6,"value":[]}},"v":1}`; got != want {
		t.Errorf("after merge %s, want %s", got, want)
	}
}

func TestLoadRejects(t *testing.T) {
	for _, in := range []string{
		``, `[]`, `{"v":2,"entries":{}}`, `{"entries":{}}`,
		`{"v":1,"entries":{"":{"value":1,"ts":1,"by":"a"}}}`,
		`{"v":1,"entries":{"k":{"ts":1,"by":"a"}}}`,
		`{"v":1,"entries":{"k":{"value":1,"ts":-1,"by":"a"}}}`,
		"{\"v\":1,\"entries\":{\"k\":{\"value\":\"\xff\",\"ts\":1,\"by\":\"a\"}}}",
	} {
		if err := newState(1 << 20).load([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("load(%q) = %v, want ErrMalformed", in, err)
		}
	}
}

func TestSizeCap(t *testing.T) {
	big := strings.Repeat("x", 100)
	one := `{"ts":1,"set":{"k0":"` + big + `"}}`
	s := newState(snapshotOverhead)
	if _, err := s.apply(msg(t, one), "@a", 0); !errors.Is(err, ErrWorldFull) {
		t.Fatalf("set into a full world: %v", err)
	}
	if s.version != 0 || s.live != 0 {
		t.Fatal("a refused set changed the state")
	}

	s = newState(400)
	n := 0
	for ; ; n++ {
		_, err := s.apply(msg(t, `{"ts":1,"set":{"k`+string(rune('a'+n))+`":"`+big+`"}}`), "@a", 0)
		if errors.Is(err, ErrWorldFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if n == 0 || s.size > 400 || len(s.snapshot()) != s.size {
		t.Fatalf("%d entries, size %d (encoded %d)", n, s.size, len(s.snapshot()))
	}
	// A message that would overflow is refused whole, even its small part.
	if _, err := s.apply(msg(t, `{"ts":2,"set":{"small":1,"huge":"`+big+`"}}`), "@a", 0); !errors.Is(err, ErrWorldFull) {
		t.Fatalf("overflowing message: %v", err)
	}
	if _, ok := s.entries["small"]; ok {
		t.Error("part of a refused message was applied")
	}
	// Shrinking is always allowed, even when over the cap.
	s.maxBytes = 10
	if _, err := s.apply(msg(t, `{"ts":2,"set":{"ka":1}}`), "@a", 0); err != nil {
		t.Errorf("shrinking a value over the cap: %v", err)
	}
	if _, err := s.apply(msg(t, `{"ts":2,"del":["kb"]}`), "@a", 0); err != nil {
		t.Errorf("deleting over the cap: %v", err)
	}
	if len(s.snapshot()) != s.size {
		t.Errorf("tracked size %d, encoded %d", s.size, len(s.snapshot()))
	}
}

func TestTombstoneExpiry(t *testing.T) {
	s := newState(1 << 20)
	for i, m := range []string{`{"ts":10,"del":["a"]}`, `{"ts":10,"del":["b"]}`, `{"ts":10,"del":["c"]}`} {
		if _, err := s.apply(msg(t, m), "@a", int64(100+i)); err != nil {
			t.Fatal(err)
		}
	}
	s.expireTombstones(101, 10) // forgets a (deleted at 100)
	if _, ok := s.entries["a"]; ok || s.tombs != 2 {
		t.Fatalf("after TTL: tombs=%d entries=%v", s.tombs, s.entries)
	}
	s.expireTombstones(0, 1) // over the count: forgets b, the oldest
	if _, ok := s.entries["c"]; !ok || s.tombs != 1 || len(s.entries) != 1 {
		t.Fatalf("after count: tombs=%d entries=%v", s.tombs, s.entries)
	}
	// A stale set wins once the tombstone is gone: the price of the TTL.
	if got, _ := s.apply(msg(t, `{"ts":5,"set":{"a":1}}`), "@b", 200); got == nil {
		t.Error("set after an expired tombstone lost")
	}
	if got, _ := s.apply(msg(t, `{"ts":5,"set":{"c":1}}`), "@b", 200); got != nil {
		t.Error("set older than a kept tombstone won")
	}
}

func TestParseWorldMsg(t *testing.T) {
	long := strings.Repeat("k", maxKeyBytes+1)
	bad := []string{
		``, `null x`, `[]`, `{"ts":-1,"set":{"k":1}}`, `{"ts":1.5}`, `{"ts":"1"}`,
		`{"set":{"":1}}`, `{"set":{"` + long + `":1}}`, `{"del":[""]}`,
		`{"set":{"k":1},"del":["k"]}`, `{"set":{"k":1},"at":{"j":1}}`, `{"set":{"k":1},"at":{"k":-1}}`,
		"{\"set\":{\"k\":\"\xff\"}}", `{"set":[1]}`, `{"del":{"k":1}}`,
	}
	for _, in := range bad {
		if _, err := parseWorldMsg([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("parseWorldMsg(%q) = %v, want ErrMalformed", in, err)
		}
	}
	m := msg(t, `{"set":{"`+long[1:]+`":{ "a" : [ 1 , 2 ] }},"del":["z","y","z"],"extra":1}`)
	if m.ts != 0 || len(m.del) != 2 || m.del[0] != "y" || string(m.set[long[1:]]) != `{"a":[1,2]}` {
		t.Errorf("parsed %+v", m)
	}
}

// TestSnapshotCanonical: the snapshot is the content of a Matrix state
// event, so it must be canonical JSON as internal/cjson understands it,
// whatever the keys, identities and values hold.
func TestSnapshotCanonical(t *testing.T) {
	s := newState(1 << 20)
	for by, m := range map[string]string{
		"@a:x":      `{"ts":1,"set":{"q\"b\\":{"z":[1e2,-0],"a":"\u00e9\n"},"\u0000\u001f":true}}`,
		"@b\t\"<>&": `{"ts":2,"set":{"é€\u2028":null, "k": { "b" : 1 , "a" : 2 }}}`,
	} {
		if _, err := s.apply(msg(t, m), by, 0); err != nil {
			t.Fatal(err)
		}
	}
	snap := s.snapshot()
	c, err := cjson.Canonicalize(snap)
	if err != nil {
		t.Fatalf("snapshot %s: %v", snap, err)
	}
	if string(c) != string(snap) {
		t.Errorf("snapshot not canonical:\n%s\nwant\n%s", snap, c)
	}
	// Values out of canonical JSON's range are refused to their sender.
	for _, v := range []string{`1.5`, `[1e-3]`, `9007199254740992`, `{"a":1,"a":2}`} {
		if _, err := parseWorldMsg([]byte(`{"set":{"k":` + v + `}}`)); !errors.Is(err, ErrMalformed) {
			t.Errorf("value %s: %v, want ErrMalformed", v, err)
		}
	}
}
